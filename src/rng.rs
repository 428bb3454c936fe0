//! Where the library's random choices come from.
//!
//! Normally the operating system's entropy (through `rand`'s thread-local
//! generator). A deterministic simulation calls [`seed_this_thread`] on the
//! one thread of a current-thread runtime: from then on every random choice
//! made on that thread (election jitter, gossip probe order and targets,
//! nonces, lease incarnations, cluster ids, simulated packet loss) comes
//! from one generator seeded there, so a run replays from its seed.
//! Written by hand because the choice of source has to be made in one
//! place for the whole crate; no crate does that.

use std::cell::RefCell;

use rand::distributions::{Distribution, Standard};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

thread_local! {
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Makes every random choice on this thread come from `seed` (a
/// simulation's; `None` returns to the operating system's entropy).
#[doc(hidden)]
pub fn seed_this_thread(seed: Option<u64>) {
    SEEDED.with(|s| *s.borrow_mut() = seed.map(StdRng::seed_from_u64));
}

/// A random value of type `T`.
pub(crate) fn random<T>() -> T
where
    Standard: Distribution<T>,
{
    SEEDED.with(|s| match s.borrow_mut().as_mut() {
        Some(rng) => rng.gen(),
        None => rand::random(),
    })
}

/// A generator of its own for a long-lived component (seeded from this
/// thread's seed in a simulation, from entropy otherwise).
pub(crate) fn generator() -> StdRng {
    StdRng::seed_from_u64(random())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_thread_repeats_its_choices_and_unseeding_ends_that() {
        let draw = || (random::<u64>(), generator().gen::<u64>());
        seed_this_thread(Some(7));
        let a = draw();
        seed_this_thread(Some(7));
        assert_eq!(a, draw());
        seed_this_thread(None);
        assert_ne!(draw(), draw());
    }
}
