//! Every target without POSIX shared memory: the crate builds, and every call reports
//! [`io::ErrorKind::Unsupported`].

use std::ffi::CStr;
use std::io;

use super::{FileInfo, SysvInfo};

/// The longest name after the leading `/`.
pub const NAME_MAX: usize = 255;

fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "shared memory is not supported on this platform",
    ))
}

/// Never constructed on this platform.
#[derive(Debug)]
pub struct Mapping(std::convert::Infallible);

impl Mapping {
    /// Never called: no Mapping exists on this platform.
    pub fn as_ptr(&self) -> *mut u8 {
        match self.0 {}
    }
    /// Never called: no Mapping exists on this platform.
    pub fn len(&self) -> usize {
        match self.0 {}
    }
    /// Never called: no Mapping exists on this platform.
    pub fn is_empty(&self) -> bool {
        match self.0 {}
    }
    /// Never called: no Mapping exists on this platform.
    pub fn populate(&self) -> io::Result<()> {
        match self.0 {}
    }
    /// Never called: no Mapping exists on this platform.
    pub fn identity(&self) -> super::Identity {
        match self.0 {}
    }
    /// Never called: no Mapping exists on this platform.
    pub fn into_placeholder(self) -> Option<Placeholder> {
        match self.0 {}
    }
}

/// Never constructed on this platform.
#[derive(Debug)]
pub struct Placeholder(std::convert::Infallible);

/// The page size assumed where the platform cannot be asked.
pub fn page_size() -> usize {
    4096
}

/// Unsupported here.
pub fn sysv_create(_key: i32, _size: usize, _mode: u32) -> io::Result<Mapping> {
    unsupported()
}
/// Unsupported here.
pub fn sysv_lookup(_key: i32) -> io::Result<SysvInfo> {
    unsupported()
}
/// Unsupported here.
pub fn sysv_attach(_info: &SysvInfo) -> io::Result<Mapping> {
    unsupported()
}
/// Unsupported here.
pub fn sysv_remove(_key: i32) -> io::Result<()> {
    unsupported()
}
/// Unsupported here.
pub fn posix_create(_name: &CStr, _size: usize, _mode: u32) -> io::Result<Mapping> {
    unsupported()
}
/// Never constructed on this platform.
#[derive(Debug)]
pub struct OpenedName(std::convert::Infallible);

impl OpenedName {
    /// Never called: no OpenedName exists on this platform.
    pub fn info(&self) -> io::Result<FileInfo> {
        match self.0 {}
    }
    /// Never called: no OpenedName exists on this platform.
    pub fn map(&self, _len: usize) -> io::Result<Mapping> {
        match self.0 {}
    }
    /// Never called: no OpenedName exists on this platform.
    pub fn reserve(&self, _len: usize) -> io::Result<()> {
        match self.0 {}
    }
}

/// Unsupported here.
pub fn posix_open_name(_name: &CStr) -> io::Result<OpenedName> {
    unsupported()
}

/// Unsupported here.
pub fn sysv_listed_owner(_key: i32) -> Option<(u32, u32)> {
    None
}

/// Unsupported here.
pub fn posix_name_info(_name: &CStr) -> io::Result<FileInfo> {
    unsupported()
}
/// Unsupported here.
pub fn sysv_remove_own(_key: i32, _shmid: i32, _creator_pid: u32) -> io::Result<()> {
    unsupported()
}
/// Unsupported here.
pub fn posix_unlink_own(_name: &CStr, _identity: super::Identity) -> io::Result<()> {
    unsupported()
}
/// Unsupported here.
pub fn posix_unlink_checked<E: From<io::Error>>(
    _name: &CStr,
    _check: impl Fn(FileInfo) -> Result<(), E>,
) -> Result<(), E> {
    Err(unsupported::<()>().unwrap_err().into())
}
/// No users here: 0.
pub fn effective_uid() -> u32 {
    0
}
/// No user database here.
pub fn user_name(_uid: u32) -> Option<String> {
    None
}
/// Unsupported here.
pub fn posix_unlink(_name: &CStr) -> io::Result<()> {
    unsupported()
}

/// The largest owner token (none exist here).
pub const OWNER_TOKEN_MAX: u32 = (1 << 30) - 1;

/// Unsupported here: no lock owner can be named.
pub fn thread_identity() -> io::Result<(u32, u32)> {
    unsupported()
}

/// Nothing can be told here.
pub fn thread_liveness(_token: u32, _stamp: u32) -> super::Liveness {
    super::Liveness::Unknown
}

/// No `fork` here: nothing to register.
///
/// # Safety
/// As on Unix.
pub unsafe fn at_fork(
    _prepare: unsafe extern "C" fn(),
    _parent: unsafe extern "C" fn(),
    _child: unsafe extern "C" fn(),
) -> io::Result<()> {
    Ok(())
}
