//! POSIX and System V shared memory for Linux and macOS.
//!
//! Every system call of the crate's segment layer lives here. Each function returns
//! [`io::Result`] built from `errno` by [`cvt`], and a [`Mapping`] owns its address range from
//! the moment the map call succeeds, so that a failure later in setup still unmaps it.

use std::ffi::CStr;
#[cfg(target_os = "linux")]
use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr::NonNull;

use super::{FileInfo, FileKind, Identity, Liveness, SysvInfo};

/// Turns the `-1` convention of a system call into `errno`.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// How a [`Mapping`] was made, and so how it must be undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MapKind {
    /// `shmat`, undone by `shmdt`.
    SysV,
    /// `mmap`, undone by `munmap`.
    Mmap,
}

/// An address range of shared memory mapped into this process. Unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    kind: MapKind,
    identity: Identity,
}

// SAFETY: a Mapping is an address range, not a Rust value; it may be unmapped from any thread,
// and every access to the bytes goes through raw pointers or atomics whose users uphold the
// aliasing rules (see `Segment`).
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out the address and the length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Which segment this maps.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The first byte of the range.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length of the range in bytes (the segment's size; never 0).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a zero-length segment is refused before mapping.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Faults every page in now, so that later accesses take no page fault.
    ///
    /// Linux uses `MADV_POPULATE_WRITE` (5.14+), which allocates without writing a byte. Where
    /// that is missing (older kernels, macOS) each page is read once instead, which maps it in
    /// without changing data another process may be writing.
    pub fn populate(&self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: the range is exactly the one this Mapping owns; madvise changes no bytes.
            let ret = unsafe {
                libc::madvise(
                    self.ptr.as_ptr().cast(),
                    self.len,
                    libc::MADV_POPULATE_WRITE,
                )
            };
            if ret == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
        }
        let page = page_size();
        let mut offset = 0;
        while offset < self.len {
            // SAFETY: offset < len, so the byte is inside the mapping; a volatile read of shared
            // memory is a plain load that the compiler may not elide.
            unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(offset)) };
            offset += page;
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Errors are ignored: the range came from a successful map call and is unmapped exactly
        // once, so a failure would be a kernel-level surprise that a destructor cannot report.
        // SAFETY: ptr/len (or the shmat address) are exactly what the map call returned, and no
        // Rust reference into the range outlives the Mapping (`Segment` ties them to `&self`).
        unsafe {
            match self.kind {
                MapKind::SysV => {
                    libc::shmdt(self.ptr.as_ptr().cast());
                }
                MapKind::Mmap => {
                    libc::munmap(self.ptr.as_ptr().cast(), self.len);
                }
            }
        }
    }
}

impl Mapping {
    /// Gives the segment up but keeps its addresses: the range is mapped again, in one call, as
    /// private memory that no file backs and that reserves nothing (a page takes memory once
    /// written), until the [`Placeholder`] is dropped. Native code that kept a pointer into the
    /// segment (a JavaScript engine's thread pool still writing into a buffer closed under it)
    /// then writes there, and neither faults nor writes into a segment mapped at those addresses
    /// later. `None` if the OS refused (out of memory or mappings): the range is then left as the
    /// failed call left it, never unmapped here, since a failed fixed mapping may have unmapped it
    /// already and the addresses may be another mapping's by now.
    pub fn into_placeholder(self) -> Option<Placeholder> {
        #[cfg(target_os = "linux")]
        const NORESERVE: libc::c_int = libc::MAP_NORESERVE;
        #[cfg(not(target_os = "linux"))]
        const NORESERVE: libc::c_int = 0;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | NORESERVE;
        let (ptr, len) = (self.ptr, self.len);
        // Whatever the outcome, the range is not unmapped by this Mapping any more.
        std::mem::forget(self);
        // SAFETY: a fixed mapping over exactly the range this Mapping owned, which it no longer
        // owns (forgotten above) and which no Rust reference reaches (`Segment` ties them to
        // `&self`, consumed by the caller); the kernel replaces the shared mapping (for a System V
        // segment, detaches it) in this one call. `len` is rounded up to whole pages, as the
        // original mapping was.
        let addr = unsafe {
            libc::mmap(
                ptr.as_ptr().cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        (addr == ptr.as_ptr().cast()).then_some(Placeholder { ptr, len })
    }
}

/// Private memory at the addresses of a segment given up ([`Mapping::into_placeholder`]):
/// unmapped on drop.
#[derive(Debug)]
pub struct Placeholder {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: an address range that no Rust code reads or writes; it may be unmapped from any thread.
unsafe impl Send for Placeholder {}
// SAFETY: as above; `&Placeholder` hands out nothing.
unsafe impl Sync for Placeholder {}

impl Drop for Placeholder {
    fn drop(&mut self) {
        // SAFETY: exactly the range the fixed mapping made, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The system's page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

// ---- System V (keyed) segments ------------------------------------------------------------

/// Creates the keyed segment `key` of `size` bytes, failing with `EEXIST` if it exists, and with
/// `ENOSPC` if the system will not provide that much shared memory.
pub fn sysv_create(key: libc::key_t, size: usize, mode: u32) -> io::Result<Mapping> {
    if key == libc::IPC_PRIVATE {
        // A private segment: nobody could open it, and no removal by key could find it.
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as libc::c_int;
    // SAFETY: shmget takes plain integers.
    let id = cvt(unsafe { libc::shmget(key, size, flags) }).map_err(|err| {
        // Linux's shmget fails with ENOMEM when it will not commit memory for a segment this
        // large (its overcommit accounting: more than RAM and swap, say), where mapping never
        // began. Reported as a named segment's create reports a full `/dev/shm`, ENOSPC, so
        // that callers tell it from a process out of address space (ENOMEM from `shmat`),
        // which closing other segments can remedy and this cannot.
        match err.raw_os_error() {
            Some(libc::ENOMEM) => io::Error::from_raw_os_error(libc::ENOSPC),
            _ => err,
        }
    })?;
    // The creator as IPC_STAT reports it to this process: this process.
    match sysv_attach_id(id, size, current_pid()) {
        Ok(mapping) => Ok(mapping),
        Err(err) => {
            // We made it and cannot hand it out: remove it so no half-made segment stays behind.
            // SAFETY: IPC_RMID takes no buffer.
            unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
            // Another process may have removed it before we attached: ENOENT, as for an open.
            Err(vanished(err))
        }
    }
}

/// Looks up the existing keyed segment `key` without attaching it.
pub fn sysv_lookup(key: libc::key_t) -> io::Result<SysvInfo> {
    // SAFETY: shmget takes plain integers; size 0 and no flags look the key up.
    let id = cvt(unsafe { libc::shmget(key, 0, 0) })?;
    // SAFETY: shmid_ds is plain old data; all-zero is a valid value to be overwritten.
    let mut stat: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is a valid, writable shmid_ds.
    cvt(unsafe { libc::shmctl(id, libc::IPC_STAT, &mut stat) }).map_err(vanished)?;
    Ok(SysvInfo {
        id,
        size: stat.shm_segsz as usize,
        uid: stat.shm_perm.uid,
        creator_uid: stat.shm_perm.cuid,
        creator_pid: u32::try_from(stat.shm_cpid).unwrap_or(0),
    })
}

/// The owner's and the creator's uids of the keyed segment `key`, as `/proc/sysvipc/shm` lists
/// them to every user (Linux; `None` elsewhere, or when the key is not listed): for a segment
/// whose mode keeps this user from looking it up.
pub fn sysv_listed_owner(key: libc::key_t) -> Option<(u32, u32)> {
    #[cfg(target_os = "linux")]
    {
        let text = std::fs::read_to_string("/proc/sysvipc/shm").ok()?;
        // key shmid perms size cpid lpid nattch uid gid cuid ...
        let mut lines = text.lines();
        let columns: Vec<&str> = lines.next()?.split_whitespace().collect();
        let at = |name: &str| columns.iter().position(|&c| c == name);
        let (k, u, c) = (at("key")?, at("uid")?, at("cuid")?);
        lines.find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listed: libc::key_t = fields.get(k)?.parse().ok()?;
            (listed == key).then_some(())?;
            Some((fields.get(u)?.parse().ok()?, fields.get(c)?.parse().ok()?))
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = key;
        None
    }
}

/// An id that `shmget` just returned is refused with `EINVAL` or `EIDRM` only when the segment
/// was removed in between (and, for `EINVAL`, its last user detached): report that as the lookup
/// would have, `ENOENT`, so that callers racing with an unlink see one error for it.
fn vanished(err: io::Error) -> io::Error {
    match err.raw_os_error() {
        Some(libc::EINVAL | libc::EIDRM) => io::Error::from_raw_os_error(libc::ENOENT),
        _ => err,
    }
}

/// Attaches the keyed segment that [`sysv_lookup`] found (`ENOENT` if it was removed since).
pub fn sysv_attach(info: &SysvInfo) -> io::Result<Mapping> {
    sysv_attach_id(info.id, info.size, info.creator_pid).map_err(vanished)
}

fn sysv_attach_id(id: libc::c_int, len: usize, creator_pid: u32) -> io::Result<Mapping> {
    // SAFETY: a null address lets the kernel choose; the result is checked below.
    let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if addr as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    let ptr = NonNull::new(addr.cast::<u8>()).ok_or_else(|| io::Error::other("shmat gave null"))?;
    Ok(Mapping {
        ptr,
        len,
        kind: MapKind::SysV,
        identity: Identity::SysV { id, creator_pid },
    })
}

/// Marks the keyed segment for removal: it disappears when the last process detaches, and its
/// key is free at once.
pub fn sysv_remove(key: libc::key_t) -> io::Result<()> {
    // SAFETY: shmget takes plain integers.
    let id = cvt(unsafe { libc::shmget(key, 0, 0) })?;
    // SAFETY: IPC_RMID takes no buffer.
    cvt(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map_err(vanished)?;
    Ok(())
}

// ---- POSIX (named) segments ---------------------------------------------------------------

/// Creates the named segment exclusively, with exactly `mode` (the umask does not narrow it), and
/// reserves all of its memory up front so that a full `/dev/shm` fails here with `ENOSPC` instead
/// of a `SIGBUS` on first write.
///
/// On Linux the file is made unnamed and sized first, then linked at the name
/// (`create_unnamed`): nobody ever finds the name holding a file still being sized, and a
/// create that fails leaves nothing to remove. Elsewhere (or where `/dev/shm` cannot make unnamed
/// files) the name is made first, and a failure removes it.
pub fn posix_create(name: &CStr, size: usize, mode: u32) -> io::Result<Mapping> {
    super::check_name(name)?;
    #[cfg(target_os = "linux")]
    match create_unnamed(name, size, mode) {
        Err(Unnamed::Unsupported) => {}
        Err(Unnamed::Failed(err)) => return Err(err),
        Ok(mapping) => return Ok(mapping),
    }
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
    // SAFETY: `name` is a valid C string; the mode is passed as the variadic third argument.
    let raw = cvt(unsafe { libc::shm_open(name.as_ptr(), flags, mode as libc::c_uint) })?;
    // SAFETY: shm_open just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let made = size_new(&fd, size, mode).and_then(|()| map_fd(&fd, size, fd_identity(&fd)?));
    if made.is_err() {
        // We created the name: remove it so a failed create leaves nothing behind.
        // SAFETY: `name` is a valid C string.
        unsafe { libc::shm_unlink(name.as_ptr()) };
    }
    made
}

/// Where glibc and musl keep the files of `shm_open` names.
#[cfg(target_os = "linux")]
const SHM_DIR: &str = "/dev/shm";

/// Why [`create_unnamed`] made no segment.
#[cfg(target_os = "linux")]
enum Unnamed {
    /// This system cannot make unnamed files in [`SHM_DIR`] or link them (no `O_TMPFILE`, no
    /// `/proc`): create the usual way.
    Unsupported,
    /// The create failed (the name exists, no room, ...): report it.
    Failed(io::Error),
}

/// Makes the segment as an unnamed file in [`SHM_DIR`] (`O_TMPFILE`), sizes, reserves and maps it,
/// and only then links it at the name, which fails with `EEXIST` if the name is taken (as
/// `O_EXCL` does). Until the link the file belongs to no name, and the kernel frees it when the
/// descriptor closes, whether this returns an error or the process dies.
///
/// A mapping of the unnamed file shows in `/proc/<pid>/maps` (and `lsof`, `pmap`) as
/// `/dev/shm/#<inode> (deleted)` even once it is linked, so the file is then mapped again through
/// its name ([`remap_named`]), and the first mapping dropped.
#[cfg(target_os = "linux")]
fn create_unnamed(name: &CStr, size: usize, mode: u32) -> Result<Mapping, Unnamed> {
    use std::os::fd::AsRawFd;
    let target = shm_path(name).map_err(Unnamed::Failed)?;
    // A name already taken is EEXIST before any memory is reserved: open-or-create and replace
    // try a create first, and the reservation of a large segment takes seconds (or fails with
    // ENOSPC where the segment already there fits). `linkat` below settles a name taken since.
    let taken = || {
        // SAFETY: `stat` is plain old data; all-zero is valid and lstat overwrites it.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and a valid, writable stat buffer.
        unsafe { libc::lstat(target.as_ptr(), &mut stat) == 0 }
    };
    if taken() {
        return Err(Unnamed::Failed(io::Error::from_raw_os_error(libc::EEXIST)));
    }
    let dir = CString::new(SHM_DIR).map_err(|_| Unnamed::Unsupported)?;
    let flags = libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC;
    // SAFETY: `dir` is a valid C string; the mode is passed as the variadic third argument.
    let raw = unsafe { libc::open(dir.as_ptr(), flags, (mode & 0o777) as libc::c_uint) };
    if raw < 0 {
        // EISDIR, EINVAL or EOPNOTSUPP: a kernel or filesystem without O_TMPFILE; ENOENT: no
        // /dev/shm. Anything else (EACCES, EMFILE, ENOSPC, ...) is this create's failure.
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EISDIR | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOENT) => {
                Unnamed::Unsupported
            }
            _ => Unnamed::Failed(err),
        });
    }
    // SAFETY: open just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mapping = size_new(&fd, size, mode)
        .and_then(|()| map_fd(&fd, size, fd_identity(&fd)?))
        .map_err(|err| {
            // Another process may have made the segment meanwhile, taking the room this one
            // lacked: report the name taken, so that open-or-create opens it.
            Unnamed::Failed(if taken() {
                io::Error::from_raw_os_error(libc::EEXIST)
            } else {
                err
            })
        })?;
    // linkat(fd, "", AT_EMPTY_PATH) needs a capability; the descriptor's /proc link does not.
    let source = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| Unnamed::Failed(einval()))?;
    // SAFETY: two valid C strings; plain integers.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            source.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked != 0 {
        let err = io::Error::last_os_error();
        // ENOENT: no /proc (the name's directory exists: the unnamed file was made in it).
        return Err(if err.raw_os_error() == Some(libc::ENOENT) {
            Unnamed::Unsupported
        } else {
            Unnamed::Failed(err)
        });
    }
    Ok(remap_named(name, &mapping).unwrap_or(mapping))
}

/// A mapping of the file `unnamed` maps, through `name` it was just linked at, if the name still
/// holds that file (another process may have removed or replaced it since).
#[cfg(target_os = "linux")]
fn remap_named(name: &CStr, unnamed: &Mapping) -> Option<Mapping> {
    let named = posix_open_name(name).ok()?;
    if fd_identity(&named.fd).ok()? != unnamed.identity {
        return None;
    }
    map_fd(&named.fd, unnamed.len, unnamed.identity).ok()
}

/// The path of `name`'s file in [`SHM_DIR`]. Every public call that gets here checked the name
/// first ([`super::check_name`]): a leading `/`, no other, not `.` or `..`.
#[cfg(target_os = "linux")]
fn shm_path(name: &CStr) -> io::Result<CString> {
    CString::new([SHM_DIR.as_bytes(), name.to_bytes()].concat()).map_err(|_| einval())
}

#[cfg(target_os = "linux")]
fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

fn size_new(fd: &OwnedFd, size: usize, mode: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    // SAFETY: fchmod takes a descriptor we own and a mode.
    cvt(unsafe { libc::fchmod(raw, (mode & 0o777) as libc::mode_t) })?;
    let len = libc::off_t::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain integers; posix_fallocate returns the error number instead of setting
        // errno.
        let err = unsafe { libc::posix_fallocate(raw, 0, len) };
        match err {
            0 => return Ok(()),
            libc::EOPNOTSUPP | libc::EINVAL => {} // a filesystem without fallocate: size it below
            err => return Err(io::Error::from_raw_os_error(err)),
        }
    }
    // SAFETY: plain integers.
    cvt(unsafe { libc::ftruncate(raw, len) })?;
    Ok(())
}

fn file_kind(mode: libc::mode_t) -> FileKind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => FileKind::Regular,
        libc::S_IFDIR => FileKind::Directory,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFSOCK => FileKind::Socket,
        libc::S_IFCHR | libc::S_IFBLK => FileKind::Device,
        _ => FileKind::Other,
    }
}

/// The parts of a `stat` that decide whether a file may be a segment.
fn file_info(stat: &libc::stat) -> io::Result<FileInfo> {
    let size =
        usize::try_from(stat.st_size).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let changed = u64::try_from(stat.st_ctime).unwrap_or(0);
    #[allow(clippy::useless_conversion)] // `nlink_t` is u64 here, u32 or u16 on other targets
    let links = u64::from(stat.st_nlink);
    Ok(FileInfo {
        kind: file_kind(stat.st_mode),
        size,
        allocated: u64::try_from(stat.st_blocks)
            .unwrap_or(0)
            .saturating_mul(512),
        uid: stat.st_uid,
        links,
        changed_secs_ago: now.saturating_sub(changed),
        identity: stat_identity(stat),
    })
}

/// An opened name: the descriptor, nothing mapped yet.
#[derive(Debug)]
pub struct OpenedName {
    fd: OwnedFd,
}

impl OpenedName {
    /// `fstat` of the descriptor, read again on every call.
    pub fn info(&self) -> io::Result<FileInfo> {
        use std::os::fd::AsRawFd;
        // SAFETY: `stat` is plain old data; all-zero is valid and fstat overwrites it.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a descriptor we own and a valid, writable stat buffer.
        cvt(unsafe { libc::fstat(self.fd.as_raw_fd(), &mut stat) })?;
        file_info(&stat)
    }

    /// Maps the first `len` bytes; `info` is what [`OpenedName::info`] said. `EINVAL` for more
    /// bytes than it says the file has: a mapping past the end of the file faults (`SIGBUS`).
    pub fn map(&self, len: usize, info: &FileInfo) -> io::Result<Mapping> {
        if len > info.size {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        map_fd(&self.fd, len, info.identity)
    }

    /// Gives the first `len` bytes memory now, as [`posix_create`] does for the segments this
    /// library makes: `ENOSPC` here rather than `SIGBUS` on a later write to a page the full
    /// filesystem cannot provide. A no-op where the filesystem has no `fallocate`, and off Linux.
    pub fn reserve(&self, len: usize) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let len = libc::off_t::try_from(len)
                .map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
            // SAFETY: plain integers on a descriptor we own; posix_fallocate returns the error
            // number instead of setting errno. It never shrinks the file nor changes its bytes.
            let err = unsafe { libc::posix_fallocate(self.fd.as_raw_fd(), 0, len) };
            if err != 0 && err != libc::EOPNOTSUPP && err != libc::EINVAL {
                return Err(io::Error::from_raw_os_error(err));
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = len;
        Ok(())
    }
}

/// What is at the name, as a replacing create needs to know it (its kind and owner), without
/// opening it: on Linux an `lstat` of its file, which works whatever the file's mode (a leftover
/// of this user's with mode `0o400` may be replaced, as its owner may remove it); elsewhere an
/// open and `fstat`. A symbolic link is `ELOOP`, as an open reports it.
pub fn posix_name_info(name: &CStr) -> io::Result<FileInfo> {
    super::check_name(name)?;
    #[cfg(target_os = "linux")]
    return lstat_info(&shm_path(name)?);
    #[cfg(not(target_os = "linux"))]
    posix_open_name(name)?.info()
}

/// Opens the existing name without following a symbolic link (`ELOOP`) and, on Linux, without
/// blocking on a FIFO. Nothing is mapped: check [`OpenedName::info`] first.
pub fn posix_open_name(name: &CStr) -> io::Result<OpenedName> {
    super::check_name(name)?;
    #[cfg(target_os = "linux")]
    let flags = libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    #[cfg(not(target_os = "linux"))]
    let flags = libc::O_RDWR | libc::O_CLOEXEC;
    // SAFETY: `name` is a valid C string.
    let raw = cvt(unsafe { libc::shm_open(name.as_ptr(), flags, 0) }).map_err(|err| {
        // glibc turns the kernel's EISDIR into EINVAL; names are checked before they get here,
        // so EINVAL can only mean a directory.
        if cfg!(target_os = "linux") && err.raw_os_error() == Some(libc::EINVAL) {
            io::Error::from_raw_os_error(libc::EISDIR)
        } else {
            err
        }
    })?;
    // SAFETY: shm_open just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    Ok(OpenedName { fd })
}

/// The identity of the file open at `fd`.
fn fd_identity(fd: &OwnedFd) -> io::Result<Identity> {
    use std::os::fd::AsRawFd;
    // SAFETY: `stat` is plain old data; all-zero is valid and fstat overwrites it.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we own and a valid, writable stat buffer.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) })?;
    Ok(stat_identity(&stat))
}

// dev_t and ino_t are u64 here, other widths and signs elsewhere (dev_t is i32 on macOS).
#[allow(clippy::unnecessary_cast)]
fn stat_identity(stat: &libc::stat) -> Identity {
    Identity::File {
        dev: stat.st_dev as u64,
        ino: stat.st_ino as u64,
    }
}

fn map_fd(fd: &OwnedFd, len: usize, identity: Identity) -> io::Result<Mapping> {
    use std::os::fd::AsRawFd;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a null hint lets the kernel choose; the result is checked below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr = NonNull::new(addr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
    Ok(Mapping {
        ptr,
        len,
        kind: MapKind::Mmap,
        identity,
    })
}

/// This process's effective uid.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The login name of `uid` from the user database, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: passwd is plain old data; all-zero is valid and getpwuid_r overwrites it.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the length given; the strings getpwuid_r writes
        // point into `buf`, which outlives their use below.
        let err =
            unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
        if err == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if err != 0 || found.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: getpwuid_r succeeded, so pw_name is a NUL-terminated string inside `buf`.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

/// Removes the name; processes that have it mapped keep their memory until they unmap it.
pub fn posix_unlink(name: &CStr) -> io::Result<()> {
    super::check_name(name)?;
    // SAFETY: `name` is a valid C string.
    cvt(unsafe { libc::shm_unlink(name.as_ptr()) })?;
    Ok(())
}

/// Removes `key` if it still names the segment `shmid` made by `creator_pid` (as
/// [`SysvInfo::creator_pid`] says); `ENOENT` if it names another, or none.
pub fn sysv_remove_own(key: libc::key_t, shmid: libc::c_int, creator_pid: u32) -> io::Result<()> {
    let gone = || io::Error::from_raw_os_error(libc::ENOENT);
    // SAFETY: shmget takes plain integers.
    let current = cvt(unsafe { libc::shmget(key, 0, 0) })?;
    if current != shmid {
        return Err(gone());
    }
    // SAFETY: shmid_ds is plain old data; all-zero is a valid value to be overwritten.
    let mut stat: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is a valid, writable shmid_ds.
    cvt(unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut stat) }).map_err(vanished)?;
    if u32::try_from(stat.shm_cpid).unwrap_or(0) != creator_pid {
        return Err(gone()); // the id came round again, for another creator's segment
    }
    // IPC_RMID of the id itself: what the key names cannot change in between.
    // SAFETY: IPC_RMID takes no buffer.
    cvt(unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) }).map_err(vanished)?;
    Ok(())
}

/// Removes `name` if it still holds the file `identity`; `ENOENT` if it holds another, or none.
pub fn posix_unlink_own(name: &CStr, identity: Identity) -> io::Result<()> {
    let gone = || io::Error::from_raw_os_error(libc::ENOENT);
    posix_unlink_checked(name, |info| {
        if info.identity == identity {
            Ok(())
        } else {
            Err(gone())
        }
    })
    // A symbolic link at the name (`ELOOP`) is another file too.
    .map_err(|err| {
        if err.raw_os_error() == Some(libc::ELOOP) {
            gone()
        } else {
            err
        }
    })
}

/// Removes `name` if `check` accepts the file it holds when it is removed; `check`'s error
/// otherwise, with the name left holding what it held.
///
/// A look and a removal are two steps, and a process of this user (or root) may swap another
/// file in at the name between them. On Linux the removal therefore takes the file off the name
/// first: `renameat2(RENAME_NOREPLACE)` moves exactly the file the name holds at that instant to
/// a private name in the same directory (`removing_path`), where it is looked at again and
/// removed, or moved back if `check` refuses it. (Should the name be taken again in that instant,
/// or the process be killed before the private name is removed, the file stays there: moved,
/// never removed.) A first look before the move leaves the name alone in the usual case of a
/// refusal. Elsewhere, or where the filesystem (or a system-call filter) does not allow such a
/// rename, the look and the removal stay two steps.
pub fn posix_unlink_checked<E: From<io::Error>>(
    name: &CStr,
    check: impl Fn(FileInfo) -> Result<(), E>,
) -> Result<(), E> {
    check(posix_name_info(name)?)?;
    #[cfg(target_os = "linux")]
    {
        let path = shm_path(name)?;
        let mut tries = 0;
        let private = loop {
            let private = removing_path()?;
            match rename_noreplace(&path, &private) {
                Ok(()) => break private,
                // The private name is taken (by a process of another pid namespace sharing this
                // directory, or one killed while it removed): another one.
                Err(err) if err.raw_os_error() == Some(libc::EEXIST) && tries < 8 => tries += 1,
                // No such rename here: the old way. (`EPERM` too, from a system-call filter; the
                // sticky directory's `EPERM` for another user's file comes back from the removal
                // just the same.)
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::EINVAL | libc::ENOSYS | libc::EPERM)
                    ) =>
                {
                    return Ok(posix_unlink(name)?);
                }
                Err(err) => return Err(err.into()),
            }
        };
        match lstat_info(&private).map_err(E::from).and_then(&check) {
            Ok(()) => {
                // SAFETY: a valid C string.
                cvt(unsafe { libc::unlink(private.as_ptr()) })?;
                Ok(())
            }
            Err(refused) => {
                // Back where it was, unless the name was taken again meanwhile (see above).
                let _ = rename_noreplace(&private, &path);
                Err(refused)
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    Ok(posix_unlink(name)?)
}

/// Moves `from` to `to`, failing with `EEXIST` if `to` exists (`renameat2`, Linux 3.15; tmpfs
/// supports the flag since 3.17). `EINVAL` where the filesystem does not.
#[cfg(target_os = "linux")]
fn rename_noreplace(from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: two valid C strings, plain integers; the system call reads the strings only.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A private name in [`SHM_DIR`] for a file being removed:
/// `.shared-buffer-removing-<pid>-<ns>-<n>`, by this process's id, the wall clock's nanoseconds
/// (processes of other pid namespaces may share the directory) and a counter.
#[cfg(target_os = "linux")]
fn removing_path() -> io::Result<CString> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    CString::new(format!(
        "{SHM_DIR}/.shared-buffer-removing-{}-{ns}-{n}",
        current_pid()
    ))
    .map_err(|_| einval())
}

/// What `lstat` says of `path`: `ELOOP` for a symbolic link, as [`posix_name_info`] reports it.
#[cfg(target_os = "linux")]
fn lstat_info(path: &CStr) -> io::Result<FileInfo> {
    // SAFETY: `stat` is plain old data; all-zero is valid and lstat overwrites it.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a valid, writable stat buffer.
    cvt(unsafe { libc::lstat(path.as_ptr(), &mut stat) })?;
    if stat.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    file_info(&stat)
}

/// The longest name after the leading `/`.
#[cfg(target_os = "macos")]
pub const NAME_MAX: usize = 30; // PSHMNAMLEN - 1 on Darwin
/// The longest name after the leading `/`.
#[cfg(not(target_os = "macos"))]
pub const NAME_MAX: usize = 255;

// ---- processes ------------------------------------------------------------------------------

/// This process's id.
pub fn current_pid() -> u32 {
    std::process::id()
}

/// `Ok(true)` if process `pid` exists and is not a zombie, `Ok(false)` if it is dead;
/// `Err(EINVAL)` for 0 and values above `i32::MAX`, which are not pids (`kill` would take them
/// for process groups), and `Err(errno)` if `kill` fails otherwise. A process of another user
/// (`EPERM`) counts as alive; a killed child that its parent has not reaped yet (Linux: state
/// `Z` or `X` in `/proc/<pid>/stat`) counts as dead, since it will never run again.
pub fn probe_process(pid: u32) -> Result<bool, i32> {
    let raw = libc::pid_t::try_from(pid).map_err(|_| libc::EINVAL)?;
    if raw <= 0 {
        return Err(libc::EINVAL);
    }
    if pid == current_pid() {
        return Ok(true);
    }
    // SAFETY: signal 0 performs only the existence and permission checks; nothing is sent.
    if unsafe { libc::kill(raw, 0) } != 0 {
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::ESRCH) => return Ok(false),
            Some(libc::EPERM) => {}
            Some(code) => return Err(code),
            None => return Err(libc::EIO),
        }
    }
    Ok(!zombie(pid))
}

/// True unless process `pid` is known to be dead (see [`probe_process`]).
pub fn process_alive(pid: u32) -> bool {
    probe_process(pid).unwrap_or(false)
}

/// True if `/proc/<pid>/stat` shows state `Z` (zombie) or `X` (dead).
#[cfg(target_os = "linux")]
fn zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": comm may hold spaces and parentheses, so take the last ')'.
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    matches!(stat.get(close + 2), Some(b'Z' | b'X'))
}

/// Elsewhere a zombie cannot be told apart from a live process here.
#[cfg(not(target_os = "linux"))]
fn zombie(_pid: u32) -> bool {
    false
}

// ---- threads: the identity of a lock's owner ------------------------------------------------

/// The largest owner token [`thread_identity`] can return (tokens start at 1). Linux: a thread id
/// (the kernel's `PID_MAX_LIMIT`, 2^22); macOS: a process id (at most 99,999 there).
#[cfg(target_os = "linux")]
pub const OWNER_TOKEN_MAX: u32 = 1 << 22;
/// The largest owner token [`thread_identity`] can return (tokens start at 1).
#[cfg(not(target_os = "linux"))]
pub const OWNER_TOKEN_MAX: u32 = (1 << 30) - 1;

/// The calling thread as a lock owner: `(token, stamp)`, where the pair names this thread among
/// all threads of the machine (in one pid namespace) for as long as the machine runs.
///
/// Linux: `token` is the thread id (`gettid`), `stamp` the low 32 bits of the thread's start
/// time in clock ticks since boot (`/proc/<tid>/task/<tid>/stat`, field 22). A thread id is only
/// reused after the thread is gone, and a new thread with the same id and the same start tick
/// would have to appear within one tick (10 ms) or a multiple of 2^32 ticks (497 days) later.
///
/// Where `/proc` cannot be read (not mounted in a chroot), the stamp is 0, which
/// [`thread_liveness`] takes as "start time unknown": the thread is then told dead only once its
/// id is gone, and a reused id is not told apart.
///
/// # Errors
/// `EINVAL` if the kernel's thread id does not fit (it always does).
#[cfg(target_os = "linux")]
pub fn thread_identity() -> io::Result<(u32, u32)> {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    let tid = u32::try_from(tid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    match task_stat(tid) {
        Ok(Some((_, start))) => Ok((tid, start as u32)),
        Ok(None) | Err(_) => Ok((tid, 0)),
    }
}

/// The state letter and the start time (field 22, clock ticks since boot) of thread `tid`, from
/// `/proc/<tid>/task/<tid>/stat`; `None` when no such file exists.
#[cfg(target_os = "linux")]
fn task_stat(tid: u32) -> io::Result<Option<(u8, u64)>> {
    use std::io::Read;
    let path = format!("/proc/{tid}/task/{tid}/stat");
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(err) => return Err(err),
        }
    }
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat format");
    let stat = &buf[..len];
    // "tid (comm) S ppid ...": comm may hold spaces and parentheses, so take the last ')'.
    let close = stat.iter().rposition(|&b| b == b')').ok_or_else(bad)?;
    let rest = std::str::from_utf8(&stat[close + 1..]).map_err(|_| bad())?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields
        .next()
        .and_then(|s| s.bytes().next())
        .ok_or_else(bad)?;
    // The state is field 3; the start time is field 22, 19 further on.
    let start = fields
        .nth(18)
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(bad)?;
    Ok(Some((state, start)))
}

/// Whether the thread that [`thread_identity`] described as `(token, stamp)` still runs.
///
/// Linux: `kill(tid, 0)` failing with `ESRCH` means no task has that id any more; otherwise
/// `/proc/<tid>/task/<tid>/stat` must exist, not be a zombie (`Z`, `X`), and carry the same start
/// time (any, for stamp 0: see [`thread_identity`]). Costs one `kill` and, for a live thread, one small `/proc` read (a few microseconds).
#[cfg(target_os = "linux")]
pub fn thread_liveness(token: u32, stamp: u32) -> Liveness {
    let Ok(tid) = libc::pid_t::try_from(token) else {
        return Liveness::Dead;
    };
    if tid <= 0 || token > OWNER_TOKEN_MAX {
        return Liveness::Dead;
    }
    // SAFETY: signal 0 performs only the existence and permission checks; nothing is sent. A
    // positive number names one task (a thread id works as well as a process id).
    if unsafe { libc::kill(tid, 0) } != 0
        && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    {
        return Liveness::Dead;
    }
    match task_stat(token) {
        Ok(Some((b'Z' | b'X', _))) => Liveness::Dead,
        Ok(Some((_, start))) if stamp == 0 || start as u32 == stamp => Liveness::Alive,
        Ok(Some(_)) => Liveness::Dead,
        // kill found a task but /proc does not show it: hidden (hidepid), or it just ended.
        // The next check tells.
        Ok(None) | Err(_) => Liveness::Unknown,
    }
}

/// `PROC_PIDLISTTHREADIDS` of xnu's `sys/proc_info.h` (a private flavor, stable since macOS
/// 10.13): the 64-bit ids of a process's threads, as `pthread_threadid_np` gives them.
#[cfg(target_os = "macos")]
const PROC_PIDLISTTHREADIDS: libc::c_int = 28;

/// The calling thread as a lock owner: `(token, stamp)`.
///
/// macOS: `token` is the process id, `stamp` the low 32 bits of the thread's 64-bit id
/// (`pthread_threadid_np`), which the kernel never hands out twice until reboot; so the pair
/// survives the reuse of the process id.
///
/// # Errors
/// Errors of `pthread_threadid_np`.
#[cfg(target_os = "macos")]
pub fn thread_identity() -> io::Result<(u32, u32)> {
    let mut id: u64 = 0;
    // SAFETY: a null thread means the calling thread; `id` is a valid place for the result.
    let rc = unsafe { libc::pthread_threadid_np(0, &mut id) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok((current_pid(), id as u32))
}

/// Whether the thread that [`thread_identity`] described as `(token, stamp)` still runs.
///
/// macOS: `kill(pid, 0)` failing with `ESRCH` means the process is gone; otherwise
/// `proc_pidinfo(PROC_PIDLISTTHREADIDS)` lists the ids of its threads, and one of them must end
/// in `stamp`. A zombie has no threads. Another user's process cannot be inspected (`Unknown`).
#[cfg(target_os = "macos")]
pub fn thread_liveness(token: u32, stamp: u32) -> Liveness {
    let Ok(pid) = libc::pid_t::try_from(token) else {
        return Liveness::Dead;
    };
    if pid <= 0 || token > OWNER_TOKEN_MAX {
        return Liveness::Dead;
    }
    // SAFETY: signal 0 performs only the existence and permission checks; nothing is sent.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return match io::Error::last_os_error().raw_os_error() {
            Some(libc::ESRCH) => Liveness::Dead,
            _ => Liveness::Unknown,
        };
    }
    let mut ids = vec![0u64; 4096];
    let size = libc::c_int::try_from(ids.len() * 8).unwrap_or(libc::c_int::MAX);
    // SAFETY: the buffer is valid for `size` bytes; the kernel writes at most that many.
    let got =
        unsafe { libc::proc_pidinfo(pid, PROC_PIDLISTTHREADIDS, 0, ids.as_mut_ptr().cast(), size) };
    let Ok(bytes) = usize::try_from(got) else {
        return Liveness::Unknown;
    };
    let count = (bytes / 8).min(ids.len());
    if ids[..count].iter().any(|&id| id as u32 == stamp) {
        return Liveness::Alive;
    }
    if count == ids.len() {
        return Liveness::Unknown; // more threads than the buffer holds
    }
    if count == 0 {
        // A zombie has no threads; anything else that lists none cannot be told.
        return if zombie_macos(pid) {
            Liveness::Dead
        } else {
            Liveness::Unknown
        };
    }
    Liveness::Dead
}

/// True if `proc_pidinfo(PROC_PIDTBSDINFO)` shows process `pid` as a zombie (`SZOMB`).
#[cfg(target_os = "macos")]
fn zombie_macos(pid: libc::pid_t) -> bool {
    /// `SZOMB` of `sys/proc.h`.
    const SZOMB: u32 = 5;
    // SAFETY: proc_bsdinfo is plain old data; all-zero is valid and the kernel overwrites it.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: `info` is valid for `size` bytes.
    let got = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    got == size && info.pbi_status == SZOMB
}

/// Elsewhere no lock owner can be named.
///
/// # Errors
/// Always `Unsupported`.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn thread_identity() -> io::Result<(u32, u32)> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no thread identity on this platform",
    ))
}

/// Elsewhere nothing can be told.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn thread_liveness(_token: u32, _stamp: u32) -> Liveness {
    Liveness::Unknown
}

/// Runs `child` in the child process after every `fork` (`pthread_atfork`), with `prepare`
/// before it and `parent` after it in the parent.
///
/// # Errors
/// The error number of `pthread_atfork` (`ENOMEM`).
///
/// # Safety
/// Each handler must be sound to call at every `fork` of the process, from the thread that
/// forks, in the child only what is async-signal-safe.
pub unsafe fn at_fork(
    prepare: unsafe extern "C" fn(),
    parent: unsafe extern "C" fn(),
    child: unsafe extern "C" fn(),
) -> io::Result<()> {
    // SAFETY: plain functions that live as long as the program, sound to call at a fork as the
    // caller promises.
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}
