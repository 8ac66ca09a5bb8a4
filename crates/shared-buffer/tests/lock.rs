//! The lock against dead threads and against whatever a peer writes into its bytes, through a
//! second mapping of the same segment (what another process sees), and this process's
//! knowledge of the locks it holds.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shared_buffer::sync::{
    LockError, LockOutcome, MAX_HELD, MUTEX_SIZE, Mutex, held_in, held_in_mapped,
};
use shared_buffer::{Options, Segment};
use test_support::{Scratch, TestSeg};

const AT: usize = 128;

/// A named segment with a lock at [`AT`], and a second mapping of it: the peer's view.
struct Pair {
    seg: TestSeg,
    peer: Segment,
}

impl Pair {
    fn new(test: &str) -> Self {
        let seg = TestSeg::new(&format!("lock-{test}"));
        let peer = Segment::open(seg.id(), None, &Options::default()).unwrap();
        Mutex::init_in(&seg, AT).unwrap();
        Self { seg, peer }
    }

    fn mutex(&self) -> &Mutex {
        Mutex::open_in(&self.seg, AT).unwrap()
    }

    /// The owner word as the peer sees it.
    fn owner(&self) -> &AtomicU64 {
        // SAFETY: AT + 8 is inside the segment and 8-byte aligned; atomics may alias memory
        // shared with other processes.
        unsafe { AtomicU64::from_ptr(self.peer.as_ptr().add(AT + 8).cast()) }
    }

    /// A header word (0: state, 1: layout, 4: pid namespace) as the peer sees it.
    fn header(&self, index: usize) -> &AtomicU32 {
        self.peer.atomic_u32(AT + 4 * index)
    }
}

fn errno(err: LockError) -> i32 {
    err.errno()
}

/// The owner word of a thread that locked and ended without unlocking.
fn word_of_a_dead_thread(pair: &Pair) -> u64 {
    let task = std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(pair.mutex().lock(None).unwrap(), LockOutcome::Acquired);
            // "<pid>/task/<tid>", relative to /proc.
            std::path::Path::new("/proc").join(std::fs::read_link("/proc/thread-self").unwrap())
        })
        .join()
        .unwrap()
    });
    // `join` returns once the thread has cleared its id, a moment before the kernel stops
    // listing it as running, which is what the lock's liveness check reads: wait for that.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(task.join("stat"))
        .is_ok_and(|stat| !stat.contains(") Z ") && !stat.contains(") X "))
    {
        assert!(
            Instant::now() < deadline,
            "{} still running",
            task.display()
        );
        std::thread::yield_now();
    }
    let word = pair.owner().load(Ordering::Acquire);
    assert_ne!(word, 0);
    word
}

#[test]
fn a_thread_that_ends_holding_the_lock_is_a_dead_owner() {
    let pair = Pair::new("thread-end");
    let mutex = pair.mutex();
    word_of_a_dead_thread(&pair);
    assert_eq!(mutex.try_lock().unwrap(), LockOutcome::OwnerDied);
    mutex.unlock().unwrap();
    word_of_a_dead_thread(&pair);
    assert_eq!(
        mutex.lock(Some(Duration::from_secs(10))).unwrap(),
        LockOutcome::OwnerDied
    );
    mutex.unlock().unwrap();
    assert_eq!(mutex.lock(None).unwrap(), LockOutcome::Acquired);
    mutex.unlock().unwrap();

    // A waiter parked while the holding thread ends.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let holder = s.spawn(move || {
            assert_eq!(mutex.lock(None).unwrap(), LockOutcome::Acquired);
            held_tx.send(()).unwrap();
            let _ = end_rx.recv_timeout(Duration::from_secs(20));
        });
        held_rx.recv().unwrap();
        let waiter = s.spawn(|| {
            let outcome = mutex.lock(Some(Duration::from_secs(10))).unwrap();
            mutex.unlock().unwrap();
            outcome
        });
        std::thread::sleep(Duration::from_millis(30));
        end_tx.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(waiter.join().unwrap(), LockOutcome::OwnerDied);
    });
}

#[test]
fn garbage_in_a_free_lock_is_a_dead_owner_or_a_clear_error() {
    let pair = Pair::new("garbage-free");
    let mutex = pair.mutex();
    let dead = word_of_a_dead_thread(&pair);
    for word in [
        u64::MAX,
        0xdead_beef_dead_beef,
        1 << 31,                      // waiters bit alone
        0x1234_5678_0000_0000,        // token 0
        (1 << 30) | 7,                // bit 30 set
        u64::from(u32::MAX >> 2),     // token beyond any thread id
        dead,                         // a dead thread
        dead ^ 0x0000_0001_0000_0000, // a live... or dead thread id with the wrong start time
        dead | (1 << 31),
    ] {
        pair.owner().store(word, Ordering::Release);
        assert_eq!(
            mutex.try_lock().unwrap(),
            LockOutcome::OwnerDied,
            "try_lock over {word:#x}"
        );
        mutex.unlock().unwrap();
        pair.owner().store(word, Ordering::Release);
        assert_eq!(
            mutex.lock(Some(Duration::from_secs(5))).unwrap(),
            LockOutcome::OwnerDied,
            "lock over {word:#x}"
        );
        mutex.unlock().unwrap();
        assert_eq!(
            pair.owner().load(Ordering::Acquire),
            0,
            "free after {word:#x}"
        );
    }
}

#[test]
fn a_live_owner_named_by_a_peer_gives_busy_and_timeouts_and_our_own_name_deadlock() {
    let pair = Pair::new("garbage-live");
    let mutex = pair.mutex();
    // This thread's own word: lock, read, unlock.
    mutex.lock(None).unwrap();
    let mine = pair.owner().load(Ordering::Acquire);
    mutex.unlock().unwrap();
    // Another live thread's word.
    let (tx, rx) = std::sync::mpsc::channel();
    let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
    let owner = pair.owner();
    std::thread::scope(|s| {
        s.spawn(move || {
            mutex.lock(None).unwrap();
            let word = owner.load(Ordering::Acquire);
            mutex.unlock().unwrap();
            tx.send(word).unwrap();
            // Bounded, so that a failed assertion below cannot leave this thread waiting.
            let _ = end_rx.recv_timeout(Duration::from_secs(20));
        });
        let other = rx.recv().unwrap();
        pair.owner().store(other, Ordering::Release);
        assert_eq!(errno(mutex.try_lock().unwrap_err()), libc::EBUSY);
        let start = Instant::now();
        assert_eq!(
            errno(mutex.lock(Some(Duration::from_millis(40))).unwrap_err()),
            libc::ETIMEDOUT
        );
        assert!(start.elapsed() >= Duration::from_millis(40));
        assert_eq!(errno(mutex.unlock().unwrap_err()), libc::EPERM);
        end_tx.send(()).unwrap();
    });
    // That thread has ended now: its name is a dead owner.
    assert_eq!(
        mutex.lock(Some(Duration::from_secs(5))).unwrap(),
        LockOutcome::OwnerDied
    );
    mutex.unlock().unwrap();

    pair.owner().store(mine, Ordering::Release);
    assert_eq!(errno(mutex.lock(None).unwrap_err()), libc::EDEADLK);
    mutex.unlock().unwrap(); // the word names this thread, so it may free it
    assert_eq!(mutex.try_lock().unwrap(), LockOutcome::Acquired);
    mutex.unlock().unwrap();
}

#[test]
fn a_peer_overwriting_a_held_lock_gives_eperm_on_unlock_and_nothing_stays_held() {
    let pair = Pair::new("garbage-held");
    let mutex = pair.mutex();
    let range = (pair.seg.as_ptr() as usize, pair.seg.len());
    mutex.lock(None).unwrap();
    assert_eq!(held_in(range.0, range.1), 1);
    pair.owner().store(0xffff_ffff_ffff_ffff, Ordering::Release);
    assert_eq!(errno(mutex.unlock().unwrap_err()), libc::EPERM);
    assert_eq!(
        held_in(range.0, range.1),
        0,
        "an unlock attempt ends this thread's claim"
    );
    assert_eq!(mutex.lock(None).unwrap(), LockOutcome::OwnerDied);
    pair.owner().store(0, Ordering::Release); // freed under the holder
    assert_eq!(errno(mutex.unlock().unwrap_err()), libc::EPERM);
    assert_eq!(mutex.try_lock().unwrap(), LockOutcome::Acquired);
    mutex.unlock().unwrap();
}

#[test]
fn a_lock_a_peer_freed_under_its_holder_and_taken_again_is_held_once() {
    let pair = Pair::new("freed-retaken");
    let mutex = pair.mutex();
    let held = || held_in(pair.seg.as_ptr() as usize, pair.seg.len());
    // Frees the lock under its holder and has the holder take it again: one hold, none after
    // the unlock (a hold left behind would refuse the segment's close).
    let freed_and_taken_again = |case: &str| {
        pair.owner().store(0, Ordering::Release);
        assert_eq!(mutex.lock(None).unwrap(), LockOutcome::Acquired, "{case}");
        assert_eq!(held(), 1, "{case}: one hold, not the lost one too");
        mutex.unlock().unwrap();
        assert_eq!(held(), 0, "{case}: nothing left after the unlock");
    };
    mutex.lock(None).unwrap();
    freed_and_taken_again("the thread's only lock");
    assert_eq!(errno(mutex.unlock().unwrap_err()), libc::EPERM);

    // Behind a free slot: another lock taken first and released first.
    let other = Mutex::init_in(&pair.seg, AT + 64).unwrap().0;
    other.lock(None).unwrap();
    mutex.lock(None).unwrap();
    other.unlock().unwrap();
    freed_and_taken_again("behind a released slot");
}

#[test]
fn a_header_a_peer_set_to_initialising_fails_a_lock_within_its_timeout() {
    // The header goes back to ready 80 ms later: a call that waited for it (100 ms at most)
    // would take the lock; one that waits no longer than its own timeout does not.
    for call in ["try_lock", "lock(1 ms)"] {
        let pair = Pair::new("initialising");
        let mutex = pair.mutex();
        pair.header(0).store(1, Ordering::Release);
        let got = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(80));
                pair.header(0).store(2, Ordering::Release);
            });
            if call == "try_lock" {
                mutex.try_lock()
            } else {
                mutex.lock(Some(Duration::from_millis(1)))
            }
        });
        assert_eq!(errno(got.unwrap_err()), libc::EAGAIN, "{call}");
        assert_eq!(held_in(pair.seg.as_ptr() as usize, pair.seg.len()), 0);
        // Ready again: the lock works.
        assert_eq!(mutex.try_lock().unwrap(), LockOutcome::Acquired, "{call}");
        mutex.unlock().unwrap();
    }
}

#[test]
fn the_wait_for_an_initialising_header_counts_against_the_timeout() {
    // Held by another thread until the lock below returns, and "being set up" for its first
    // 90 ms (a lock waits for a set-up up to 100 ms): a lock with a 100 ms timeout must give up
    // about 100 ms in, with `ETIMEDOUT`, or with `EAGAIN` if the set-up outlasted it (the thread
    // that ends it ran late on a loaded machine). One that began counting only once the header
    // was ready would give up 190 ms in.
    let pair = Pair::new("init-timeout");
    let mutex = pair.mutex();
    let (taken_tx, taken_rx) = std::sync::mpsc::channel();
    let (returned_tx, returned_rx) = std::sync::mpsc::channel::<()>();
    let (got, waited) = std::thread::scope(|s| {
        let pair = &pair;
        s.spawn(move || {
            let guard = pair.mutex().guard(None).unwrap();
            taken_tx.send(()).unwrap();
            let _ = returned_rx.recv();
            drop(guard);
        });
        taken_rx.recv().unwrap();
        pair.header(0).store(1, Ordering::Release);
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(90));
            pair.header(0).store(2, Ordering::Release);
        });
        let started = Instant::now();
        let got = mutex.lock(Some(Duration::from_millis(100)));
        let waited = started.elapsed();
        returned_tx.send(()).unwrap();
        (got, waited)
    });
    let code = errno(got.unwrap_err());
    assert!(
        code == libc::ETIMEDOUT || code == libc::EAGAIN,
        "errno {code}"
    );
    assert!(
        waited < Duration::from_millis(180),
        "gave up after {waited:?}"
    );
}

#[test]
fn a_peer_overwriting_the_header_gives_clear_errors() {
    let pair = Pair::new("garbage-header");
    let mutex = pair.mutex();
    for (index, value, code) in [
        (0, 7, libc::ENOTRECOVERABLE),
        (0, u32::MAX, libc::ENOTRECOVERABLE),
        (1, 1, libc::ENOTRECOVERABLE), // another layout
        (0, 0, libc::EINVAL),          // zeroed
        (0, 1, libc::EAGAIN),          // "being set up" forever
    ] {
        pair.header(index).store(value, Ordering::Release);
        assert_eq!(
            errno(mutex.lock(None).unwrap_err()),
            code,
            "word {index} = {value}"
        );
        assert_eq!(
            errno(mutex.try_lock().unwrap_err()),
            code,
            "word {index} = {value}"
        );
        pair.header(0).store(2, Ordering::Release);
        pair.header(1)
            .store(shared_buffer::sync::MUTEX_LAYOUT, Ordering::Release);
        assert_eq!(mutex.try_lock().unwrap(), LockOutcome::Acquired);
        mutex.unlock().unwrap();
    }
    // A held lock whose header is wrecked can still be unlocked by its holder.
    mutex.lock(None).unwrap();
    pair.header(0).store(99, Ordering::Release);
    mutex.unlock().unwrap();
    assert_eq!(
        errno(Mutex::open_in(&pair.seg, AT).unwrap_err()),
        libc::EINVAL
    );
}

#[test]
fn held_in_counts_locks_per_range_and_forgets_an_unmapped_one() {
    let pair = Pair::new("held-in");
    let mutex = pair.mutex();
    let seg_range = (pair.seg.as_ptr() as usize, pair.seg.len());
    let peer_range = (pair.peer.as_ptr() as usize, pair.peer.len());
    assert_eq!(held_in(seg_range.0, seg_range.1), 0);
    mutex.lock(None).unwrap();
    assert_eq!(held_in(seg_range.0, seg_range.1), 1);
    assert_eq!(
        held_in(peer_range.0, peer_range.1),
        0,
        "another mapping of the segment"
    );
    assert_eq!(
        held_in(seg_range.0 + AT + MUTEX_SIZE, 64),
        0,
        "the bytes after the lock"
    );
    // Counted from another thread too.
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(held_in(seg_range.0, seg_range.1), 1));
    });
    mutex.unlock().unwrap();
    assert_eq!(held_in(seg_range.0, seg_range.1), 0);

    // A mapping dropped while held: its address range stops counting.
    let other = Segment::open(pair.seg.id(), None, &Options::default()).unwrap();
    let other_range = (other.as_ptr() as usize, other.len());
    Mutex::open_in(&other, AT).unwrap().lock(None).unwrap();
    assert_eq!(held_in(other_range.0, other_range.1), 1);
    drop(other);
    assert_eq!(held_in(other_range.0, other_range.1), 0);
    // The lock itself stays held by this (live) thread.
    assert_eq!(errno(mutex.try_lock().unwrap_err()), libc::EDEADLK);
    pair.owner().store(0, Ordering::Release);
}

#[test]
fn held_in_mapped_leaves_out_a_lock_unlocked_through_another_mapping_or_written_free() {
    let pair = Pair::new("held-in-mapped");
    let seg_range = (pair.seg.as_ptr() as usize, pair.seg.len());
    // SAFETY: the range of a live segment of this test.
    let held_mapped = || unsafe { held_in_mapped(seg_range.0, seg_range.1) };
    let through_peer = Mutex::open_in(&pair.peer, AT).unwrap();
    pair.mutex().lock(None).unwrap();
    assert_eq!(held_mapped(), 1);
    // Freed through the other mapping: the slot under this mapping's address stays.
    through_peer.unlock().unwrap();
    assert_eq!(pair.owner().load(Ordering::Acquire), 0);
    assert_eq!(
        held_in(seg_range.0, seg_range.1),
        1,
        "the slot is still there"
    );
    assert_eq!(held_mapped(), 0, "but the lock is free");
    // Locked again through this mapping: one slot, held.
    pair.mutex().lock(None).unwrap();
    assert_eq!(held_in(seg_range.0, seg_range.1), 1);
    assert_eq!(held_mapped(), 1);
    // Held from another thread of this process too, as its own word says.
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(held_mapped(), 1));
    });
    // A peer writes it free, or over with another owner: not held any more.
    let mine = pair.owner().load(Ordering::Acquire);
    pair.owner().store(0, Ordering::Release);
    assert_eq!(held_mapped(), 0);
    pair.owner().store(mine ^ 0x5, Ordering::Release);
    assert_eq!(held_mapped(), 0);
    // Its own word with the waiters bit set: held.
    pair.owner().store(mine | 1 << 31, Ordering::Release);
    assert_eq!(held_mapped(), 1);
    pair.mutex().unlock().unwrap();
    assert_eq!(held_in(seg_range.0, seg_range.1), 0);
    assert_eq!(held_mapped(), 0);
}

#[test]
fn a_thread_holds_at_most_max_held_locks() {
    let pair = Pair::new("max-held");
    let count = MAX_HELD + 1;
    let id = Scratch::named("lock-many");
    let seg = Segment::create(&id.0, count * MUTEX_SIZE, &Options::default()).unwrap();
    Segment::unlink(&id.0).unwrap();
    let locks: Vec<&Mutex> = (0..count)
        .map(|i| Mutex::init_in(&seg, i * MUTEX_SIZE).unwrap().0)
        .collect();
    for lock in &locks[..MAX_HELD] {
        lock.lock(None).unwrap();
    }
    assert_eq!(errno(locks[MAX_HELD].lock(None).unwrap_err()), libc::ENOLCK);
    assert_eq!(errno(locks[MAX_HELD].try_lock().unwrap_err()), libc::ENOLCK);
    assert_eq!(errno(pair.mutex().try_lock().unwrap_err()), libc::ENOLCK);
    assert_eq!(held_in(seg.as_ptr() as usize, seg.len()), MAX_HELD);
    locks[0].unlock().unwrap();
    locks[MAX_HELD].lock(None).unwrap();
    for lock in &locks[1..] {
        lock.unlock().unwrap();
    }
    assert_eq!(held_in(seg.as_ptr() as usize, seg.len()), 0);
}

#[test]
fn a_forked_child_killed_holding_the_lock_is_a_dead_owner_and_fork_resets_identity() {
    let pair = Pair::new("fork");
    let mutex = pair.mutex();
    // This thread holds the lock across the fork: the child is another thread, not the owner.
    mutex.lock(None).unwrap();
    let flag = pair.peer.atomic_u32(0);
    flag.store(0, Ordering::SeqCst);
    const TRIED: u32 = 50;
    // SAFETY: the child runs only the lock code (atomics, a /proc read, futex) and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = match mutex.try_lock() {
            Err(LockError::WouldBlock) => {
                flag.store(TRIED, Ordering::SeqCst);
                match mutex.lock(Some(Duration::from_secs(10))) {
                    Ok(LockOutcome::Acquired) => 0,
                    _ => 3,
                }
            }
            _ => 2,
        };
        flag.store(if code == 0 { 1 } else { 100 + code }, Ordering::SeqCst);
        loop {
            // SAFETY: pause only sleeps until a signal (the parent's SIGKILL).
            unsafe { libc::pause() };
        }
    }
    // Unlock only once the child found the lock held: a child scheduled late must not find it
    // free already.
    let start = Instant::now();
    while flag.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "child never tried"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    mutex.unlock().unwrap(); // the child gets it now
    while matches!(flag.load(Ordering::SeqCst), 0 | TRIED) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "child never locked"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(flag.load(Ordering::SeqCst), 1, "the child's lock");
    // SAFETY: our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut status = 0;
    // SAFETY: our own child; `status` is writable.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(
        mutex.lock(Some(Duration::from_secs(10))).unwrap(),
        LockOutcome::OwnerDied
    );
    mutex.unlock().unwrap();
}

#[test]
fn a_lock_set_up_in_another_pid_namespace_is_refused_and_none_recorded_is_no_check() {
    let pair = Pair::new("pid-namespace");
    let ours = shared_buffer::channel::liveness::pid_namespace();
    assert_eq!(
        pair.header(4).load(Ordering::Relaxed),
        ours,
        "init records its namespace"
    );
    if ours == 0 {
        return; // not Linux, or no /proc: nothing recorded, nothing to compare
    }
    pair.header(4)
        .store(ours.wrapping_add(1), Ordering::Relaxed);
    for result in [
        Mutex::open_in(&pair.seg, AT).map(|_| ()),
        Mutex::init_in(&pair.seg, AT).map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "(pid:[{}]; this process is in pid:[{ours}])",
                ours.wrapping_add(1)
            )),
            "{err}"
        );
        assert_eq!(errno(err), libc::EXDEV);
    }
    // None recorded, as in the locks of earlier releases: no check.
    pair.header(4).store(0, Ordering::Relaxed);
    assert_eq!(pair.mutex().try_lock().unwrap(), LockOutcome::Acquired);
    pair.mutex().unlock().unwrap();
}
