//! What the TypeScript implementation of the channel protocol needs from native code: the
//! liveness check for peer processes, and the layout constants to check its own copy against.
//!
//! The protocol itself runs in TypeScript over the shared memory (see
//! [`shared_buffer::channel::layout`]); these calls are on its slow paths and in its tests only.

use std::panic;

use crate::guard;
use shared_buffer::channel::layout::TABLE;
use shared_buffer::channel::liveness;

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

/// The value of the channel layout constant or offset named `name[..name_len]` (UTF-8, e.g.
/// `"OFF_TAIL"`, `"REC_MORE"`), as listed in [`TABLE`]; -1 for a name it does not list (or a
/// null `name` with a non-zero length). Values are `u32`s, so every known name gives `0..=2^32-1`.
///
/// # Safety
/// `name` must be valid for reading `name_len` bytes (or `name_len` must be 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_channel_constant(name: *const u8, name_len: u32) -> i64 {
    let name = if name_len == 0 {
        &[][..]
    } else if name.is_null() {
        return -1;
    } else {
        // SAFETY: non-null and valid for name_len bytes, as the caller promises.
        unsafe { std::slice::from_raw_parts(name, name_len as usize) }
    };
    // A table lookup cannot panic; the guard is there because nothing may unwind out of here.
    panic::catch_unwind(|| {
        TABLE
            .iter()
            .find(|(known, _)| known.as_bytes() == name)
            .map_or(-1, |&(_, value)| i64::from(value))
    })
    .unwrap_or(-1)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use shared_buffer::channel::layout;

    fn constant(name: &str) -> i64 {
        // SAFETY: the str is valid for its length.
        unsafe { sb_channel_constant(name.as_ptr(), name.len() as u32) }
    }

    #[test]
    fn constants_by_name() {
        assert_eq!(constant("OFF_TAIL"), 256);
        assert_eq!(constant("MAGIC"), 0x4843_4253);
        assert_eq!(constant("REC_COMMITTED"), 0x8000_0000);
        assert_eq!(constant("REC_MORE"), 0x2000_0000);
        assert_eq!(constant("REC_ABORT"), 0x1000_0000);
        assert_eq!(constant("REC_LEN_MASK"), 0x0FFF_FFFF);
        assert_eq!(constant("MAX_CAPACITY"), 1 << 28);
        assert_eq!(constant("MAX_MESSAGE_LEN"), 0x7FFF_FFFF);
        for &(name, value) in layout::TABLE {
            assert_eq!(constant(name), i64::from(value), "{name}");
        }
        for unknown in ["", "off_tail", "OFF_TAIL ", "NOPE", "OFF_TAI"] {
            assert_eq!(constant(unknown), -1, "{unknown:?}");
        }
        // SAFETY: null with a length is refused before any read; null with 0 reads nothing.
        unsafe {
            assert_eq!(sb_channel_constant(std::ptr::null(), 4), -1);
            assert_eq!(sb_channel_constant(std::ptr::null(), 0), -1);
        }
        // Not UTF-8: unknown, not an error.
        let bytes = [0xFFu8, 0xFE];
        // SAFETY: valid for 2 bytes.
        assert_eq!(unsafe { sb_channel_constant(bytes.as_ptr(), 2) }, -1);
    }

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
