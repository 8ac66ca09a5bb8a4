//! What the TypeScript implementation of the channel protocol needs from native code: the
//! liveness check for peer processes, and in Deno and Bun the fast paths of its commonest calls.
//! (Its layout constants are generated from the Rust layout at build time of the sources:
//! `ts/channel/layout.ts`.)
//!
//! The protocol runs in TypeScript over the shared memory (see
//! [`shared_buffer::channel::layout`]), except a one-record send and the copying receive of a
//! whole message, which `sb_channel_put` and `sb_channel_take` do in one call with the Rust
//! ring's own code, and the batch receive's look ahead, which `sb_channel_scan_run` makes in one
//! call; all over state the TypeScript endpoint keeps in its own memory.

use crate::guard;
use shared_buffer::channel::{foreign, liveness};

/// The receiver state `sb_channel_take` reads and updates.
pub type TakeState = foreign::TakeState;
/// The sender state `sb_channel_put` reads and updates.
pub type PutState = foreign::PutState;
/// The bytes a caller allocates for either state.
pub const STATE_BYTES: usize = {
    let (take, put) = (size_of::<TakeState>(), size_of::<PutState>());
    if take > put { take } else { put }
};

/// Whether process `pid` is alive, as the channel's peers judge it: 1 if it exists and is not a
/// zombie (`kill(pid, 0)` does not fail with `ESRCH`, and `/proc/<pid>/stat` does not show
/// state `Z` or `X`), 0 if it is dead, or a negative code: `-EINVAL` for 0 and values above
/// `i32::MAX` (not pids), `-ENOSYS` where the check is unavailable.
///
/// A process of another user counts as alive (`kill` fails with `EPERM`). Pids are those of the
/// caller's pid namespace.
#[unsafe(no_mangle)]
pub extern "C" fn sb_process_alive(pid: u32) -> i32 {
    guard(|| match liveness::probe(pid) {
        Ok(alive) => i32::from(alive),
        Err(errno) => -errno,
    })
}

/// This process's pid namespace as a channel's header records it (the inode number of
/// `/proc/self/ns/pid`), or 0 where it cannot be read (no `/proc`, not Linux): the TypeScript
/// endpoints write it when they create a channel and compare it when they open one.
#[unsafe(no_mangle)]
pub extern "C" fn sb_pid_namespace() -> u32 {
    // It reads a file and cannot panic; were it to, 0 (unknown) is the safe answer.
    std::panic::catch_unwind(liveness::pid_namespace).unwrap_or(0)
}

/// One receive of a whole message of at most `room` bytes into `target`, for the TypeScript
/// receiver's fast path: its length, or -1 with nothing taken (the caller's own path then looks
/// at what is there). See [`foreign::take_into`].
///
/// # Safety
/// As [`foreign::take_into`]: `region` is a live, validated channel region of `state.capacity`
/// bytes of data, `state` the caller's own, `target` valid for `room` bytes. The TypeScript
/// receiver checks its mapping is live (its buffer not detached) right before the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_channel_take(
    region: *mut u8,
    state: *mut TakeState,
    target: *mut u8,
    room: u32,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promises above.
        let Some(state) = (unsafe { state.as_mut() }) else {
            return -1;
        };
        if target.is_null() && room != 0 {
            return -1;
        }
        // SAFETY: as above.
        unsafe { foreign::take_into(region, state, target, room as usize) }
    })
}

/// The batch receive's look ahead, for the TypeScript receiver's `recvMany`: copies the run of
/// whole messages of at most `small` bytes each committed back to back at `state.head` (at most
/// `max` of them, `out_len` bytes of records) to `out`, their lengths to `lens`, and returns
/// their count, 0 for none; consumes nothing. See [`foreign::scan_run`].
///
/// # Safety
/// As [`foreign::scan_run`]: `region` is a live, validated channel region of `state.capacity`
/// bytes of data, `state` the caller's own, `out` valid for `out_len` bytes and `lens` for `max`
/// `u32`s. The TypeScript receiver checks its mapping is live right before the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_channel_scan_run(
    region: *mut u8,
    state: *mut TakeState,
    out: *mut u8,
    out_len: u32,
    lens: *mut u32,
    max: u32,
    small: u32,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promises above.
        let Some(state) = (unsafe { state.as_mut() }) else {
            return 0;
        };
        // SAFETY: as above (null `out` or `lens` gives 0).
        unsafe {
            foreign::scan_run(
                region,
                state,
                out,
                out_len as usize,
                lens,
                max as usize,
                small as usize,
            )
        }
    })
}

/// One send of a `len`-byte message of one record from `src`, for the TypeScript sender's fast
/// path (with one sender or many: `state.tag`): 0 sent, 1 no room now, 2 committed but the
/// receiver had closed without consuming it (`EPIPE`), or -1 with nothing reserved (the caller's
/// own path then looks). See [`foreign::put_from`].
///
/// # Safety
/// As [`foreign::put_from`]: `region` is a live, validated channel region of `state.capacity`
/// bytes of data in the mode `state.tag` says, `state` the caller's own, `src` valid for `len`
/// bytes. The TypeScript sender checks its mapping is live right before the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_channel_put(
    region: *mut u8,
    state: *mut PutState,
    src: *const u8,
    len: u32,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promises above.
        let Some(state) = (unsafe { state.as_mut() }) else {
            return -1;
        };
        // SAFETY: as above.
        unsafe { foreign::put_from(region, state, src, len as usize) }
    })
}

/// The batch send's commit, for the TypeScript sender's `sendMany` with the ring to itself:
/// publishes the `count` records it reserved back to back from data index `idx`, marked and
/// written, whose payload lengths are `lens`, then wakes the receiver if it may be parked: 0, 1
/// when the receiver had closed (the sender then tells whether it consumed the run), or -1 with
/// nothing written (the sender then commits each record itself). See [`foreign::commit_run`].
///
/// # Safety
/// As [`foreign::commit_run`]: `region` is a live, validated channel region of
/// `state.capacity` bytes of data, `state` the caller's own, the records its own reservation,
/// `lens` valid for `count` `u32`s. The TypeScript sender checks its mapping is live right
/// before the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_channel_commit_run(
    region: *mut u8,
    state: *mut PutState,
    idx: u32,
    lens: *const u32,
    count: u32,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promises above.
        let Some(state) = (unsafe { state.as_ref() }) else {
            return -1;
        };
        if lens.is_null() {
            return -1;
        }
        // SAFETY: `lens` is valid for `count` reads of aligned `u32`s, as the caller promises
        // (the TypeScript sender passes its own `Int32Array` of at least `count` elements; Deno's
        // and Bun's FFI check neither), and not null.
        let lens = unsafe { std::slice::from_raw_parts(lens, count as usize) };
        // SAFETY: as above.
        unsafe { foreign::commit_run(region, state, idx, lens) }
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn channel_errors_have_names() {
        use std::ffi::CStr;
        for (code, name) in [
            (libc::EPIPE, c"EPIPE"),
            (libc::ECONNRESET, c"ECONNRESET"),
            (libc::EMSGSIZE, c"EMSGSIZE"),
            (libc::EBADMSG, c"EBADMSG"),
            (libc::EPROTONOSUPPORT, c"EPROTONOSUPPORT"),
            (libc::ETIMEDOUT, c"ETIMEDOUT"),
        ] {
            // SAFETY: both functions return static NUL-terminated strings.
            let (got, message) = unsafe {
                (
                    CStr::from_ptr(crate::sb_error_name(-code)),
                    CStr::from_ptr(crate::sb_error_message(-code)),
                )
            };
            assert_eq!(got, name);
            assert_ne!(message, c"unknown error");
        }
    }

    #[test]
    fn the_fast_paths_refuse_missing_pointers() {
        use shared_buffer::channel::{Channel, Config, Mode, region_size};
        let mut heap = test_support::Heap::new(region_size(256));
        // SAFETY: the heap region outlives the channel (dropped at the end of the test).
        let ch = unsafe {
            Channel::create_raw(
                heap.ptr(),
                heap.len(),
                Config {
                    capacity: 256,
                    mode: Mode::Spsc,
                },
            )
        }
        .unwrap();
        let region = heap.ptr();
        let mut put = PutState {
            capacity: 256,
            ..PutState::default()
        };
        let mut take = TakeState {
            capacity: 256,
            ..TakeState::default()
        };
        // SAFETY: the region is a live channel of capacity 256; every other pointer is null or
        // valid for the length given.
        unsafe {
            assert_eq!(
                sb_channel_put(region, std::ptr::null_mut(), b"x".as_ptr(), 1),
                -1
            );
            assert_eq!(sb_channel_put(region, &mut put, std::ptr::null(), 1), -1);
            assert_eq!(
                sb_channel_take(region, std::ptr::null_mut(), std::ptr::null_mut(), 0),
                -1
            );
            // An empty message from no memory at all, received into none.
            assert_eq!(sb_channel_put(region, &mut put, std::ptr::null(), 0), 0);
            assert_eq!(
                sb_channel_take(region, &mut take, std::ptr::null_mut(), 8),
                -1
            );
            assert_eq!(
                sb_channel_take(region, &mut take, std::ptr::null_mut(), 0),
                0
            );
            let mut into = [0u8; 4];
            assert_eq!(sb_channel_put(region, &mut put, b"abc".as_ptr(), 3), 0);
            let (mut out, mut lens) = ([0u8; 16], [0u32; 2]);
            let (o, l) = (out.as_mut_ptr(), lens.as_mut_ptr());
            assert_eq!(
                sb_channel_scan_run(region, std::ptr::null_mut(), o, 16, l, 2, 8),
                0
            );
            assert_eq!(
                sb_channel_scan_run(region, &mut take, std::ptr::null_mut(), 16, l, 2, 8),
                0
            );
            assert_eq!(
                sb_channel_scan_run(region, &mut take, o, 16, std::ptr::null_mut(), 2, 8),
                0
            );
            assert_eq!(sb_channel_scan_run(region, &mut take, o, 16, l, 2, 8), 1);
            assert_eq!((&out[8..11], lens[0]), (&b"abc"[..], 3));
            assert_eq!(sb_channel_take(region, &mut take, into.as_mut_ptr(), 4), 3);
            assert_eq!(&into[..3], b"abc");
            let lens = [0u32];
            assert_eq!(
                sb_channel_commit_run(region, std::ptr::null_mut(), 0, lens.as_ptr(), 1),
                -1
            );
            assert_eq!(
                sb_channel_commit_run(region, &mut put, 0, std::ptr::null(), 1),
                -1
            );
        }
        drop(ch);
    }

    #[test]
    fn own_process_is_alive_and_non_pids_are_refused() {
        assert_eq!(sb_process_alive(std::process::id()), 1);
        assert_eq!(sb_process_alive(0), -libc::EINVAL);
        assert_eq!(sb_process_alive(u32::MAX), -libc::EINVAL);
        assert_eq!(sb_process_alive(1 << 31), -libc::EINVAL);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn zombie_and_reaped_children_are_dead() {
        use std::time::{Duration, Instant};
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert_eq!(sb_process_alive(pid), 1, "a running child");
        child.kill().unwrap();
        // Killed, not reaped yet: a zombie once the signal is handled. (The deadline only guards
        // against a hang; a loaded machine may take a while.)
        let deadline = Instant::now() + Duration::from_secs(60);
        while sb_process_alive(pid) == 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(sb_process_alive(pid), 0, "a zombie");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let state = stat[stat.rfind(')').unwrap() + 2..].chars().next();
        assert!(matches!(state, Some('Z' | 'X')), "{stat}");
        child.wait().unwrap();
        // Reaped: the pid no longer exists (until the kernel reuses it, which takes a while).
        assert_eq!(sb_process_alive(pid), 0, "a reaped child");
    }
}
