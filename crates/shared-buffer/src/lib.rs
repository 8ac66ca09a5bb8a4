//! Cross-process shared memory, wait/notify, a robust lock and channels: the Rust core of
//! shared-buffer.
//!
//! The crate has these layers, one folder or file each:
//!
//! - [`os`]: the only code that makes system calls, chosen by `cfg` (Unix here; other targets
//!   compile and report [`std::io::ErrorKind::Unsupported`]).
//! - [`Segment`] ([`segment`]): a mapped shared-memory segment, keyed (System V, the seed
//!   package's kind) or named (POSIX `shm_open`), with exclusive create, open, open-or-create and
//!   unlink.
//! - [`sync`] and [`channel`]: cross-process wait/notify, a robust lock, and message channels
//!   over segments.
//!
//! The C ABI that Deno, Bun and Node.js load is a separate crate, `shared-buffer-native`, built on
//! this one.
//!
//! # Examples
//!
//! ```
//! use shared_buffer::{Options, Segment, SegmentId};
//!
//! let id = SegmentId::name(&format!("/doc-example-{}", std::process::id()))?;
//! let writer = Segment::create(&id, 4096, &Options::default())?;
//! let reader = Segment::open(&id, None, &Options::default())?;
//! writer.atomic_u32(0).store(7, std::sync::atomic::Ordering::Release);
//! assert_eq!(reader.atomic_u32(0).load(std::sync::atomic::Ordering::Acquire), 7);
//! Segment::unlink(&id)?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod channel;
/// The operating-system calls the segments are made of, for this project's bindings: not part of
/// the API (use [`Segment`]), and free to change in any release.
#[doc(hidden)]
pub mod os;
pub mod segment;
pub mod sync;

pub use segment::{FileKind, Options, Owner, Segment, SegmentError, SegmentId, SizeMismatch};
