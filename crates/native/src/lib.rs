//! The flat C ABI loaded by `mod.ts` (Deno) and `bun.ts` (Bun).
//!
//! Conventions, which every symbol follows:
//!
//! - Every symbol starts with `sb_`.
//! - A function that can fail returns `0` (or a positive value it documents) on success and a
//!   negative code on failure: `-errno` with this platform's numbers, or [`SB_EPANIC`].
//!   [`sb_error_name`] and [`sb_error_message`] turn any code into static text, and [`sb_errno`]
//!   a name into this platform's number (see the `error` module).
//! - Results go to out-parameters; no function allocates memory that the caller must free.
//! - No panic crosses the ABI: each body runs inside [`guard`], which turns a panic into
//!   [`SB_EPANIC`].
//! - Segments are reached through handles, small positive integers that each hold one reference to
//!   a mapping. The mapping is unmapped when its last handle is closed. Closing an unknown or
//!   already closed handle returns `-EBADF`; it is never undefined behaviour.
//!
//! Every export is declared once more in [`abi::EXPORTS`], which the compiler checks against
//! the functions and from which the TypeScript bindings are generated.
//!
//! [`SB_ABI_VERSION`] changes whenever a signature or a struct layout here changes, or what the
//! Node-API module exports (`napi`), and the TypeScript side refuses to load a library whose
//! version differs from its own.

pub mod abi;
mod channel;
mod error;
mod napi;
mod segment;
mod sync;

pub use channel::*;
pub use error::*;
pub use segment::*;
pub use sync::*;

pub(crate) use error::{code_of, guard, status};

/// The version of this ABI; `sb_abi_version` returns it.
pub const SB_ABI_VERSION: u32 = 26;

/// The version of this ABI ([`SB_ABI_VERSION`]).
#[unsafe(no_mangle)]
pub extern "C" fn sb_abi_version() -> u32 {
    SB_ABI_VERSION
}
