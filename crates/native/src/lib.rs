//! The flat C ABI loaded by `mod.ts` (Deno) and `bun.ts` (Bun).
//!
//! Conventions, which every symbol follows:
//!
//! - Every symbol starts with `sb_`.
//! - A function that can fail returns `0` (or a positive value it documents) on success and a
//!   negative code on failure: `-errno` for errors of the OS, or one of the `SB_E*` constants
//!   below. [`sb_error_name`] and [`sb_error_message`] turn any code into static text.
//! - Results go to out-parameters; no function allocates memory that the caller must free.
//! - No panic crosses the ABI: each body runs inside [`guard`], which turns a panic into
//!   [`SB_EPANIC`].
//! - Segments are reached through handles, small positive integers that each hold one reference to
//!   a mapping. The mapping is unmapped when its last handle is closed. Closing an unknown or
//!   already closed handle returns `-EBADF`; it is never undefined behaviour.
//!
//! [`SB_ABI_VERSION`] changes whenever a signature or a struct layout here changes, and the
//! TypeScript side refuses to load a library whose version differs from its own.

mod channel;
mod segment;
mod sync;

pub use channel::*;
pub use segment::*;
pub use sync::*;

use std::ffi::c_char;
use std::io;
use std::panic::{self, UnwindSafe};

/// The version of this ABI; `sb_abi_version` returns it.
pub const SB_ABI_VERSION: u32 = 4;

/// A panic was caught at the ABI boundary (a bug in this library).
pub const SB_EPANIC: i32 = -1001;

/// Runs an ABI body, turning a panic into [`SB_EPANIC`].
pub(crate) fn guard(body: impl FnOnce() -> i32 + UnwindSafe) -> i32 {
    panic::catch_unwind(body).unwrap_or(SB_EPANIC)
}

/// The negative code for an error.
pub(crate) fn code_of(err: &io::Error) -> i32 {
    if let Some(errno) = err.raw_os_error() {
        return -errno;
    }
    -match err.kind() {
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::NotFound => libc::ENOENT,
        io::ErrorKind::AlreadyExists => libc::EEXIST,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::Unsupported => libc::ENOTSUP,
        io::ErrorKind::TimedOut => libc::ETIMEDOUT,
        _ => libc::EIO,
    }
}

/// The version of this ABI ([`SB_ABI_VERSION`]).
#[unsafe(no_mangle)]
pub extern "C" fn sb_abi_version() -> u32 {
    SB_ABI_VERSION
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

fn describe(code: i32) -> (&'static std::ffi::CStr, &'static std::ffi::CStr) {
    if code == SB_EPANIC {
        return (
            c"EPANIC",
            c"internal error in the native library (a panic was caught)",
        );
    }
    match code.checked_neg().unwrap_or(0) {
        0 => (c"OK", c"success"),
        libc::EPERM => (c"EPERM", c"operation not permitted"),
        libc::ENOENT => (c"ENOENT", c"no such segment"),
        libc::EINTR => (c"EINTR", c"interrupted"),
        libc::EIO => (c"EIO", c"input/output error"),
        libc::EBADF => (c"EBADF", c"unknown or already closed handle"),
        libc::EAGAIN => (c"EAGAIN", c"try again"),
        libc::ENOMEM => (c"ENOMEM", c"out of memory"),
        libc::EACCES => (c"EACCES", c"permission denied"),
        libc::EFAULT => (c"EFAULT", c"bad address"),
        libc::EEXIST => (c"EEXIST", c"already exists"),
        libc::EINVAL => (c"EINVAL", c"invalid argument"),
        libc::ENFILE => (c"ENFILE", c"too many open files in the system"),
        libc::EMFILE => (c"EMFILE", c"too many open files"),
        libc::EFBIG => (c"EFBIG", c"too large"),
        libc::ENOSPC => (c"ENOSPC", c"no space left in shared memory"),
        libc::ERANGE => (c"ERANGE", c"out of range"),
        libc::ENAMETOOLONG => (c"ENAMETOOLONG", c"name too long"),
        libc::ENOSYS => (c"ENOSYS", c"not implemented on this platform"),
        libc::ENOTSUP => (c"ENOTSUP", c"not supported on this platform"),
        libc::ETIMEDOUT => (c"ETIMEDOUT", c"timed out"),
        libc::EOWNERDEAD => (c"EOWNERDEAD", c"the previous owner died"),
        libc::ENOTRECOVERABLE => (c"ENOTRECOVERABLE", c"state not recoverable"),
        libc::EDEADLK => (c"EDEADLK", c"deadlock: already held by this thread"),
        libc::EBUSY => (c"EBUSY", c"busy"),
        libc::EIDRM => (c"EIDRM", c"segment was removed"),
        libc::EPIPE => (c"EPIPE", c"the channel is closed"),
        libc::ECONNRESET => (c"ECONNRESET", c"the peer process died"),
        libc::EMSGSIZE => (c"EMSGSIZE", c"message too long"),
        libc::EBADMSG => (c"EBADMSG", c"corrupt channel"),
        libc::EPROTONOSUPPORT => (c"EPROTONOSUPPORT", c"unsupported channel layout version"),
        _ => (c"EUNKNOWN", c"unknown error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

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
    fn guard_turns_a_panic_into_a_code() {
        let prev = panic::take_hook();
        panic::set_hook(Box::new(|_| {}));
        assert_eq!(guard(|| panic!("boom")), SB_EPANIC);
        panic::set_hook(prev);
        assert_eq!(guard(|| 7), 7);
    }
}
