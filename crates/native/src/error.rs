//! Errors at the C boundary: the one place where Rust errors become codes, the one table of
//! error numbers and their names, and the panic guard.
//!
//! Every function returns a negative code on failure: `-errno`. The numbers are this platform's
//! (`EAGAIN` is 11 on Linux and 35 on macOS), so the bindings never hard-code one: they ask
//! [`sb_errno`] for the number of a name, and [`sb_error_name`] for the name of a code.
//!
//! A Rust error type reaches the boundary by implementing [`ErrorCode`]; call sites then use
//! [`code_of`] or [`status`], never a number of their own.

use std::ffi::{CStr, c_char};
use std::io;
use std::panic::{self, UnwindSafe};

use shared_buffer::segment::{FileKind, SegmentError};

/// A panic was caught at the ABI boundary (a bug in this library).
pub const SB_EPANIC: i32 = -1001;
/// The segment belongs to a user the caller did not accept (see `SB_OWNER_TRUSTED`).
pub const SB_EOWNER: i32 = -1002;
/// Something other than a segment is at the name: a FIFO, a socket, a device, or a file with
/// other names too (hard links).
pub const SB_EFTYPE: i32 = -1003;

/// An error that the C boundary reports as `-errno`.
pub trait ErrorCode {
    /// The positive error number (one of [`ERRNOS`]).
    fn errno(&self) -> i32;
}

impl ErrorCode for io::Error {
    fn errno(&self) -> i32 {
        if let Some(errno) = self.raw_os_error() {
            return errno;
        }
        match self.kind() {
            io::ErrorKind::InvalidInput => libc::EINVAL,
            io::ErrorKind::NotFound => libc::ENOENT,
            io::ErrorKind::AlreadyExists => libc::EEXIST,
            io::ErrorKind::PermissionDenied => libc::EACCES,
            io::ErrorKind::Unsupported => libc::ENOTSUP,
            io::ErrorKind::TimedOut => libc::ETIMEDOUT,
            _ => libc::EIO,
        }
    }
}

impl ErrorCode for SegmentError {
    /// The one place where typed segment errors become numbers.
    fn errno(&self) -> i32 {
        match self {
            SegmentError::NotFound => libc::ENOENT,
            SegmentError::AlreadyExists => libc::EEXIST,
            SegmentError::PermissionDenied => libc::EACCES,
            SegmentError::ForeignOwner { .. } => -SB_EOWNER,
            SegmentError::SizeMismatch(_) | SegmentError::Invalid(_) => libc::EINVAL,
            SegmentError::Symlink => libc::ELOOP,
            SegmentError::NotASegment(FileKind::Directory) => libc::EISDIR,
            SegmentError::NotASegment(_) | SegmentError::HardLinked { .. } => -SB_EFTYPE,
            SegmentError::Empty => libc::ENODATA,
            SegmentError::TooLargeToMap { .. } | SegmentError::NoRoomToMap { .. } => libc::ENOMEM,
            SegmentError::Os(err) => err.errno(),
            _ => libc::EIO,
        }
    }
}

impl ErrorCode for shared_buffer::sync::LockError {
    /// The lock's own mapping to numbers ([`shared_buffer::sync::LockError::errno`]).
    fn errno(&self) -> i32 {
        shared_buffer::sync::LockError::errno(self)
    }
}

/// The negative code for an error.
pub(crate) fn code_of(err: &impl ErrorCode) -> i32 {
    -err.errno()
}

/// `value` on success, the negative code of the error otherwise.
pub(crate) fn status<E: ErrorCode>(result: Result<i32, E>) -> i32 {
    result.unwrap_or_else(|err| code_of(&err))
}

/// Runs an ABI body, turning a panic into [`SB_EPANIC`].
pub(crate) fn guard(body: impl FnOnce() -> i32 + UnwindSafe) -> i32 {
    panic::catch_unwind(body).unwrap_or(SB_EPANIC)
}

/// Every error number the library reports, with its name and a short description. The numbers
/// come from `libc`, so they are this platform's.
pub const ERRNOS: &[(i32, &CStr, &CStr)] = &[
    (libc::EPERM, c"EPERM", c"operation not permitted"),
    (libc::ENOENT, c"ENOENT", c"no such segment"),
    (libc::EINTR, c"EINTR", c"interrupted"),
    (libc::EIO, c"EIO", c"input/output error"),
    (libc::EBADF, c"EBADF", c"unknown or already closed handle"),
    (libc::EAGAIN, c"EAGAIN", c"try again"),
    (libc::ENOMEM, c"ENOMEM", c"out of memory"),
    (libc::EACCES, c"EACCES", c"permission denied"),
    (libc::EFAULT, c"EFAULT", c"bad address"),
    (libc::EEXIST, c"EEXIST", c"already exists"),
    (libc::EINVAL, c"EINVAL", c"invalid argument"),
    (
        libc::ENFILE,
        c"ENFILE",
        c"too many open files in the system",
    ),
    (libc::EMFILE, c"EMFILE", c"too many open files"),
    (libc::EFBIG, c"EFBIG", c"too large"),
    (libc::ENOSPC, c"ENOSPC", c"no space left in shared memory"),
    (libc::ERANGE, c"ERANGE", c"out of range"),
    (libc::ENAMETOOLONG, c"ENAMETOOLONG", c"name too long"),
    (
        libc::ELOOP,
        c"ELOOP",
        c"the name is a symbolic link, which is never followed",
    ),
    (
        libc::EISDIR,
        c"EISDIR",
        c"the name is a directory, not a segment",
    ),
    (
        libc::ENODATA,
        c"ENODATA",
        c"the name holds an empty file: not a segment, or one whose creator died or stalled before sizing it",
    ),
    (libc::ENOSYS, c"ENOSYS", c"not implemented on this platform"),
    (libc::ENOTSUP, c"ENOTSUP", c"not supported on this platform"),
    (libc::ETIMEDOUT, c"ETIMEDOUT", c"timed out"),
    (libc::EOWNERDEAD, c"EOWNERDEAD", c"the previous owner died"),
    (
        libc::ENOTRECOVERABLE,
        c"ENOTRECOVERABLE",
        c"state not recoverable",
    ),
    (
        libc::EDEADLK,
        c"EDEADLK",
        c"deadlock: already held by this thread",
    ),
    (libc::EBUSY, c"EBUSY", c"busy"),
    (libc::ENOLCK, c"ENOLCK", c"this thread holds too many locks"),
    (libc::EIDRM, c"EIDRM", c"segment was removed"),
    (libc::EPIPE, c"EPIPE", c"the channel is closed"),
    (libc::ECONNRESET, c"ECONNRESET", c"the peer process died"),
    (libc::EMSGSIZE, c"EMSGSIZE", c"message too long"),
    (libc::EBADMSG, c"EBADMSG", c"corrupt channel"),
    (
        libc::EPROTONOSUPPORT,
        c"EPROTONOSUPPORT",
        c"unsupported channel layout version",
    ),
    (
        libc::EXDEV,
        c"EXDEV",
        c"the channel was made in another pid namespace",
    ),
    (
        -SB_EPANIC,
        c"EPANIC",
        c"internal error in the native library (a panic was caught)",
    ),
    (
        -SB_EOWNER,
        c"EOWNER",
        c"the segment belongs to another user",
    ),
    (
        -SB_EFTYPE,
        c"EFTYPE",
        c"the name holds a FIFO, socket, device or hard-linked file, not a segment",
    ),
];

fn describe(code: i32) -> (&'static CStr, &'static CStr) {
    let errno = code.checked_neg().unwrap_or(0);
    if errno == 0 {
        return (c"OK", c"success");
    }
    ERRNOS
        .iter()
        .find(|(known, _, _)| *known == errno)
        .map_or((c"EUNKNOWN", c"unknown error"), |&(_, name, message)| {
            (name, message)
        })
}

/// The symbolic name of a code (`"EEXIST"`), as a static NUL-terminated string. Unknown codes give
/// `"EUNKNOWN"`.
#[unsafe(no_mangle)]
pub extern "C" fn sb_error_name(code: i32) -> *const c_char {
    describe(code).0.as_ptr()
}

/// A short English description of a code (`"already exists"`), as a static NUL-terminated
/// string.
#[unsafe(no_mangle)]
pub extern "C" fn sb_error_message(code: i32) -> *const c_char {
    describe(code).1.as_ptr()
}

/// The positive error number that this platform gives the symbolic name `name[..name_len]`
/// (UTF-8, e.g. `"EAGAIN"`: 11 on Linux, 35 on macOS), for every name [`sb_error_name`] can
/// return except `"OK"` and `"EUNKNOWN"`; 0 for any other name (or a null `name` with a non-zero
/// length).
///
/// # Safety
/// `name` must be valid for reading `name_len` bytes (or `name_len` must be 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_errno(name: *const u8, name_len: u32) -> i32 {
    if name.is_null() || name_len == 0 {
        return 0;
    }
    // SAFETY: non-null and valid for name_len bytes, as the caller promises.
    let name = unsafe { std::slice::from_raw_parts(name, name_len as usize) };
    // A table lookup cannot panic; the guard is there because nothing may unwind out of here.
    guard(|| {
        ERRNOS
            .iter()
            .find(|(_, known, _)| known.to_bytes() == name)
            .map_or(0, |&(errno, _, _)| errno)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno_of(name: &str) -> i32 {
        // SAFETY: the str is valid for its length.
        unsafe { sb_errno(name.as_ptr(), name.len() as u32) }
    }

    #[test]
    fn every_code_has_a_name_and_a_message() {
        for code in [
            0,
            -libc::EEXIST,
            -libc::ENOENT,
            SB_EPANIC,
            -99_999,
            i32::MIN,
        ] {
            // SAFETY: both functions return static NUL-terminated strings.
            let (name, msg) = unsafe {
                (
                    CStr::from_ptr(sb_error_name(code)),
                    CStr::from_ptr(sb_error_message(code)),
                )
            };
            assert!(!name.to_bytes().is_empty() && !msg.to_bytes().is_empty());
        }
        // SAFETY: as above.
        let name = unsafe { CStr::from_ptr(sb_error_name(-libc::EEXIST)) };
        assert_eq!(name, c"EEXIST");
    }

    #[test]
    fn names_and_numbers_round_trip() {
        for &(errno, name, _) in ERRNOS {
            assert_eq!(errno_of(name.to_str().unwrap()), errno, "{name:?}");
            // SAFETY: a static NUL-terminated string.
            assert_eq!(unsafe { CStr::from_ptr(sb_error_name(-errno)) }, name);
        }
        assert_eq!(errno_of("EAGAIN"), libc::EAGAIN);
        assert_eq!(errno_of("EPANIC"), -SB_EPANIC);
        for unknown in ["", "OK", "EUNKNOWN", "eagain", "EAGAIN ", "NOPE"] {
            assert_eq!(errno_of(unknown), 0, "{unknown:?}");
        }
        // SAFETY: null is refused before any read.
        assert_eq!(unsafe { sb_errno(std::ptr::null(), 4) }, 0);
        let numbers: std::collections::HashSet<_> = ERRNOS.iter().map(|e| e.0).collect();
        assert_eq!(numbers.len(), ERRNOS.len(), "two names share a number");
    }

    #[test]
    fn guard_turns_a_panic_into_a_code() {
        let prev = panic::take_hook();
        panic::set_hook(Box::new(|_| {}));
        assert_eq!(guard(|| panic!("boom")), SB_EPANIC);
        panic::set_hook(prev);
        assert_eq!(guard(|| 7), 7);
    }
}
