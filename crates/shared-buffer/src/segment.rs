//! [`Segment`]: one mapped shared-memory segment and the rules for making and finding it.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::time::{Duration, Instant};

use crate::os;

/// How long an open waits for a creator that has made a name but not yet sized it. A creator
/// sizes its file right after making it, but a busy machine may not run it for a while: waiting
/// as long as a file counts as recent ([`RECENT_SECS`]) keeps a slow creator from being mistaken
/// for a dead one, and an older empty file is refused at once.
const SIZE_RACE_WAIT: Duration = Duration::from_secs(RECENT_SECS);

/// An empty file whose status changed longer ago than this (seconds) is nobody's segment in the
/// making.
const RECENT_SECS: u64 = 2;

/// How many rounds `create` (with `replace`) and `open_or_create` try when other processes keep
/// creating and removing the same segment. A round is lost only when another process won it; the
/// loser yields its time slice before the next, so that on a busy machine the winner gets to run
/// (finish sizing, or unlink) instead of the loser spinning through its rounds. Losing them all
/// is `EAGAIN`: a churn this hostile is not a race that more tries would settle.
const RACE_ROUNDS: usize = 64;

/// After a lost round: let the process that won it run.
fn lost_race() {
    std::thread::yield_now();
}

/// Which segment: a System V key or a POSIX name. Made with [`SegmentId::key`] or
/// [`SegmentId::name`]; an id built from the variants is checked as they check it by every call
/// that takes one, and refused with [`SegmentError::Invalid`] where they would refuse it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SegmentId {
    /// A System V key (`shmget`), as the seed package used. Never 0 (`IPC_PRIVATE`).
    Key(u32),
    /// A POSIX name (`shm_open`), stored with its leading `/`: one `/`, then 1 to
    /// [`os::NAME_MAX`] bytes without a `/`, other than `.` and `..`.
    Name(CString),
}

impl SegmentId {
    /// A keyed segment.
    ///
    /// # Errors
    /// [`SegmentError::Invalid`] for key 0, which is `IPC_PRIVATE` and can never be shared.
    pub fn key(key: u32) -> Result<Self> {
        if key == 0 {
            return Err(invalid("key 0 is IPC_PRIVATE and cannot be shared"));
        }
        Ok(Self::Key(key))
    }

    /// A named segment. The leading `/` is optional (`"jobs"` and `"/jobs"` are the same).
    ///
    /// # Errors
    /// [`SegmentError::Invalid`] for an empty name, `.`, `..`, an inner `/` or a NUL;
    /// `ENAMETOOLONG` (as [`SegmentError::Os`]) for a name longer than [`os::NAME_MAX`] bytes
    /// after the `/`.
    pub fn name(name: &str) -> Result<Self> {
        let bare = name.strip_prefix('/').unwrap_or(name);
        check_bare_name(bare.as_bytes())?;
        let full = CString::new(format!("/{bare}")).map_err(|_| invalid("name has a NUL byte"))?;
        Ok(Self::Name(full))
    }

    /// Refuses what the constructors refuse: key 0, a name that is not `/` and a bare name (a
    /// variant built by hand could otherwise make a private keyed segment that no unlink can
    /// remove, or reach a path outside the shared-memory folder).
    fn check(&self) -> Result<()> {
        match self {
            Self::Key(0) => Err(invalid("key 0 is IPC_PRIVATE and cannot be shared")),
            Self::Key(_) => Ok(()),
            Self::Name(name) => match name.as_bytes().strip_prefix(b"/") {
                Some(bare) => check_bare_name(bare),
                None => Err(invalid("name does not start with '/'")),
            },
        }
    }
}

/// A name after its `/`, as [`os::bare_name_fault`] judges it.
fn check_bare_name(bare: &[u8]) -> Result<()> {
    match os::bare_name_fault(bare) {
        None => Ok(()),
        Some((_, libc::ENAMETOOLONG)) => Err(SegmentError::Os(io::Error::from_raw_os_error(
            libc::ENAMETOOLONG,
        ))),
        Some((why, _)) => Err(invalid(why)),
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(key) => write!(f, "key {key:#x}"),
            Self::Name(name) => write!(f, "name {}", name.to_string_lossy()),
        }
    }
}

/// How to make or open a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Permission bits of a segment this call creates. Default `0o600` (owner only).
    pub mode: u32,
    /// Fault every page in at once, so that no access takes a page fault later. Default false.
    pub populate: bool,
    /// Whose existing segment an open accepts. Default [`Owner::Trusted`]: this user's or root's.
    pub owner: Owner,
    /// [`Segment::create`] only: if a segment exists under the key or name (one left behind by a
    /// crashed run), remove it first and create a new one. Processes still mapping the old
    /// segment keep it, cut off from the name. Only a segment of an owner that
    /// [`Options::owner`] accepts is removed. Default false: `EEXIST`.
    pub replace: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: 0o600,
            populate: false,
            owner: Owner::Trusted,
            replace: false,
        }
    }
}

/// The segment exists with another size than the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeMismatch {
    /// The size the caller asked for.
    pub requested: usize,
    /// The segment's size.
    pub actual: usize,
}

impl fmt::Display for SizeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment is {} bytes, {} were asked for",
            self.actual, self.requested
        )
    }
}

impl std::error::Error for SizeMismatch {}

fn invalid(msg: &'static str) -> SegmentError {
    SegmentError::Invalid(msg)
}

/// Whose segments [`Segment::open`] and [`Segment::open_or_create`] accept.
///
/// A segment's owner can read, write, truncate and remove it whatever its mode, so opening a
/// segment made by another user means trusting that user with your data: a squatter could make a
/// well-known name or key first, with mode `0o666`, and hand you memory they control. The default
/// accepts only segments of this process's effective user and of root (who can reach every
/// process's memory anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Owner {
    /// This process's effective user, or root. The default.
    #[default]
    Trusted,
    /// As [`Owner::Trusted`], and also this uid.
    Uid(u32),
    /// Any user: the seed package's behaviour.
    Any,
}

impl Owner {
    /// True if a segment owned by `uid` is acceptable.
    pub fn accepts(self, uid: u32) -> bool {
        match self {
            Self::Any => true,
            Self::Uid(allowed) if allowed == uid => true,
            Self::Trusted | Self::Uid(_) => uid == 0 || uid == os::effective_uid(),
        }
    }
}

/// The kind of a file found at a segment's name that is not a segment.
pub use os::FileKind;

/// Why a segment could not be made, opened or removed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SegmentError {
    /// No segment has this key or name.
    NotFound,
    /// A segment with this key or name exists already.
    AlreadyExists,
    /// The OS refused access: the owner did not grant it in the segment's mode.
    PermissionDenied,
    /// The segment belongs to a user that [`Options::owner`] does not accept.
    ForeignOwner {
        /// The owner's uid (for a keyed segment, the creator's if that is the one refused).
        uid: u32,
        /// True when the segment's mode keeps this user out as well: accepting its owner
        /// ([`Options::owner`]) would not open it.
        shut_out: bool,
    },
    /// The segment's size is not what the caller needs.
    SizeMismatch(SizeMismatch),
    /// The name is a symbolic link, which is never followed (it could point anywhere).
    Symlink,
    /// Something other than a segment is at the name: a directory, a FIFO, a socket, a device.
    NotASegment(FileKind),
    /// The name is one of several names of one file (hard links). A segment has one name: the
    /// file may be another segment of this user's, linked at this name by someone who could not
    /// open it by its own, and opening it would hand them this process's writes.
    HardLinked {
        /// How many names the file has.
        links: u64,
    },
    /// The name holds an empty file that nobody is sizing: a creator that died between making
    /// the name and sizing it, or a file someone else put there.
    Empty,
    /// The keyed segment is larger than the size asked for, and this process has no memory or
    /// address space left to map it: a keyed segment is mapped whole (`shmat`), whatever part
    /// of it the caller asked for.
    TooLargeToMap {
        /// The segment's size.
        size: usize,
        /// The size the caller asked for.
        requested: usize,
    },
    /// The keyed segment, opened whole (no size asked for, or its own), could not be mapped:
    /// this process has no memory, address space or mappings left for its `size` bytes (a
    /// peer's segment can be larger than any address space, made without reserving its memory).
    NoRoomToMap {
        /// The segment's size.
        size: usize,
    },
    /// An argument is out of range (the message says which).
    Invalid(&'static str),
    /// Any other error of the OS.
    Os(io::Error),
}

impl SegmentError {
    /// The error for an `errno` of the OS, typed where a variant says more.
    pub fn from_os(err: io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::ENOENT) => Self::NotFound,
            Some(libc::EEXIST) => Self::AlreadyExists,
            Some(libc::EACCES) => Self::PermissionDenied,
            Some(libc::ELOOP) => Self::Symlink,
            Some(libc::EISDIR) => Self::NotASegment(FileKind::Directory),
            // open() of a Unix socket.
            Some(libc::ENXIO) => Self::NotASegment(FileKind::Socket),
            _ => Self::Os(err),
        }
    }
}

impl From<io::Error> for SegmentError {
    fn from(err: io::Error) -> Self {
        Self::from_os(err)
    }
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such segment"),
            Self::AlreadyExists => f.write_str("the segment exists already"),
            Self::PermissionDenied => f.write_str("permission denied by the segment's mode"),
            Self::ForeignOwner { uid, shut_out } => {
                write!(f, "the segment belongs to another user: uid {uid}")?;
                if let Some(name) = os::user_name(*uid) {
                    write!(f, " ({name})")?;
                }
                if *shut_out {
                    f.write_str(", and its mode keeps this user out")?;
                }
                Ok(())
            }
            Self::SizeMismatch(m) => m.fmt(f),
            Self::Symlink => f.write_str("the name is a symbolic link, which is never followed"),
            Self::NotASegment(kind) => write!(f, "the name is {kind}, not a segment"),
            Self::HardLinked { links } => write!(
                f,
                "the name is one of {links} names of one file (hard links), not a segment's own \
                 name: it may be another segment, linked here by someone else"
            ),
            Self::Empty => f.write_str(
                "the name holds an empty file: not a segment, or one whose creator died or stalled \
                 before sizing it",
            ),
            Self::TooLargeToMap { size, requested } => write!(
                f,
                "the segment is {size} bytes, and a keyed segment is mapped whole ({requested} \
                 were asked for): no memory or address space is left to map that many"
            ),
            Self::NoRoomToMap { size } => write!(
                f,
                "the segment is {size} bytes, mapped whole as keyed segments are: this process has \
                 no memory, address space or mappings left to map it"
            ),
            Self::Invalid(msg) => f.write_str(msg),
            Self::Os(err) => err.fmt(f),
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Regular => "a file",
            Self::Directory => "a directory",
            Self::Fifo => "a FIFO",
            Self::Socket => "a socket",
            Self::Device => "a device",
            Self::Other => "a special file",
        })
    }
}

impl std::error::Error for SegmentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os(err) => Some(err),
            Self::SizeMismatch(m) => Some(m),
            _ => None,
        }
    }
}

impl From<SegmentError> for io::Error {
    /// For callers that speak `io::Error`: the matching kind, with the typed error inside.
    fn from(err: SegmentError) -> Self {
        let kind = match &err {
            SegmentError::NotFound => io::ErrorKind::NotFound,
            SegmentError::AlreadyExists => io::ErrorKind::AlreadyExists,
            SegmentError::PermissionDenied | SegmentError::ForeignOwner { .. } => {
                io::ErrorKind::PermissionDenied
            }
            SegmentError::SizeMismatch(_) | SegmentError::Invalid(_) => io::ErrorKind::InvalidInput,
            SegmentError::TooLargeToMap { .. } | SegmentError::NoRoomToMap { .. } => {
                io::ErrorKind::OutOfMemory
            }
            SegmentError::Os(_) => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidData,
        };
        match err {
            SegmentError::Os(inner) => inner,
            typed => io::Error::new(kind, typed),
        }
    }
}

/// A `Result` of the segment layer.
pub type Result<T, E = SegmentError> = std::result::Result<T, E>;

/// A shared-memory segment mapped into this process; unmapped on drop (the segment itself stays
/// until [`Segment::unlink`]).
///
/// Other processes may write the bytes at any time, so the segment hands out raw pointers and
/// atomics, never `&[u8]` without `unsafe`.
///
/// # Peers
///
/// A process that may open a named segment (this user's, by default) may also shrink it
/// (`ftruncate`): the pages past the new end then vanish from every mapping, and the next access
/// to one of them, through this segment, a [`crate::sync::Mutex`] or a
/// [`crate::channel::Channel`] in it, is a `SIGBUS` that ends the process; this crate does not
/// catch it (`docs/safety.md` says why). A keyed (System V) segment cannot shrink: a peer can
/// only remove its key, and every mapping stays whole.
#[derive(Debug)]
pub struct Segment {
    mapping: os::Mapping,
    /// The bytes exposed: all of the mapping, or the prefix an opener asked for.
    len: usize,
    created: bool,
    /// Whether the bytes were handed out (a pointer, a slice or an atomic) since the mapping was
    /// made: a segment this process created and never handed out is still all zero.
    handed_out: AtomicBool,
}

impl Segment {
    /// Creates a new segment of `size` bytes, zero-filled, failing if it already exists (unless
    /// [`Options::replace`]).
    ///
    /// # Errors
    /// [`SegmentError::AlreadyExists`] if it exists; [`SegmentError::Invalid`] for size 0;
    /// `ENOSPC` when a named segment does not fit in the shared-memory filesystem, or the system
    /// will not provide a keyed segment of `size` bytes (more than it may commit); with
    /// `replace`, the errors of opening the old segment (someone else's, or not a segment);
    /// any other error of the OS.
    pub fn create(id: &SegmentId, size: usize, options: &Options) -> Result<Self> {
        id.check()?;
        check_create(size, options)?;
        // Replacing races with other processes creating and removing: each round fails only if
        // another process won it, so a bounded number settles it.
        for _ in 0..RACE_ROUNDS {
            match Self::create_once(id, size, options) {
                Err(SegmentError::AlreadyExists) if options.replace => {
                    match Self::remove_replaceable(id, options) {
                        // Removed by this process, or by another since: a round lost, try again.
                        Ok(()) | Err(SegmentError::NotFound) => {}
                        Err(err) => return Err(err),
                    }
                    lost_race();
                }
                // Made, and removed by another process before it could be mapped (a keyed
                // segment removed with no process attached is gone at once). A name made is
                // mapped through its descriptor: its NotFound is the OS's (no /dev/shm).
                Err(SegmentError::NotFound) if matches!(id, SegmentId::Key(_)) => lost_race(),
                other => return other,
            }
        }
        Err(SegmentError::AlreadyExists)
    }

    fn create_once(id: &SegmentId, size: usize, options: &Options) -> Result<Self> {
        let mapping = match id {
            SegmentId::Key(key) => os::sysv_create(*key as i32, size, options.mode)?,
            SegmentId::Name(name) => os::posix_create(name, size, options.mode)?,
        };
        Self::finish(mapping, true, options)
    }

    /// Removes the segment at `id` for a replacing create if it may be: a segment (not a
    /// directory, a FIFO, a link) of an owner the options accept. What is checked is what is
    /// removed: a keyed segment by the id looked up, a name by the file it holds as it is removed
    /// ([`os::posix_unlink_checked`]).
    fn remove_replaceable(id: &SegmentId, options: &Options) -> Result<()> {
        match id {
            SegmentId::Key(key) => {
                let info = os::sysv_lookup(*key as i32)
                    .map_err(|err| refused_key(*key, options.owner, err))?;
                check_owner(options.owner, &[info.uid(), info.creator_uid()])?;
                os::sysv_remove_own(*key as i32, info.id(), info.creator_pid())?;
            }
            SegmentId::Name(name) => os::posix_unlink_checked(name, |info| {
                if info.kind != FileKind::Regular {
                    return Err(SegmentError::NotASegment(info.kind));
                }
                check_owner(options.owner, &[info.uid])
            })?,
        }
        Ok(())
    }

    /// Opens an existing segment. With `size`, the segment must be at least that large, and only
    /// its first `size` bytes are exposed; without, all of it.
    ///
    /// # Errors
    /// [`SegmentError::NotFound`] if it does not exist; [`SegmentError::ForeignOwner`] if it
    /// belongs to a user that [`Options::owner`] does not accept;
    /// [`SegmentError::PermissionDenied`] if its owner did not grant access;
    /// [`SegmentError::SizeMismatch`] if it is smaller than `size`; [`SegmentError::Symlink`],
    /// [`SegmentError::NotASegment`], [`SegmentError::HardLinked`] or [`SegmentError::Empty`] if
    /// the name holds something else; [`SegmentError::TooLargeToMap`] if a keyed segment larger
    /// than `size` does not fit this process (it is mapped whole), [`SegmentError::NoRoomToMap`]
    /// if one opened whole does not.
    ///
    /// An empty file at the name is a creator's that has not sized it yet, while its status
    /// changed in the last 2 seconds: the open waits for it that long at most (sleeping), then
    /// fails with [`SegmentError::Empty`]. An older empty file is refused at once.
    pub fn open(id: &SegmentId, size: Option<usize>, options: &Options) -> Result<Self> {
        if size == Some(0) {
            return Err(invalid("size must be at least 1 byte"));
        }
        let mapping = Self::open_raw(id, options.owner, |actual| match size {
            Some(requested) if requested > actual => {
                Err(SegmentError::SizeMismatch(SizeMismatch {
                    requested,
                    actual,
                }))
            }
            Some(requested) => Ok(requested),
            None => Ok(actual),
        })?;
        let mut segment = Self::finish(mapping, false, options)?;
        if let Some(requested) = size {
            segment.len = requested;
        }
        Ok(segment)
    }

    /// Opens the segment if it exists, else creates it; [`Segment::created`] tells which.
    ///
    /// An existing segment keeps its data, and must have exactly `size` bytes: attaching to
    /// someone else's segment of another size is refused rather than silently allowed.
    ///
    /// # Errors
    /// As [`Segment::create`] and [`Segment::open`]; [`SegmentError::SizeMismatch`] if the
    /// existing segment's size differs.
    pub fn open_or_create(id: &SegmentId, size: usize, options: &Options) -> Result<Self> {
        id.check()?;
        check_create(size, options)?;
        let exact = |actual| {
            if actual == size {
                Ok(size)
            } else {
                Err(SegmentError::SizeMismatch(SizeMismatch {
                    requested: size,
                    actual,
                }))
            }
        };
        // Creating and opening race with other processes doing the same or unlinking: a bounded
        // number of rounds settles it, since each round fails only if another process won it.
        for _ in 0..RACE_ROUNDS {
            match Self::create_once(id, size, options) {
                Err(SegmentError::AlreadyExists) => {}
                // Made, and removed by another process before it could be mapped.
                Err(SegmentError::NotFound) => {
                    lost_race();
                    continue;
                }
                other => return other,
            }
            match Self::open_raw(id, options.owner, exact) {
                Ok(mapping) => return Self::finish(mapping, false, options),
                Err(SegmentError::NotFound) => lost_race(),
                Err(err) => return Err(err),
            }
        }
        Err(SegmentError::Os(io::Error::from_raw_os_error(libc::EAGAIN)))
    }

    /// Removes `id`, the key or name this segment was opened under, if it still names this
    /// segment: another process may have replaced it (`Options::replace`) or removed it since.
    ///
    /// # Errors
    /// [`SegmentError::NotFound`] if `id` names another segment now, or none; as
    /// [`Segment::unlink`] otherwise.
    pub fn unlink_own(&self, id: &SegmentId) -> Result<()> {
        Self::unlink_identified(id, self.identity())
    }

    /// Unmaps the segment but keeps its addresses, as private memory, until the placeholder is
    /// dropped (see [`os::Mapping::into_placeholder`]): for the bindings, whose engine may still
    /// write through a pointer into a buffer closed under it. `None` if the OS refused: the
    /// mapping is then left as it is, or as the failed call left it, and never unmapped.
    #[doc(hidden)]
    pub fn into_placeholder(self) -> Option<os::Placeholder> {
        let this = std::mem::ManuallyDrop::new(self);
        this.forget_uses();
        // SAFETY: `this` is never used or dropped after this one read of its mapping, the only
        // field with a destructor; the mapping is moved out exactly once.
        let mapping = unsafe { std::ptr::read(&this.mapping) };
        mapping.into_placeholder()
    }

    /// What tells this segment apart from another made later under its key or name: its System V
    /// id, or its file's device and inode. Kept by the bindings past a close, for an unlink then.
    #[doc(hidden)]
    pub fn identity(&self) -> os::Identity {
        self.mapping.identity()
    }

    /// [`Segment::unlink_own`] for the segment `identity` tells (see [`Segment::identity`]), which
    /// need not be mapped any more.
    ///
    /// # Errors
    /// As [`Segment::unlink_own`]; [`SegmentError::NotFound`] too for an identity of the other
    /// kind than `id`.
    #[doc(hidden)]
    pub fn unlink_identified(id: &SegmentId, identity: os::Identity) -> Result<()> {
        id.check()?;
        match (id, identity) {
            (SegmentId::Key(key), os::Identity::SysV { id, creator_pid }) => {
                os::sysv_remove_own(*key as i32, id, creator_pid)?;
            }
            (SegmentId::Name(name), identity @ os::Identity::File { .. }) => {
                os::posix_unlink_own(name, identity)?;
            }
            _ => return Err(SegmentError::NotFound),
        }
        Ok(())
    }

    /// Removes the segment's key or name. Processes that have it mapped keep their memory until
    /// they unmap it; a new segment may be created under the same key or name at once.
    ///
    /// # Errors
    /// [`SegmentError::NotFound`] if there is no such segment;
    /// [`SegmentError::PermissionDenied`] (or `EPERM`) if it is someone else's.
    pub fn unlink(id: &SegmentId) -> Result<()> {
        id.check()?;
        match id {
            SegmentId::Key(key) => os::sysv_remove(*key as i32)?,
            SegmentId::Name(name) => os::posix_unlink(name)?,
        }
        Ok(())
    }

    /// Opens the segment at `id` after checking its owner, its kind and (with `size_ok`, which
    /// returns how many bytes to expose) its size, all before anything is mapped. A named
    /// segment is mapped only as far as it is exposed; a keyed one is always mapped whole.
    fn open_raw(
        id: &SegmentId,
        owner: Owner,
        size_ok: impl Fn(usize) -> Result<usize>,
    ) -> Result<os::Mapping> {
        id.check()?;
        match id {
            SegmentId::Key(key) => {
                let info =
                    os::sysv_lookup(*key as i32).map_err(|err| refused_key(*key, owner, err))?;
                check_owner(owner, &[info.uid(), info.creator_uid()])?;
                let requested = size_ok(info.size())?;
                os::sysv_attach(&info).map_err(|err| match err.raw_os_error() {
                    // Mapped whole: a peer's segment far larger than asked for (made without
                    // reserving its memory, or in a larger address space) is what ran out.
                    Some(libc::ENOMEM) if info.size() > requested => SegmentError::TooLargeToMap {
                        size: info.size(),
                        requested,
                    },
                    // Asked for whole: the error still names the size that did not fit.
                    Some(libc::ENOMEM) => SegmentError::NoRoomToMap { size: info.size() },
                    _ => err.into(),
                })
            }
            SegmentId::Name(name) => {
                let opened =
                    os::posix_open_name(name).map_err(|err| refused_name(name, owner, err))?;
                // A creator makes the name and sizes it in two steps, and an opener may come in
                // between: a file changed in the last moments gets a short wait; an older empty
                // one is a leftover, refused at once.
                let deadline = Instant::now() + SIZE_RACE_WAIT;
                loop {
                    let info = opened.info()?;
                    if info.kind != FileKind::Regular {
                        return Err(SegmentError::NotASegment(info.kind));
                    }
                    check_owner(owner, &[info.uid])?;
                    // A segment has one name. With a second, made by `ln` in the shared
                    // directory, a user who may read and write a segment of this user's (mode
                    // 0o666) passes it off as this name's, and reads what this process writes
                    // there; where the kernel does not protect hard links, any of this user's
                    // segments. The descriptor is open: a link made after this look does not
                    // change which file this process maps.
                    if info.links > 1 {
                        return Err(SegmentError::HardLinked { links: info.links });
                    }
                    if info.size > 0 {
                        let len = size_ok(info.size)?;
                        // A segment another program sized with ftruncate alone is sparse: in a
                        // full /dev/shm (a container's 64 MiB) the first write to a page it
                        // lacks would kill this process with SIGBUS. Ours are reserved at
                        // create, so this costs nothing for them. Only what this process maps
                        // is reserved: an opener of the first 4 KiB does not commit the rest.
                        if info.allocated < info.size as u64 {
                            opened.reserve(len)?;
                        }
                        return Ok(opened.map(len, &info)?);
                    }
                    if info.changed_secs_ago > RECENT_SECS || Instant::now() >= deadline {
                        return Err(SegmentError::Empty);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    fn finish(mapping: os::Mapping, created: bool, options: &Options) -> Result<Self> {
        if options.populate {
            mapping.populate()?;
        }
        let len = mapping.len();
        Ok(Self {
            mapping,
            len,
            created,
            handed_out: AtomicBool::new(false),
        })
    }

    /// The number of bytes this process sees.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: segments have at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if this call created the segment, false if it opened an existing one.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The first byte. Valid for [`Segment::len`] bytes while `self` lives.
    pub fn as_ptr(&self) -> *mut u8 {
        self.handed_out.store(true, Relaxed);
        self.mapping.as_ptr()
    }

    /// True if this process created the segment and has handed none of its bytes out since: they
    /// are all zero, as the system made them (another process may have written them already,
    /// as it may write them at any time).
    pub(crate) fn untouched(&self) -> bool {
        self.created && !self.handed_out.load(Relaxed)
    }

    /// The bytes as a slice.
    ///
    /// # Safety
    /// No process may write the bytes while the slice lives (Rust assumes a `&[u8]` never
    /// changes). Use [`Segment::atomic_u32`] or raw pointers for data others are changing.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is valid for len bytes while self lives; the caller promises that
        // nobody writes them meanwhile.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// The bytes as a mutable slice.
    ///
    /// # Safety
    /// No other process or thread may read or write the bytes while the slice lives.
    #[allow(clippy::mut_from_ref)] // the memory is shared: exclusivity is the caller's promise
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the mapping is valid for len bytes while self lives; the caller promises
        // exclusive access meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }

    /// The 32-bit word at `byte_offset`, as an atomic shared with every process that maps it.
    ///
    /// # Panics
    /// If `byte_offset` is not a multiple of 4 or the word does not fit inside the segment.
    pub fn atomic_u32(&self, byte_offset: usize) -> &AtomicU32 {
        assert!(
            byte_offset % 4 == 0,
            "offset {byte_offset} is not 4-byte aligned"
        );
        assert!(
            byte_offset
                .checked_add(4)
                .is_some_and(|end| end <= self.len()),
            "offset {byte_offset} is past the segment"
        );
        // SAFETY: in bounds and aligned (mappings are page-aligned); atomics may alias memory that
        // other processes access atomically, and the reference is tied to &self, so it cannot
        // outlive the mapping.
        unsafe { AtomicU32::from_ptr(self.as_ptr().add(byte_offset).cast()) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.forget_uses();
    }
}

impl Segment {
    /// What must go before the mapping does.
    fn forget_uses(&self) {
        let (start, len) = (self.mapping.as_ptr() as usize, self.mapping.len());
        // The mapping goes away after this: no thread may go on counting a lock inside it as
        // held, or a later mapping at the same addresses would look held.
        crate::sync::forget_held_in(start, len);
        // Nor may an async wait go on watching a word inside it: nothing can wake it through
        // this mapping any more, and a later mapping at the same address would be watched in
        // its place (a wake-up of another segment, or of none). Each ends with `EBADF` now; its
        // completion is called on another thread (this one may hold what it takes).
        crate::sync::cancel_waits_elsewhere(start, len);
    }
}

/// The error for a keyed segment this user may not look up (`EACCES`: its mode does not let
/// this user read it): another user's that `owner` does not accept, as the system lists it to
/// everyone (Linux), is [`SegmentError::ForeignOwner`], as one this user may read would be;
/// otherwise the lookup's own error.
fn refused_key(key: u32, owner: Owner, err: io::Error) -> SegmentError {
    if err.raw_os_error() == Some(libc::EACCES) {
        if let Some((uid, creator)) = os::sysv_listed_owner(key as i32) {
            if let Err(foreign) = check_owner(owner, &[uid, creator]) {
                return shut_out(foreign);
            }
        }
    }
    SegmentError::from(err)
}

/// The error for a name this user could not open: a file whose mode keeps this user out
/// (`EACCES`), or another process's lease on it (`EAGAIN`). What the name holds, looked at
/// without opening it, says more: a FIFO or a socket is [`SegmentError::NotASegment`], another
/// user's file that `owner` does not accept [`SegmentError::ForeignOwner`], as they are when
/// the open succeeds; otherwise the open's own error.
fn refused_name(name: &std::ffi::CStr, owner: Owner, err: io::Error) -> SegmentError {
    if matches!(err.raw_os_error(), Some(libc::EACCES | libc::EAGAIN)) {
        if let Ok(info) = os::posix_name_info(name) {
            if info.kind != FileKind::Regular {
                return SegmentError::NotASegment(info.kind);
            }
            if let Err(foreign) = check_owner(owner, &[info.uid]) {
                return shut_out(foreign);
            }
        }
    }
    SegmentError::from(err)
}

/// `err`, a [`SegmentError::ForeignOwner`] found after the system kept this user out, saying so.
fn shut_out(err: SegmentError) -> SegmentError {
    match err {
        SegmentError::ForeignOwner { uid, .. } => SegmentError::ForeignOwner {
            uid,
            shut_out: true,
        },
        other => other,
    }
}

/// Refuses a segment unless `owner` accepts every uid in `uids`.
fn check_owner(owner: Owner, uids: &[u32]) -> Result<()> {
    match uids.iter().find(|&&uid| !owner.accepts(uid)) {
        Some(&uid) => Err(SegmentError::ForeignOwner {
            uid,
            shut_out: false,
        }),
        None => Ok(()),
    }
}

fn check_create(size: usize, options: &Options) -> Result<()> {
    if size == 0 {
        return Err(invalid("size must be at least 1 byte"));
    }
    if isize::try_from(size).is_err() {
        // No mapping can be larger: the system's own errors for it differ by kind of segment.
        return Err(invalid("size must be at most isize::MAX bytes"));
    }
    if options.mode > 0o777 {
        return Err(invalid("mode must be within 0o000..=0o777"));
    }
    Ok(())
}
