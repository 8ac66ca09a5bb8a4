//! The operating-system layer: exactly one implementation is compiled in.
//!
//! `unix.rs` serves Linux and macOS (the calls are POSIX and System V; the few Linux-only ones are
//! `cfg`'d inside it). `stub.rs` serves every other target and returns
//! [`std::io::ErrorKind::Unsupported`], so the crate still builds there.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(not(unix))]
mod stub;
#[cfg(not(unix))]
pub use stub::*;

/// What `IPC_STAT` says about an existing keyed segment. Only [`sysv_lookup`] makes one, and
/// nothing changes it: [`sysv_attach`] maps as many bytes as it says, so a size from elsewhere
/// would give a [`Mapping`] longer than the segment.
///
/// ```compile_fail
/// let key = 0x5b00_0001;
/// let mut info = shared_buffer::os::sysv_lookup(key).unwrap();
/// info.size = 1 << 30;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysvInfo {
    id: libc::c_int,
    size: usize,
    uid: u32,
    creator_uid: u32,
    creator_pid: u32,
}

impl SysvInfo {
    /// The segment's id (for [`sysv_attach`]).
    pub fn id(&self) -> libc::c_int {
        self.id
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Its owner's uid (the creator may hand it to another uid with `IPC_SET`).
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Its creator's uid, which nobody can change.
    pub fn creator_uid(&self) -> u32 {
        self.creator_uid
    }

    /// Its creator's pid as this process sees it (0 for one of a pid namespace it cannot see),
    /// which nobody can change: with the id, what tells it from a later segment given the same id.
    pub fn creator_pid(&self) -> u32 {
        self.creator_pid
    }
}

/// What is wrong with a name after its `/`, if anything: the reason and its error number. A name
/// is 1 to [`NAME_MAX`] bytes without a `/`, other than `.` and `..` (which name the segments'
/// folder or its parent): every `posix_*` call here refuses any other, so that none reaches a
/// path outside the segments' folder.
pub(crate) fn bare_name_fault(bare: &[u8]) -> Option<(&'static str, i32)> {
    if bare.is_empty() {
        Some(("name is empty", libc::EINVAL))
    } else if bare.contains(&b'/') {
        Some(("name has a '/' after its first character", libc::EINVAL))
    } else if bare == b"." || bare == b".." {
        Some(("name is '.' or '..'", libc::EINVAL))
    } else if bare.len() > NAME_MAX {
        Some(("name is too long", libc::ENAMETOOLONG))
    } else {
        None
    }
}

/// `Ok` for a name a `posix_*` call takes: `/`, then what `bare_name_fault` accepts.
pub fn check_name(name: &std::ffi::CStr) -> std::io::Result<()> {
    let fault = match name.to_bytes().strip_prefix(b"/") {
        Some(bare) => bare_name_fault(bare),
        None => Some(("name does not start with '/'", libc::EINVAL)),
    };
    match fault {
        Some((_, errno)) => Err(std::io::Error::from_raw_os_error(errno)),
        None => Ok(()),
    }
}

/// What kind of file is at a segment's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file: what `shm_open` makes.
    Regular,
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character or block device.
    Device,
    /// Anything else.
    Other,
}

/// What `fstat` says about an opened name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// The kind of file.
    pub kind: FileKind,
    /// Its size in bytes.
    pub size: usize,
    /// Bytes of memory the filesystem has given it (`st_blocks * 512`): less than `size` for a
    /// sparse file, sized by a peer with `ftruncate` alone.
    pub allocated: u64,
    /// Its owner's uid.
    pub uid: u32,
    /// How many names it has (`st_nlink`). A segment has one; a hard link made at another name
    /// gives its file two, and the same memory to whoever opens either.
    pub links: u64,
    /// Seconds since its status last changed (creation, `fchmod`, sizing), by the wall clock;
    /// 0 if the clock went backwards.
    pub changed_secs_ago: u64,
    /// Which file it is (device and inode).
    pub identity: Identity,
}

/// Which segment a mapping is of, whatever its key or name holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// A System V segment's id, and its creator's pid as this process sees it: ids come round
    /// again (a few million creations later in one IPC namespace, or at once where a privileged
    /// process sets `kernel.shm_next_id`), so a later segment with the same id and creator is
    /// taken for this one.
    SysV { id: libc::c_int, creator_pid: u32 },
    /// A named segment's file: device and inode.
    File { dev: u64, ino: u64 },
}

/// What one kernel wait ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawWait {
    /// Woken by a wake call, or spuriously. On macOS also "the word did not hold the expected
    /// value", which that kernel does not tell apart (see `WAIT_REPORTS_NOT_EQUAL`).
    Woken,
    /// The word did not hold the expected value when the kernel looked.
    NotEqual,
    /// The timeout passed.
    TimedOut,
    /// A signal handler ran, or a partial wait ended early; the caller retries with the time left.
    Interrupted,
}

/// What a liveness check of a lock owner found (see `thread_liveness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The thread exists and is the one named (same start time or thread id).
    Alive,
    /// The thread is gone, a zombie, or its number now names another thread.
    Dead,
    /// The system would not say (another user's process under a restrictive `/proc`): callers
    /// treat it as alive, since taking a live owner's lock would break mutual exclusion.
    Unknown,
}

#[cfg(target_os = "linux")]
mod wait_linux;
#[cfg(target_os = "linux")]
pub use wait_linux::*;

#[cfg(target_os = "macos")]
mod wait_macos;
#[cfg(target_os = "macos")]
pub use wait_macos::*;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod wait_stub;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub use wait_stub::*;

// The macOS and stub code cannot be built for their targets here; Linux test builds
// type-check them (they use only items the libc crate also has on Linux).
#[cfg(all(test, target_os = "linux"))]
#[allow(dead_code)]
#[path = "stub.rs"]
mod stub_check;
#[cfg(all(test, target_os = "linux"))]
#[allow(dead_code)]
#[path = "wait_macos.rs"]
mod wait_macos_check;
#[cfg(all(test, target_os = "linux"))]
#[allow(dead_code)]
#[path = "wait_stub.rs"]
mod wait_stub_check;
