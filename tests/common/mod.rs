//! Helpers shared by integration tests; each test uses part of them.
#![allow(dead_code)]

pub mod cluster;
pub mod kv;
pub mod netns;
pub mod procs;
pub mod secure;
pub mod serving;
pub mod skip;
pub mod wait;
