//! Parking on a shared 32-bit word: `crate::sync::{wait, notify}` (cross-process futex), or under
//! `cfg(loom)` a model of them.
//!
//! The channel uses only these two calls, with the signatures of `crate::sync`; the one line
//! below is the switch between the real implementation and anything else with that shape.
//!
//! Under `cfg(loom)` a loom mutex and condition variable emulate the futex, so that a lost
//! wake-up shows up as a deadlock in the model.

#[cfg(not(loom))]
pub(crate) use crate::sync::{notify, wait};

#[cfg(loom)]
pub(crate) use model::{notify, wait};

#[cfg(loom)]
mod model {
    use std::io;
    use std::time::Duration;

    use crate::channel::mem::AtomicU32;
    use loom::sync::atomic::Ordering;

    /// Why [`wait`] returned.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum WaitOutcome {
        /// Woken by [`notify`] (or spuriously).
        Woken,
        /// The word did not hold the expected value.
        NotEqual,
    }

    /// How many distinct words the model parks on (the channel has two: `rx_waiting` and
    /// `tx_waiting`).
    const WORDS: usize = 2;

    loom::lazy_static! {
        /// The futex's lock, guarding the addresses of the words parked on so far: the waiters
        /// on `WORDS[i]` sleep on `QUEUES[i]`.
        static ref LOCK: loom::sync::Mutex<Vec<usize>> = loom::sync::Mutex::new(Vec::new());
        static ref QUEUES: [loom::sync::Condvar; WORDS] =
            std::array::from_fn(|_| loom::sync::Condvar::new());
    }

    /// The wait queue of `word`, made on first use.
    fn queue(words: &mut Vec<usize>, word: &AtomicU32) -> usize {
        let addr = word as *const AtomicU32 as usize;
        words.iter().position(|&a| a == addr).unwrap_or_else(|| {
            assert!(
                words.len() < WORDS,
                "the model parks on {WORDS} words at most"
            );
            words.push(addr);
            words.len() - 1
        })
    }

    /// The model of a futex wait: check and sleep under one lock, so that the emulation itself
    /// loses no wake-up. Timeouts are not modelled (loom has no clock): the wait lasts until a
    /// notify of the same word. As with a futex, a notify of another word wakes nobody here,
    /// so a missing wake-up cannot hide behind another word's.
    pub(crate) fn wait(
        word: &AtomicU32,
        expected: u32,
        _timeout: Option<Duration>,
    ) -> io::Result<WaitOutcome> {
        let mut words = LOCK.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return Ok(WaitOutcome::NotEqual);
        }
        let queue = queue(&mut words, word);
        drop(QUEUES[queue].wait(words).unwrap());
        Ok(WaitOutcome::Woken)
    }

    /// The model of a futex wake: wakes every waiter on `word` (a futex may wake more than
    /// asked for, from the caller's point of view).
    pub(crate) fn notify(word: &AtomicU32, _count: u32) -> io::Result<usize> {
        let mut words = LOCK.lock().unwrap();
        let queue = queue(&mut words, word);
        QUEUES[queue].notify_all();
        Ok(1)
    }
}
