//! What the TypeScript implementation of the channel protocol needs from native code: the
//! liveness check for peer processes. (Its layout constants are generated from the Rust layout
//! at build time of the sources: `ts/channel/layout.ts`.)
//!
//! The protocol itself runs in TypeScript over the shared memory (see
//! [`shared_buffer::channel::layout`]); these calls are on its slow paths and in its tests only.

use crate::guard;
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
