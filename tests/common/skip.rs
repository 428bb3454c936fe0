//! A check that cannot run here (no root, no iproute2, no promtool) says so
//! in a `SKIPPED <test>: <why>` line that `.ci/run` counts, instead of
//! passing silently.

use std::io::Write;

/// Prints the skip line straight to stderr: libtest captures `eprintln!`
/// of passing tests, which would hide it.
pub fn skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}
