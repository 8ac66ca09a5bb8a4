//! The C ABI that the runtimes load: handles and reference counts, error codes, wait/notify,
//! the mutex and the async wait service, called as a runtime would call them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex as StdMutex};
use std::time::{Duration, Instant};

use shared_buffer::sync::{self, AsyncStart, MUTEX_SIZE, WaitOutcome};
use shared_buffer::{Options, Segment, SegmentId};
use shared_buffer_native::{self as ffi, SbMapping};
use test_support::{Kids, LONG, Scratch, TestSeg, rerun, serial};

/// Where tests put their mutex.
const MUTEX_AT: usize = 64;

/// The entry point of the child process that notifies from another process; a no-op test
/// otherwise.
#[test]
fn child_entry() {
    let Ok(name) = std::env::var("SB_ABI_NOTIFY") else {
        return;
    };
    let seg = Segment::open(&SegmentId::name(&name).unwrap(), None, &Options::default()).unwrap();
    // The parent registered its waits before starting this process.
    seg.atomic_u32(0).store(1, Ordering::Release);
    sync::notify(seg.atomic_u32(0), sync::NOTIFY_ALL).unwrap();
}

// ---- the C layer ----------------------------------------------------------------------------

fn open_name(name: &str, size: u64, how: u32) -> (i32, SbMapping) {
    let mut out = SbMapping::default();
    // SAFETY: name is valid for its length and out for one write.
    let rc = unsafe {
        ffi::sb_open_name(
            name.as_ptr(),
            name.len() as u32,
            size,
            how,
            0,
            0o600,
            ffi::SB_OWNER_TRUSTED,
            &mut out,
        )
    };
    (rc, out)
}

#[test]
fn c_layer_handles_count_references() {
    let _serial = serial();
    let s = Scratch::named("ffi");
    let name = s.name();
    let before = ffi::sb_handle_count();
    let (rc, out) = open_name(name, 4096, ffi::SB_CREATE);
    assert_eq!(rc, 0);
    assert_eq!((out.len, out.created), (4096, 1));
    let handle = out.handle as i32;
    let dup = ffi::sb_dup(handle);
    assert!(dup > 0 && dup != handle);
    assert_eq!(ffi::sb_close(handle), 0);
    // The mapping lives on through the duplicate.
    // SAFETY: the address is mapped while `dup` is open, and aligned for u32.
    unsafe { (out.addr as *mut u32).write_volatile(17) };
    assert_eq!(ffi::sb_close(dup), 0);
    assert_eq!(
        ffi::sb_close(dup),
        -libc::EBADF,
        "double close is an error, not UB"
    );
    assert_eq!(ffi::sb_close(123_456_789), -libc::EBADF);
    assert_eq!(ffi::sb_dup(dup), -libc::EBADF);
    assert_eq!(ffi::sb_handle_count(), before);
    let (rc, out) = open_name(name, 0, ffi::SB_OPEN);
    assert_eq!((rc, out.len, out.created), (0, 4096, 0));
    // SAFETY: mapped while the new handle is open.
    assert_eq!(unsafe { (out.addr as *const u32).read_volatile() }, 17);
    ffi::sb_release(std::ptr::null_mut(), out.handle as usize as *mut _);
    assert_eq!(
        ffi::sb_handle_count(),
        before,
        "the deallocator closes its handle"
    );
}

/// Creates `id` (4 KiB) through the C layer, replacing what holds it: the code and what was
/// written back.
fn create_replacing(id: &SegmentId) -> (i32, SbMapping) {
    let mut out = SbMapping::default();
    let (how, flags) = (ffi::SB_CREATE, ffi::SB_REPLACE);
    let rc = match id {
        SegmentId::Name(name) => {
            let name = name.to_bytes();
            // SAFETY: name is valid for its length and out for one write.
            unsafe {
                ffi::sb_open_name(
                    name.as_ptr(),
                    name.len() as u32,
                    4096,
                    how,
                    flags,
                    0o600,
                    ffi::SB_OWNER_TRUSTED,
                    &mut out,
                )
            }
        }
        // SAFETY: out is valid for one write.
        SegmentId::Key(key) => unsafe {
            ffi::sb_open_key(
                *key,
                4096,
                how,
                flags,
                0o600,
                ffi::SB_OWNER_TRUSTED,
                &mut out,
            )
        },
    };
    (rc, out)
}

/// `sb_unlink_*_own` of `id` with `identity`.
fn unlink_own(id: &SegmentId, identity: &[u64; 2]) -> i32 {
    match id {
        // SAFETY: the name is valid for its length, the identity for two reads.
        SegmentId::Name(name) => unsafe {
            let name = name.to_bytes();
            ffi::sb_unlink_name_own(name.as_ptr(), name.len() as u32, identity.as_ptr())
        },
        // SAFETY: the identity is valid for two reads.
        SegmentId::Key(key) => unsafe { ffi::sb_unlink_key_own(*key, identity.as_ptr()) },
    }
}

#[test]
fn c_layer_unlinks_a_closed_segment_by_its_identity_only() {
    let _serial = serial();
    for s in Scratch::both("ffi-identity") {
        let id = &s.0;
        let (rc, first) = create_replacing(id);
        assert_eq!(rc, 0, "{id:?}");
        let identity = first.identity;
        assert_ne!(identity, [0, 0]);
        assert_eq!(ffi::sb_close(first.handle as i32), 0);
        // Replaced after the close: the newer segment keeps the key or name.
        let (rc, newer) = create_replacing(id);
        assert_eq!(rc, 0, "{id:?}");
        assert_eq!(
            unlink_own(id, &identity),
            -libc::ENOENT,
            "{id:?}: another segment"
        );
        let current = newer.identity;
        assert_ne!(current, identity);
        // Identities that are not the newer segment's, while it lives: each refused, and it stays.
        let mut others = vec![[u64::MAX, u64::MAX], [current[0], current[1] ^ 1]];
        if matches!(id, SegmentId::Key(_)) {
            // The same id, another creator: the id came round again for someone else's segment.
            others.push([current[0] ^ (1 << 32), 0]);
            others.push([current[0], 1]); // a named segment's identity
        }
        for other in &others {
            assert_eq!(unlink_own(id, other), -libc::ENOENT, "{id:?}: {other:x?}");
        }
        // SAFETY: a null identity is refused before it is read.
        let null = unsafe {
            match id {
                SegmentId::Key(key) => ffi::sb_unlink_key_own(*key, std::ptr::null()),
                SegmentId::Name(name) => {
                    let name = name.to_bytes();
                    ffi::sb_unlink_name_own(name.as_ptr(), name.len() as u32, std::ptr::null())
                }
            }
        };
        assert_eq!(null, -libc::EFAULT);
        // Its own, after its close: removed.
        assert_eq!(ffi::sb_close(newer.handle as i32), 0);
        assert_eq!(unlink_own(id, &current), 0, "{id:?}");
        assert_eq!(unlink_own(id, &current), -libc::ENOENT, "{id:?}: gone");
    }
}

#[test]
fn c_layer_reports_errors_as_negative_codes() {
    let _serial = serial();
    let s = Scratch::named("ffi");
    let name = s.name();
    assert_eq!(open_name(name, 0, ffi::SB_OPEN).0, -libc::ENOENT);
    let (rc, first) = open_name(name, 64, ffi::SB_CREATE);
    assert_eq!(rc, 0);
    assert_eq!(open_name(name, 64, ffi::SB_CREATE).0, -libc::EEXIST);
    let (rc, out) = open_name(name, 128, ffi::SB_OPEN_OR_CREATE);
    assert_eq!(
        (rc, out.len, out.handle),
        (-libc::EINVAL, 64, 0),
        "len carries the actual size"
    );
    assert_eq!(open_name(name, 64, 99).0, -libc::EINVAL);
    assert_eq!(open_name("a/b", 64, ffi::SB_CREATE).0, -libc::EINVAL);
    let bad_utf8 = [b'/', 0xff, 0xfe];
    let mut out = SbMapping::default();
    // SAFETY: valid pointers and lengths.
    let rc = unsafe {
        ffi::sb_open_name(
            bad_utf8.as_ptr(),
            3,
            64,
            ffi::SB_CREATE,
            0,
            0o600,
            -1,
            &mut out,
        )
    };
    assert_eq!(rc, -libc::EINVAL);
    // SAFETY: a null name with a non-zero length is refused before it is read.
    let rc = unsafe {
        ffi::sb_open_name(
            std::ptr::null(),
            5,
            64,
            ffi::SB_CREATE,
            0,
            0o600,
            -1,
            &mut out,
        )
    };
    assert_eq!(rc, -libc::EFAULT);
    let before = ffi::sb_handle_count();
    // SAFETY: a null out pointer is allowed and refused.
    let rc = unsafe {
        ffi::sb_open_name(
            name.as_ptr(),
            name.len() as u32,
            0,
            ffi::SB_OPEN,
            0,
            0,
            ffi::SB_OWNER_TRUSTED,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, -libc::EFAULT);
    assert_eq!(
        ffi::sb_handle_count(),
        before,
        "no handle leaks when out is null"
    );
    assert_eq!(ffi::sb_close(first.handle as i32), 0);
    // SAFETY: out is valid.
    let rc = unsafe { ffi::sb_open_key(0, 64, ffi::SB_CREATE, 0, 0o600, -1, &mut out) };
    assert_eq!(rc, -libc::EINVAL);
    assert_eq!(ffi::sb_unlink_key(0), -libc::EINVAL);
    // SAFETY: name is valid for its length.
    let rc = unsafe { ffi::sb_unlink_name(name.as_ptr(), name.len() as u32) };
    assert_eq!(rc, 0);
    // SAFETY: as above.
    let rc = unsafe { ffi::sb_unlink_name(name.as_ptr(), name.len() as u32) };
    assert_eq!(rc, -libc::ENOENT);
}

#[test]
fn abi_version_matches_the_constant() {
    assert_eq!(ffi::sb_abi_version(), ffi::SB_ABI_VERSION);
    assert!(!ffi::sb_release_fn().is_null());
}

// ---- the C ABI ----------------------------------------------------------------------------

#[test]
fn c_abi_wait_and_notify() {
    let word = AtomicU32::new(3);
    let addr = word.as_ptr().cast_const();
    // SAFETY: (all sb_* calls) the addresses are live words, null, misaligned, or unmapped on
    // purpose; the ABI checks the first two and the kernel reports the last.
    unsafe {
        assert_eq!(ffi::sb_wait(addr, 4, -1), ffi::SB_WAIT_NOT_EQUAL);
        assert_eq!(ffi::sb_wait(addr, 3, 0), ffi::SB_WAIT_TIMED_OUT);
        let start = Instant::now();
        assert_eq!(ffi::sb_wait(addr, 3, 20_000_000), ffi::SB_WAIT_TIMED_OUT);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(
            ffi::sb_wait_spin(addr, 3, 1_000_000, 100),
            ffi::SB_WAIT_TIMED_OUT
        );
        assert_eq!(ffi::sb_wait_spin(addr, 4, -1, 100), ffi::SB_WAIT_NOT_EQUAL);
        assert_eq!(ffi::sb_notify(addr, 1), 0);
        assert_eq!(ffi::sb_wait(std::ptr::null(), 0, 0), -libc::EINVAL);
        assert_eq!(ffi::sb_notify(std::ptr::null(), 1), -libc::EINVAL);
        let odd = addr.cast::<u8>().add(1).cast::<u32>();
        assert_eq!(ffi::sb_wait(odd, 0, 0), -libc::EINVAL);
        assert_eq!(ffi::sb_notify(odd, 1), -libc::EINVAL);
        assert_eq!(ffi::sb_wait_spin(odd, 0, 0, 1), -libc::EINVAL);

        // A stale address: the kernel reports EFAULT, nothing crashes (Linux only: elsewhere
        // the word is read in user space first).
        #[cfg(target_os = "linux")]
        {
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED);
            assert_eq!(libc::munmap(page, 4096), 0);
            assert_eq!(ffi::sb_wait(page.cast(), 0, -1), -libc::EFAULT);
            assert_eq!(ffi::sb_wait(page.cast(), 0, 0), -libc::EFAULT);
            assert_eq!(ffi::sb_notify(page.cast(), 1), -libc::EFAULT);
        }

        // A waiter on another thread, woken through the ABI (notify until the kernel says it
        // woke one: the thread may not have parked yet).
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| ffi::sb_wait(word.as_ptr(), 3, 10_000_000_000));
            let start = Instant::now();
            while ffi::sb_notify(addr, u32::MAX) != 1 {
                assert!(start.elapsed() < LONG, "the waiter never parked");
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(waiter.join().unwrap(), ffi::SB_WAIT_OK);
        });
    }
}

#[test]
fn c_abi_mutex() {
    let seg = TestSeg::new("abi-mutex");
    let base = seg.as_ptr();
    assert_eq!(ffi::sb_mutex_size() as usize, MUTEX_SIZE);
    assert_eq!(ffi::sb_mutex_align(), 8);
    // SAFETY: (all sb_* calls) addresses inside the segment (or null / misaligned on purpose).
    unsafe {
        let m = base.add(MUTEX_AT);
        assert_eq!(ffi::sb_mutex_lock(m, -1), -libc::EINVAL, "not initialised");
        assert_eq!(ffi::sb_mutex_init(std::ptr::null_mut()), -libc::EINVAL);
        assert_eq!(ffi::sb_mutex_init(m.add(4)), -libc::EINVAL);
        assert_eq!(ffi::sb_mutex_init(m), 0);
        assert_eq!(ffi::sb_mutex_init(m), 1);
        assert_eq!(ffi::sb_mutex_unlock(m), -libc::EPERM);
        assert_eq!(ffi::sb_mutex_lock(m, -1), ffi::SB_LOCK_ACQUIRED);
        assert_eq!(ffi::sb_mutex_lock(m, -1), -libc::EDEADLK);
        assert_eq!(ffi::sb_mutex_trylock(m), -libc::EDEADLK);
        let p = m as usize;
        std::thread::spawn(move || {
            let m = p as *mut u8;
            assert_eq!(ffi::sb_mutex_trylock(m), -libc::EBUSY);
            assert_eq!(ffi::sb_mutex_lock(m, 30_000_000), -libc::ETIMEDOUT);
            assert_eq!(ffi::sb_mutex_unlock(m), -libc::EPERM);
        })
        .join()
        .unwrap();
        assert_eq!(ffi::sb_mutex_unlock(m), 0);
        assert_eq!(ffi::sb_mutex_trylock(m), ffi::SB_LOCK_ACQUIRED);
        assert_eq!(ffi::sb_mutex_unlock(m), 0);
        assert_eq!(ffi::sb_mutex_lock(std::ptr::null_mut(), 0), -libc::EINVAL);
        assert_eq!(ffi::sb_mutex_unlock(m.add(4)), -libc::EINVAL);
    }
}

// ---- the async wait service ---------------------------------------------------------------

static EVENTS: StdMutex<Vec<(u64, i32)>> = StdMutex::new(Vec::new());
static EVENT: Condvar = Condvar::new();

const CB: Option<ffi::SbWakeCallback> = Some(record);

extern "C" fn record(token: u64, result: i32) {
    EVENTS.lock().unwrap().push((token, result));
    EVENT.notify_all();
}

/// The result the callback got for `token`, waiting up to 10 s for it.
fn event(token: u64) -> i32 {
    let deadline = Instant::now() + LONG;
    let mut events = EVENTS.lock().unwrap();
    loop {
        if let Some(at) = events.iter().position(|(t, _)| *t == token) {
            return events.remove(at).1;
        }
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("no callback for token {token}"));
        events = EVENT.wait_timeout(events, left).unwrap().0;
    }
}

fn no_event(token: u64) -> bool {
    !EVENTS.lock().unwrap().iter().any(|(t, _)| *t == token)
}

/// These steps run in order, in one test.
#[test]
fn async_wait_service() {
    let seg = TestSeg::new("async");
    let word = seg.word(0);
    let addr = word.as_ptr().cast_const();
    // SAFETY: (all sb_* calls) `addr` is a live word of the segment, which outlives every wait
    // registered here (each one is seen to end before the segment drops).
    unsafe {
        assert_eq!(
            ffi::sb_wait_async(addr, 0, -1, 1, None),
            -libc::EINVAL,
            "no callback"
        );
        assert_eq!(
            ffi::sb_wait_async(std::ptr::null(), 0, -1, 1, CB),
            -libc::EINVAL
        );
        assert_eq!(
            ffi::sb_wait_async(addr.cast::<u8>().add(2).cast(), 0, -1, 1, CB),
            -libc::EINVAL
        );

        // Settled at once: no callback.
        assert_eq!(
            ffi::sb_wait_async(addr, 9, -1, 2, CB),
            ffi::SB_WAIT_NOT_EQUAL
        );
        assert_eq!(
            ffi::sb_wait_async(addr, 0, 0, 3, CB),
            ffi::SB_WAIT_TIMED_OUT
        );

        // Woken by a notify from this process.
        assert_eq!(
            ffi::sb_wait_async(addr, 0, -1, 10, CB),
            ffi::SB_WAIT_PENDING
        );
        std::thread::sleep(Duration::from_millis(20));
        assert!(no_event(10), "called back before any notify");
        word.store(1, Ordering::Release);
        ffi::sb_notify(addr, u32::MAX);
        assert_eq!(event(10), ffi::SB_WAIT_OK);

        // Timed out, no earlier than asked.
        let start = Instant::now();
        assert_eq!(
            ffi::sb_wait_async(addr, 1, 50_000_000, 11, CB),
            ffi::SB_WAIT_PENDING
        );
        assert_eq!(event(11), ffi::SB_WAIT_TIMED_OUT);
        assert!(start.elapsed() >= Duration::from_millis(50));

        // Woken by another process: five waits on one word.
        word.store(0, Ordering::Release);
        // Registered before the notifier starts: a wait ends "ok" when notified or when the
        // word changes after registration, whether or not its thread has parked yet.
        for token in 20..25 {
            assert_eq!(ffi::sb_wait_async(addr, 0, 10_000_000_000, token, CB), 0);
        }
        let mut notifier = Kids::default();
        notifier.spawn(rerun("child_entry").env("SB_ABI_NOTIFY", seg.name()));
        for token in 20..25 {
            assert_eq!(event(token), ffi::SB_WAIT_OK, "token {token}");
        }
        notifier.join_all();

        // Threads are reused: sequential waits spawn nothing new once one is idle.
        let spawned = sync::service_stats().spawned;
        for round in 0..50u32 {
            let token = 100 + u64::from(round);
            word.store(round, Ordering::Release);
            assert_eq!(ffi::sb_wait_async(addr, round, -1, token, CB), 0);
            word.store(round + 1, Ordering::Release);
            ffi::sb_notify(addr, u32::MAX);
            assert_eq!(event(token), ffi::SB_WAIT_OK);
        }
        assert!(sync::service_stats().spawned - spawned <= 1);

        // Many at once: one thread each, all woken.
        for i in 0..100 {
            seg.word(10 + i).store(0, Ordering::Release);
            let token = 1000 + i as u64;
            assert_eq!(
                ffi::sb_wait_async(seg.word(10 + i).as_ptr(), 0, -1, token, CB),
                0
            );
        }
        let stats = sync::service_stats();
        assert!(stats.pending >= 100, "{stats:?}");
        assert!(
            stats.threads - stats.idle <= stats.pending.div_ceil(stats.per_thread),
            "one thread watches up to {} waits: {stats:?}",
            stats.per_thread
        );
        for i in 0..100 {
            seg.word(10 + i).store(1, Ordering::Release);
            ffi::sb_notify(seg.word(10 + i).as_ptr(), 1);
        }
        for i in 0..100 {
            assert_eq!(event(1000 + i), ffi::SB_WAIT_OK);
        }

        // Cancelled: a closing segment ends the waits on its range, with EBADF, at once.
        for i in 0..10 {
            seg.word(200 + i).store(0, Ordering::Release);
            let token = 2000 + i as u64;
            assert_eq!(
                ffi::sb_wait_async(seg.word(200 + i).as_ptr(), 0, -1, token, CB),
                0
            );
        }
        let start = seg.word(200).as_ptr() as usize;
        assert_eq!(ffi::sb_wait_cancel(start, 5 * 4), 5);
        for i in 0..5 {
            assert_eq!(event(2000 + i), -libc::EBADF);
        }
        assert!(no_event(2005), "outside the range: still pending");
        assert_eq!(ffi::sb_wait_cancel(start, 10 * 4), 5);
        for i in 5..10 {
            assert_eq!(event(2000 + i), -libc::EBADF);
        }
        assert_eq!(ffi::sb_wait_cancel(start, 10 * 4), 0, "nothing left");
    }

    // The Rust API, with a closure.
    word.store(5, Ordering::Release);
    let (tx, rx) = std::sync::mpsc::channel();
    // SAFETY: a live word of the segment, which outlives the wait (it ends before the drop).
    let start = unsafe {
        sync::wait_async(word.as_ptr(), 5, Some(LONG), move |r| {
            tx.send(r.unwrap()).unwrap();
        })
    }
    .unwrap();
    assert_eq!(start, AsyncStart::Pending);
    word.store(6, Ordering::Release);
    sync::notify(word, 1).unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), WaitOutcome::Woken);
}
