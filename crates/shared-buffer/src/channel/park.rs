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

    loom::lazy_static! {
        static ref LOCK: loom::sync::Mutex<()> = loom::sync::Mutex::new(());
        static ref COND: loom::sync::Condvar = loom::sync::Condvar::new();
    }

    /// The model of a futex wait: check and sleep under one lock, so that the emulation itself
    /// loses no wake-up. Timeouts are not modelled (loom has no clock): the wait lasts until a
    /// notify.
    pub(crate) fn wait(
        word: &AtomicU32,
        expected: u32,
        _timeout: Option<Duration>,
    ) -> io::Result<WaitOutcome> {
        let guard = LOCK.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return Ok(WaitOutcome::NotEqual);
        }
        drop(COND.wait(guard).unwrap());
        Ok(WaitOutcome::Woken)
    }

    /// The model of a futex wake: wakes every waiter (a futex may wake spuriously).
    pub(crate) fn notify(_word: &AtomicU32, _count: u32) -> io::Result<usize> {
        let _guard = LOCK.lock().unwrap();
        COND.notify_all();
        Ok(1)
    }
}
