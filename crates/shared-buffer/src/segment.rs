//! [`Segment`]: one mapped shared-memory segment and the rules for making and finding it.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::sync::atomic::AtomicU32;

use crate::os;

/// Which segment: a System V key or a POSIX name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SegmentId {
    /// A System V key (`shmget`), as the seed package used. Never 0 (`IPC_PRIVATE`).
    Key(u32),
    /// A POSIX name (`shm_open`), stored with its leading `/`.
    Name(CString),
}

impl SegmentId {
    /// A keyed segment.
    ///
    /// # Errors
    /// `InvalidInput` for key 0, which is `IPC_PRIVATE` and can never be shared.
    pub fn key(key: u32) -> io::Result<Self> {
        if key == 0 {
            return Err(invalid("key 0 is IPC_PRIVATE and cannot be shared"));
        }
        Ok(Self::Key(key))
    }

    /// A named segment. The leading `/` is optional (`"jobs"` and `"/jobs"` are the same).
    ///
    /// # Errors
    /// `InvalidInput` for an empty name, an inner `/` or a NUL; `ENAMETOOLONG` for a name longer
    /// than [`os::NAME_MAX`] bytes after the `/`.
    pub fn name(name: &str) -> io::Result<Self> {
        let bare = name.strip_prefix('/').unwrap_or(name);
        if bare.is_empty() {
            return Err(invalid("name is empty"));
        }
        if bare.contains('/') {
            return Err(invalid("name has a '/' after its first character"));
        }
        if bare.len() > os::NAME_MAX {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        let full = CString::new(format!("/{bare}")).map_err(|_| invalid("name has a NUL byte"))?;
        Ok(Self::Name(full))
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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: 0o600,
            populate: false,
        }
    }
}

/// The segment exists with another size than the caller asked for.
///
/// Carried inside an `io::Error` of kind `InvalidInput`; [`SizeMismatch::find`] gets it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeMismatch {
    /// The size the caller asked for.
    pub requested: usize,
    /// The segment's size.
    pub actual: usize,
}

impl SizeMismatch {
    /// The mismatch inside `err`, if that is what `err` is.
    pub fn find(err: &io::Error) -> Option<Self> {
        err.get_ref()?.downcast_ref::<Self>().copied()
    }
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

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A shared-memory segment mapped into this process; unmapped on drop (the segment itself stays
/// until [`Segment::unlink`]).
///
/// Other processes may write the bytes at any time, so the segment hands out raw pointers and
/// atomics, never `&[u8]` without `unsafe`.
#[derive(Debug)]
pub struct Segment {
    mapping: os::Mapping,
    /// The bytes exposed: all of the mapping, or the prefix an opener asked for.
    len: usize,
    created: bool,
}

impl Segment {
    /// Creates a new segment of `size` bytes, zero-filled, failing if it already exists.
    ///
    /// # Errors
    /// `AlreadyExists` (`EEXIST`) if it exists; `InvalidInput` for size 0; `ENOSPC` when a named
    /// segment does not fit in the shared-memory filesystem; `NotFound` if another process
    /// removed a new keyed segment before this one could map it; any other error of the OS.
    pub fn create(id: &SegmentId, size: usize, options: &Options) -> io::Result<Self> {
        check_create(size, options)?;
        let mapping = match id {
            SegmentId::Key(key) => os::sysv_create(*key as i32, size, options.mode)?,
            SegmentId::Name(name) => os::posix_create(name, size, options.mode)?,
        };
        Self::finish(mapping, true, options)
    }

    /// Opens an existing segment. With `size`, the segment must be at least that large, and only
    /// its first `size` bytes are exposed; without, all of it.
    ///
    /// # Errors
    /// `NotFound` (`ENOENT`) if it does not exist; `PermissionDenied` (`EACCES`) if it belongs to
    /// someone who did not grant access; `InvalidInput` with a [`SizeMismatch`] if it is smaller
    /// than `size`.
    pub fn open(id: &SegmentId, size: Option<usize>, options: &Options) -> io::Result<Self> {
        if size == Some(0) {
            return Err(invalid("size must be at least 1 byte"));
        }
        let mapping = Self::open_raw(id)?;
        if let Some(requested) = size {
            if requested > mapping.len() {
                let actual = mapping.len();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    SizeMismatch { requested, actual },
                ));
            }
        }
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
    /// As [`Segment::create`] and [`Segment::open`]; `InvalidInput` with a [`SizeMismatch`] if the
    /// existing segment's size differs.
    pub fn open_or_create(id: &SegmentId, size: usize, options: &Options) -> io::Result<Self> {
        check_create(size, options)?;
        // Creating and opening race with other processes doing the same or unlinking: a bounded
        // number of rounds settles it, since each round fails only if another process won it.
        let mut last = io::Error::from_raw_os_error(libc::EAGAIN);
        for _ in 0..16 {
            match Self::create(id, size, options) {
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                // Made, and removed by another process before it could be mapped.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    last = err;
                    continue;
                }
                other => return other,
            }
            match Self::open_raw(id) {
                Ok(mapping) if mapping.len() != size => {
                    let actual = mapping.len();
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        SizeMismatch {
                            requested: size,
                            actual,
                        },
                    ));
                }
                Ok(mapping) => return Self::finish(mapping, false, options),
                Err(err) if err.kind() == io::ErrorKind::NotFound => last = err,
                Err(err) => return Err(err),
            }
        }
        Err(last)
    }

    /// Removes the segment's key or name. Processes that have it mapped keep their memory until
    /// they unmap it; a new segment may be created under the same key or name at once.
    ///
    /// # Errors
    /// `NotFound` if there is no such segment; `PermissionDenied` if it is someone else's.
    pub fn unlink(id: &SegmentId) -> io::Result<()> {
        match id {
            SegmentId::Key(key) => os::sysv_remove(*key as i32),
            SegmentId::Name(name) => os::posix_unlink(name),
        }
    }

    fn open_raw(id: &SegmentId) -> io::Result<os::Mapping> {
        match id {
            SegmentId::Key(key) => os::sysv_open(*key as i32),
            SegmentId::Name(name) => os::posix_open(name),
        }
    }

    fn finish(mapping: os::Mapping, created: bool, options: &Options) -> io::Result<Self> {
        if options.populate {
            mapping.populate()?;
        }
        let len = mapping.len();
        Ok(Self {
            mapping,
            len,
            created,
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
        self.mapping.as_ptr()
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
            byte_offset + 4 <= self.len(),
            "offset {byte_offset} is past the segment"
        );
        // SAFETY: in bounds and aligned (mappings are page-aligned); atomics may alias memory that
        // other processes access atomically, and the reference is tied to &self, so it cannot
        // outlive the mapping.
        unsafe { AtomicU32::from_ptr(self.as_ptr().add(byte_offset).cast()) }
    }
}

fn check_create(size: usize, options: &Options) -> io::Result<()> {
    if size == 0 {
        return Err(invalid("size must be at least 1 byte"));
    }
    if options.mode > 0o777 {
        return Err(invalid("mode must be within 0o000..=0o777"));
    }
    Ok(())
}
