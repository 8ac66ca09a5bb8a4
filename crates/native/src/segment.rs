//! Segment handles: open, duplicate, close, unlink.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use crate::napi::Report;
use crate::{code_of, guard, status};
use shared_buffer::segment::{Options, Segment, SegmentId, SizeMismatch};

/// `how` for [`sb_open_key`] / [`sb_open_name`]: open an existing segment.
pub const SB_OPEN: u32 = 0;
/// `how`: create a new segment; fail with `-EEXIST` if it exists.
pub const SB_CREATE: u32 = 1;
/// `how`: open the segment if it exists, else create it.
pub const SB_OPEN_OR_CREATE: u32 = 2;
/// `flags` bit: fault every page in now.
pub const SB_POPULATE: u32 = 1;

/// What an open writes back. On `-EINVAL` from a size check, `len` holds the segment's actual
/// size; otherwise all fields are 0 after a failure.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SbMapping {
    /// The new handle (`1..=i32::MAX`).
    pub handle: u64,
    /// The address of the first byte.
    pub addr: u64,
    /// The number of bytes mapped.
    pub len: u64,
    /// 1 if this call created the segment, 0 if it opened an existing one.
    pub created: u64,
}

const _: () = assert!(std::mem::size_of::<SbMapping>() == 32);

/// One mapping of a segment into this process, shared by all the handles that reference it and
/// unmapped when the last one is closed.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) segment: Segment,
    /// The key or name it was opened under.
    pub(crate) id: SegmentId,
    /// Memory reported to a JavaScript engine as freed when this mapping goes (see `napi`).
    pub(crate) report: Mutex<Option<Report>>,
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if let Some(report) = self
            .report
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            report.mapping_gone();
        }
    }
}

/// A live handle: the mapping it references and a serial number that is never reused, so that
/// an owner can close "its" handle without closing a later handle that reuses the number.
struct Entry {
    serial: u64,
    mapping: Arc<Mapped>,
}

/// Live handles. Each holds one reference to its segment's mapping.
struct Handles {
    next: i32,
    next_serial: u64,
    live: HashMap<i32, Entry>,
}

static HANDLES: LazyLock<Mutex<Handles>> = LazyLock::new(|| {
    Mutex::new(Handles {
        next: 1,
        next_serial: 1,
        live: HashMap::new(),
    })
});

fn handles() -> MutexGuard<'static, Handles> {
    // A panic while holding the lock cannot leave the map half-updated (each update is one
    // insert or remove), so a poisoned lock is still consistent.
    HANDLES.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Handles {
    fn insert(&mut self, mapping: Arc<Mapped>) -> i32 {
        let serial = self.next_serial;
        self.next_serial += 1;
        loop {
            let id = self.next;
            self.next = if id == i32::MAX { 1 } else { id + 1 };
            if let std::collections::hash_map::Entry::Vacant(slot) = self.live.entry(id) {
                slot.insert(Entry { serial, mapping });
                return id;
            }
        }
    }
}

/// The mapping `handle` references and the handle's serial number, if it is live.
pub(crate) fn lookup(handle: i32) -> Option<(Arc<Mapped>, u64)> {
    handles()
        .live
        .get(&handle)
        .map(|entry| (entry.mapping.clone(), entry.serial))
}

/// Every live mapping opened under `id`.
pub(crate) fn mappings_of(id: &SegmentId) -> Vec<Arc<Mapped>> {
    let handles = handles();
    let mut found: Vec<Arc<Mapped>> = Vec::new();
    for entry in handles.live.values() {
        if entry.mapping.id == *id && !found.iter().any(|m| Arc::ptr_eq(m, &entry.mapping)) {
            found.push(entry.mapping.clone());
        }
    }
    found
}

/// Closes `handle` if it is still the one numbered `serial`; returns whether it did.
pub(crate) fn close_owned(handle: i32, serial: u64) -> bool {
    let removed = {
        let mut handles = handles();
        match handles.live.get(&handle) {
            Some(entry) if entry.serial == serial => handles.live.remove(&handle),
            _ => None,
        }
    };
    // Unmapped (if this was the last reference) after the lock is released.
    removed.is_some()
}

/// Writes the result of an open to `out` and registers the handle.
///
/// # Safety
/// `out` must be null or valid for writing one [`SbMapping`].
unsafe fn finish(result: Result<(Segment, SegmentId), (i32, u64)>, out: *mut SbMapping) -> i32 {
    let (code, record) = match result {
        Ok((segment, id)) => {
            let record = SbMapping {
                handle: 0,
                addr: segment.as_ptr() as u64,
                len: segment.len() as u64,
                created: u64::from(segment.created()),
            };
            let handle = handles().insert(Arc::new(Mapped {
                segment,
                id,
                report: Mutex::new(None),
            }));
            (
                0,
                SbMapping {
                    handle: handle as u64,
                    ..record
                },
            )
        }
        Err((code, actual)) => (
            code,
            SbMapping {
                len: actual,
                ..SbMapping::default()
            },
        ),
    };
    if !out.is_null() {
        // SAFETY: the caller promises `out` is valid for one write.
        unsafe { out.write_unaligned(record) };
    } else if code == 0 {
        // Nobody can ever close a handle the caller did not receive.
        handles().live.remove(&(record.handle as i32));
        return -libc::EFAULT;
    }
    code
}

/// Opens or creates the keyed (System V) segment `key`.
///
/// `how` is [`SB_OPEN`], [`SB_CREATE`] or [`SB_OPEN_OR_CREATE`]; `size` is the size in bytes
/// (for [`SB_OPEN`], 0 means the whole segment); `flags` may hold [`SB_POPULATE`]; `mode` is the
/// permission bits of a segment this call creates.
///
/// # Safety
/// `out` must be null or valid for writing one [`SbMapping`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_open_key(
    key: u32,
    size: u64,
    how: u32,
    flags: u32,
    mode: u32,
    out: *mut SbMapping,
) -> i32 {
    guard(|| {
        let result = open_detailed(SegmentId::key(key), size, how, flags, mode);
        // SAFETY: forwarded from the caller.
        unsafe { finish(result, out) }
    })
}

/// Opens or creates the named (POSIX) segment whose UTF-8 name is `name[..name_len]`. The other
/// arguments are those of [`sb_open_key`].
///
/// # Safety
/// `name` must be valid for reading `name_len` bytes; `out` must be null or valid for writing one
/// [`SbMapping`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_open_name(
    name: *const u8,
    name_len: u32,
    size: u64,
    how: u32,
    flags: u32,
    mode: u32,
    out: *mut SbMapping,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let id = unsafe { parse_name(name, name_len as usize) };
        let result = open_detailed(id, size, how, flags, mode);
        // SAFETY: forwarded from the caller.
        unsafe { finish(result, out) }
    })
}

fn open_detailed(
    id: std::io::Result<SegmentId>,
    size: u64,
    how: u32,
    flags: u32,
    mode: u32,
) -> Result<(Segment, SegmentId), (i32, u64)> {
    let id = id.map_err(|e| (code_of(&e), 0))?;
    let size_usize = usize::try_from(size).map_err(|_| (-libc::EFBIG, 0))?;
    let options = Options {
        mode,
        populate: flags & SB_POPULATE != 0,
    };
    let made = match how {
        SB_OPEN => Segment::open(&id, (size_usize != 0).then_some(size_usize), &options),
        SB_CREATE => Segment::create(&id, size_usize, &options),
        SB_OPEN_OR_CREATE => Segment::open_or_create(&id, size_usize, &options),
        _ => return Err((-libc::EINVAL, 0)),
    };
    match made {
        Ok(segment) => Ok((segment, id)),
        Err(err) => {
            let actual = SizeMismatch::find(&err).map_or(0, |m| m.actual as u64);
            Err((code_of(&err), actual))
        }
    }
}

/// # Safety
/// `name` must be valid for reading `len` bytes (or `len` must be 0).
pub(crate) unsafe fn parse_name(name: *const u8, len: usize) -> std::io::Result<SegmentId> {
    if name.is_null() && len != 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EFAULT));
    }
    let bytes = if len == 0 {
        &[][..]
    } else {
        // SAFETY: non-null and valid for len bytes, as the caller promises.
        unsafe { std::slice::from_raw_parts(name, len) }
    };
    let text =
        std::str::from_utf8(bytes).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    SegmentId::name(text)
}

/// Removes the keyed segment `key` (it lives on until the last process detaches).
#[unsafe(no_mangle)]
pub extern "C" fn sb_unlink_key(key: u32) -> i32 {
    guard(|| {
        status(
            SegmentId::key(key)
                .and_then(|id| Segment::unlink(&id))
                .map(|()| 0),
        )
    })
}

/// Removes the named segment `name[..name_len]`.
///
/// # Safety
/// `name` must be valid for reading `name_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_unlink_name(name: *const u8, name_len: u32) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let id = unsafe { parse_name(name, name_len as usize) };
        status(id.and_then(|id| Segment::unlink(&id)).map(|()| 0))
    })
}

/// A new handle to the same mapping as `handle` (one more reference). Returns the new handle
/// (positive) or `-EBADF`.
#[unsafe(no_mangle)]
pub extern "C" fn sb_dup(handle: i32) -> i32 {
    guard(|| {
        let mut handles = handles();
        match handles.live.get(&handle).map(|entry| entry.mapping.clone()) {
            Some(mapping) => handles.insert(mapping),
            None => -libc::EBADF,
        }
    })
}

/// Closes `handle`. The mapping is unmapped when its last handle is closed. Returns `0`, or
/// `-EBADF` for an unknown or already closed handle.
#[unsafe(no_mangle)]
pub extern "C" fn sb_close(handle: i32) -> i32 {
    guard(|| {
        // Take the segment out under the lock, unmap after releasing it.
        let removed = handles().live.remove(&handle);
        match removed {
            Some(segment) => {
                drop(segment);
                0
            }
            None => -libc::EBADF,
        }
    })
}

/// A deallocator in the shape JavaScriptCore (Bun's `toArrayBuffer`) calls when an external
/// ArrayBuffer is collected or detached: `context` is the handle the buffer holds, which is
/// closed. The bytes pointer is unused.
#[unsafe(no_mangle)]
pub extern "C" fn sb_release(_bytes: *mut c_void, context: *mut c_void) {
    // An unknown handle here is ignored: a deallocator has nobody to report to.
    let _ = sb_close(context as usize as i32);
}

/// The address of [`sb_release`], for runtimes that take a deallocator as a function pointer.
#[unsafe(no_mangle)]
pub extern "C" fn sb_release_fn() -> *const c_void {
    sb_release as *const c_void
}

/// The number of live handles in this process (for leak checks in tests).
#[unsafe(no_mangle)]
pub extern "C" fn sb_handle_count() -> i32 {
    guard(|| i32::try_from(handles().live.len()).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_closes_only_the_handle_it_was_given() {
        let name = format!("/sb-owner-{}", std::process::id());
        let id = SegmentId::name(&name).unwrap();
        let _ = Segment::unlink(&id);
        let mut out = SbMapping::default();
        // SAFETY: the name is valid for its length and `out` for one write.
        let rc = unsafe {
            sb_open_name(
                name.as_ptr(),
                name.len() as u32,
                4096,
                SB_CREATE,
                0,
                0o600,
                &mut out,
            )
        };
        assert_eq!(rc, 0);
        let handle = out.handle as i32;
        let (_, serial) = lookup(handle).unwrap();
        assert!(
            !close_owned(handle, serial + 1),
            "another serial closes nothing"
        );
        assert!(lookup(handle).is_some());
        let dup = sb_dup(handle);
        let (_, dup_serial) = lookup(dup).unwrap();
        assert_ne!(serial, dup_serial, "every handle has its own serial");
        assert_eq!(mappings_of(&id).len(), 1, "two handles, one mapping");
        assert!(close_owned(handle, serial));
        assert!(!close_owned(handle, serial), "closed once only");
        assert_eq!(sb_close(handle), -libc::EBADF);
        assert_eq!(
            mappings_of(&id).len(),
            1,
            "the duplicate still holds the mapping"
        );
        assert_eq!(sb_close(dup), 0);
        assert!(mappings_of(&id).is_empty());
        Segment::unlink(&id).unwrap();
    }
}
