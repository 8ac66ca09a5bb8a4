//! What each thread of this process knows about the locks it holds: its own owner identity
//! (computed once per thread) and the addresses of the [`super::Mutex`]es it holds.
//!
//! The addresses are private memory of this process, written only by the thread itself (and
//! cleared by [`forget_in`] when their mapping goes away); they are compared, never followed.
//! They exist so that closing a segment can be refused while a thread of this process holds a
//! lock inside it ([`held_in`]), which would otherwise strand the lock (see `docs/lock.md`).
//!
//! Cost on the lock path: one thread-local access, a scan for the first free slot (slot 0 for
//! the first lock held), one store; unlock scans for its address and stores 0.

use std::cell::{Cell, OnceCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::mutex::{LockError, Mutex};
use super::{MUTEX_ALIGN, MUTEX_SIZE};
use crate::os;

/// How many locks one thread may hold at once. A further lock is refused with
/// [`LockError::TooManyHeld`] (`ENOLCK`).
pub const MAX_HELD: usize = 64;

/// One thread's held locks: addresses, 0 for a free slot.
struct HeldList {
    slots: [AtomicUsize; MAX_HELD],
    /// The thread's owner identity, for [`held_in_mapped`] (0: not known, as after a `fork`).
    identity: AtomicU64,
}

impl HeldList {
    fn new(identity: u64) -> Self {
        Self {
            slots: std::array::from_fn(|_| AtomicUsize::new(0)),
            identity: AtomicU64::new(identity),
        }
    }
}

/// The per-thread state.
struct Local {
    /// This thread's owner word ([`super::mutex`]'s encoding), 0 until first computed.
    identity: Cell<u64>,
    list: OnceCell<Arc<HeldList>>,
    /// How many slots from the first this thread has ever used: the rest are 0, so scans stop
    /// there (one slot for a thread that holds one lock at a time).
    used: Cell<usize>,
}

impl Drop for Local {
    fn drop(&mut self) {
        // The thread is ending: its locks, if any, are found dead by their waiters' liveness
        // checks. Its list no longer counts as holding anything.
        if let Some(list) = self.list.get() {
            let mut registry = REGISTRY.lock();
            registry.retain(|other| !Arc::ptr_eq(other, list));
        }
    }
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            identity: Cell::new(0),
            list: OnceCell::new(),
            used: Cell::new(0),
        }
    };
}

/// A tiny spin lock, because the `fork` handlers must take it before a fork and release it in
/// both processes afterwards, which a `std::sync::Mutex` guard cannot do.
struct SpinLock<T> {
    taken: AtomicBool,
    value: std::cell::UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `taken` (acquire on take, release on give back).
unsafe impl<T: Send> Sync for SpinLock<T> {}

struct SpinGuard<'a, T>(&'a SpinLock<T>);

impl<T> SpinLock<T> {
    const fn new(value: T) -> Self {
        Self {
            taken: AtomicBool::new(false),
            value: std::cell::UnsafeCell::new(value),
        }
    }

    fn take(&self) {
        while self
            .taken
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
    }

    fn give_back(&self) {
        self.taken.store(false, Ordering::Release);
    }

    fn lock(&self) -> SpinGuard<'_, T> {
        self.take();
        SpinGuard(self)
    }
}

impl<T> std::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is taken.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> std::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while the lock is taken, and is not Clone.
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

/// Every live thread's list (threads register at their first lock).
static REGISTRY: SpinLock<Vec<Arc<HeldList>>> = SpinLock::new(Vec::new());

// The fork handlers. Only the forking thread exists in the child: it is no longer the thread
// that took its locks (another thread id), and no other thread's list means anything there.
unsafe extern "C" fn before_fork() {
    REGISTRY.take();
}

unsafe extern "C" fn after_fork_parent() {
    REGISTRY.give_back();
}

unsafe extern "C" fn after_fork_child() {
    let _ = LOCAL.try_with(|local| {
        local.identity.set(0);
        local.used.set(0);
        // SAFETY: the lock was taken by `before_fork` in this very thread and is still held.
        let registry = unsafe { &mut *REGISTRY.value.get() };
        registry.clear();
        if let Some(list) = local.list.get() {
            for slot in &list.slots {
                slot.store(0, Ordering::Relaxed);
            }
            list.identity.store(0, Ordering::Relaxed);
            registry.push(Arc::clone(list));
        }
    });
    REGISTRY.give_back();
}

/// This thread's owner identity, encoded by `encode` from `(token, stamp)` and cached.
///
/// # Errors
/// Errors of [`os::thread_identity`].
fn compute_identity(local: &Local, encode: fn(u32, u32) -> u64) -> Result<u64, LockError> {
    static FORK_HANDLERS: std::sync::Once = std::sync::Once::new();
    let mut registered = Ok(());
    FORK_HANDLERS.call_once(|| {
        // SAFETY: the handlers take this module's registry lock before a fork and give it back
        // after it; in the child, where only the forking thread runs, they reset what the
        // parent's threads held while that lock is still taken. No other lock is involved.
        registered = unsafe { os::at_fork(before_fork, after_fork_parent, after_fork_child) };
    });
    registered.map_err(LockError::Os)?;
    let (token, stamp) = os::thread_identity().map_err(LockError::Os)?;
    let identity = encode(token, stamp);
    local.identity.set(identity);
    Ok(identity)
}

/// Runs `attempt` with this thread's identity (computed with `encode` the first time) and,
/// when it takes the lock, records `addr` as held by this thread. One thread-local access.
///
/// # Errors
/// [`LockError::TooManyHeld`] when the thread already holds [`MAX_HELD`] locks (before
/// `attempt` runs); errors of [`os::thread_identity`] the first time; errors of `attempt`.
#[inline]
pub(super) fn acquire<T>(
    encode: fn(u32, u32) -> u64,
    addr: usize,
    attempt: impl FnOnce(u64) -> Result<T, LockError>,
) -> Result<T, LockError> {
    LOCAL.with(|local| {
        let identity = match local.identity.get() {
            0 => {
                let identity = compute_identity(local, encode)?;
                // A new identity (after a fork) for a list made before.
                if let Some(list) = local.list.get() {
                    list.identity.store(identity, Ordering::Relaxed);
                }
                identity
            }
            id => id,
        };
        let list = local.list.get_or_init(|| {
            let list = Arc::new(HeldList::new(identity));
            REGISTRY.lock().push(Arc::clone(&list));
            list
        });
        // A slot that still holds `addr` is taken again: a thread holds a lock once, so that
        // hold was lost (another process wrote the lock free, and this thread locked it anew),
        // and a second entry would outlive the unlock (see `held_in`). Otherwise the first free
        // slot, among those used so far or the next one.
        let used = local.used.get();
        let mut free = None;
        let mut again = None;
        for (i, s) in list.slots[..used].iter().enumerate() {
            match s.load(Ordering::Relaxed) {
                held if held == addr => {
                    again = Some(i);
                    break;
                }
                0 if free.is_none() => free = Some(i),
                _ => {}
            }
        }
        let index = match again.or(free) {
            Some(i) => i,
            None if used < MAX_HELD => used,
            None => return Err(LockError::TooManyHeld),
        };
        let slot = &list.slots[index];
        let taken = attempt(identity)?;
        slot.store(addr, Ordering::Release);
        local.used.set(used.max(index + 1));
        Ok(taken)
    })
}

/// Forgets that this thread holds the lock at `addr` (nothing if it was not recorded) and
/// returns this thread's identity, or 0 if it never locked anything (then it holds nothing).
/// One thread-local access.
#[inline]
pub(super) fn release(addr: usize) -> u64 {
    LOCAL
        .try_with(|local| {
            if let Some(list) = local.list.get() {
                if let Some(slot) = list.slots[..local.used.get()]
                    .iter()
                    .find(|s| s.load(Ordering::Relaxed) == addr)
                {
                    slot.store(0, Ordering::Release);
                }
            }
            local.identity.get()
        })
        .unwrap_or(0)
}

/// How many locks that live threads of this process hold in `[start, start + len)`.
pub fn held_in(start: usize, len: usize) -> usize {
    let end = start.saturating_add(len);
    let registry = REGISTRY.lock();
    registry
        .iter()
        .flat_map(|list| list.slots.iter())
        .filter(|s| (start..end).contains(&s.load(Ordering::Acquire)))
        .count()
}

/// [`held_in`], counting only the locks whose owner word still names their thread: not one that
/// its thread unlocked through another mapping of the same segment (which frees it, but cannot
/// find the slot recorded under the other address), nor one another process wrote free or over.
/// Costs what [`held_in`] does, and one read of each lock that a slot in the range names.
///
/// # Safety
/// `[start, start + len)` must be mapped and readable during the call (a lock there whose 64
/// bytes do not all lie inside it is counted without a look).
pub unsafe fn held_in_mapped(start: usize, len: usize) -> usize {
    let end = start.saturating_add(len);
    let registry = REGISTRY.lock();
    registry
        .iter()
        .map(|list| {
            list.slots
                .iter()
                .map(|s| s.load(Ordering::Acquire))
                .filter(|addr| (start..end).contains(addr))
                .filter(|&addr| {
                    // Read after the slot: its thread stored the identity before it, and the
                    // slot's release store publishes that (a first lock after a fork).
                    let identity = list.identity.load(Ordering::Relaxed);
                    let inside = addr.checked_add(MUTEX_SIZE).is_some_and(|last| last <= end);
                    !inside
                        || identity == 0
                        || addr % MUTEX_ALIGN != 0
                        // SAFETY: the lock's bytes lie inside the range, mapped (the caller's
                        // promise), and the address is aligned.
                        || unsafe { Mutex::names(addr, identity) }
                })
                .count()
        })
        .sum()
}

/// Forgets every lock held in `[start, start + len)`, by any thread: that memory is being
/// unmapped, and a later mapping at the same addresses must not look held. The locks themselves
/// stay held in the segment until their threads end (then waiters see the owner died).
pub fn forget_in(start: usize, len: usize) {
    let end = start.saturating_add(len);
    let registry = REGISTRY.lock();
    for slot in registry.iter().flat_map(|list| list.slots.iter()) {
        let addr = slot.load(Ordering::Acquire);
        if (start..end).contains(&addr) {
            // Only from `addr` to 0: the owning thread may have unlocked meanwhile.
            let _ = slot.compare_exchange(addr, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}
