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
