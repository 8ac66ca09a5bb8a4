//! Is a peer process still alive? Used only on the slow path, while a blocking call waits.
//!
//! A process counts as dead when `kill(pid, 0)` fails with `ESRCH`, or (Linux) when
//! `/proc/<pid>/stat` shows it as a zombie: a killed child that its parent has not reaped yet has
//! stopped running, and must not keep its peer waiting. `EPERM` means the process exists but
//! belongs to someone else: alive.
//!
//! Pids are compared within one pid namespace: peers in different containers see different pids
//! and must not use the liveness check (a foreign pid looks dead or, worse, like another process).
//! So a channel's header records the pid namespace of its endpoints ([`pid_namespace`], stored
//! by the first to attach), and an open or attach from another one is refused.
//! A pid reused by a new process after its owner died looks alive; that delays detection until
//! the new process exits, it never reports a live peer as dead.

/// This process's id, as stored in the header.
#[cfg(not(loom))]
pub(crate) fn own_pid() -> u32 {
    std::process::id()
}

/// Under loom every thread is "the same process".
#[cfg(loom)]
pub(crate) fn own_pid() -> u32 {
    1
}

/// This process's pid namespace, as stored in the header: the inode number of
/// `/proc/self/ns/pid`. 0 where it cannot be told: no `/proc`, not Linux, or a `/proc` whose
/// namespace links are not the kernel's namespace files (gVisor has made up a new inode for each
/// lookup, which would tell two processes of one namespace apart). Read once per process: a
/// process never changes its own (`unshare` and `setns` move only its later children), but a
/// child forked after one of those is in another, so a new pid reads it again.
#[cfg(all(target_os = "linux", not(loom)))]
pub fn pid_namespace() -> u32 {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    // The pid that read it (high half) and what it read (low half); 0: not read yet.
    static READ: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let read = READ.load(Relaxed);
    if read >> 32 == u64::from(pid) {
        return read as u32;
    }
    let namespace = read_pid_namespace();
    READ.store(u64::from(pid) << 32 | u64::from(namespace), Relaxed);
    namespace
}

#[cfg(all(target_os = "linux", not(loom)))]
fn read_pid_namespace() -> u32 {
    use std::os::unix::fs::MetadataExt;
    const PATH: &std::ffi::CStr = c"/proc/self/ns/pid";
    /// `NSFS_MAGIC` of `<linux/magic.h>`: the file system of the kernel's namespace files.
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // SAFETY: an all-zero statfs is a valid value for the call to fill in.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    if unsafe { libc::statfs(PATH.as_ptr(), &mut fs) } != 0 || fs.f_type as i64 != NSFS_MAGIC {
        return 0;
    }
    std::fs::metadata("/proc/self/ns/pid")
        .ok()
        .and_then(|meta| u32::try_from(meta.ino()).ok())
        .unwrap_or(0)
}

/// Elsewhere (and under loom) there is no pid namespace to tell.
#[cfg(any(not(target_os = "linux"), loom))]
pub fn pid_namespace() -> u32 {
    0
}

/// True unless `pid` is known to be dead. 0 and values above `i32::MAX` are not pids: dead.
#[cfg(all(unix, not(loom)))]
pub(crate) fn alive(pid: u32) -> bool {
    probe(pid).unwrap_or(false)
}

/// `Ok(true)` if `pid` exists and is not a zombie, `Ok(false)` if it is dead, `Err(errno)` when
/// it cannot be told (see [`crate::os::probe_process`]).
#[cfg(all(unix, not(loom)))]
pub fn probe(pid: u32) -> Result<bool, i32> {
    crate::os::probe_process(pid)
}

/// Without `kill` a process's existence cannot be checked.
#[cfg(any(not(unix), loom))]
pub fn probe(_pid: u32) -> Result<bool, i32> {
    Err(libc::ENOSYS)
}

/// Without `kill`, every peer is assumed alive.
#[cfg(all(not(unix), not(loom)))]
pub(crate) fn alive(pid: u32) -> bool {
    pid != 0
}

/// Under loom no process dies.
#[cfg(loom)]
pub(crate) fn alive(pid: u32) -> bool {
    pid != 0
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive_and_junk_is_dead() {
        assert!(alive(own_pid()));
        assert!(!alive(0));
        assert!(!alive(u32::MAX));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn zombie_child_counts_as_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: a zombie once it exits.
        // The deadline only guards against a hang; a loaded machine may take a while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!alive(pid));
        child.wait().unwrap();
        assert!(!alive(pid));
    }
}
