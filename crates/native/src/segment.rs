//! Segment handles: open, duplicate, close, unlink.

use std::collections::HashMap;
use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use crate::napi::Report;
use crate::{code_of, guard, status};
use shared_buffer::channel::layout::PID_GONE;
use shared_buffer::os::Identity;
use shared_buffer::segment::{FileKind, Options, Owner, Segment, SegmentError, SegmentId};

/// `how` for [`sb_open_key`] / [`sb_open_name`]: open an existing segment.
pub const SB_OPEN: u32 = 0;
/// `how`: create a new segment; fail with `-EEXIST` if it exists.
pub const SB_CREATE: u32 = 1;
/// `how`: open the segment if it exists, else create it.
pub const SB_OPEN_OR_CREATE: u32 = 2;
/// `flags` bit: fault every page in now.
pub const SB_POPULATE: u32 = 1;
/// `flags` bit, [`SB_CREATE`] only: remove a segment left under the key or name (if its owner is
/// accepted) and create a new one, instead of failing with `-EEXIST`.
pub const SB_REPLACE: u32 = 2;

/// `owner` argument of the open calls: accept segments of this process's effective user and of
/// root (the default).
pub const SB_OWNER_TRUSTED: i64 = -1;
/// `owner`: accept a segment of any user (the seed package's behaviour).
pub const SB_OWNER_ANY: i64 = -2;

/// What an open writes back. After a failure every field is 0 except: on `-EINVAL` from a size
/// check, and on `-ENOMEM` where an open found a keyed segment it could not map (whole, as keyed
/// segments are), `len` holds the segment's actual size; on [`SB_EOWNER`](crate::SB_EOWNER), `detail`
/// holds the owner's uid, with bit 32 set when the segment's mode keeps this user out too; on
/// [`SB_EFTYPE`](crate::SB_EFTYPE), `detail` says what is at the name (2 a FIFO, 3 a socket, 4 a
/// device, 5 another special file, 6 a file with other names too: hard links).
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
    /// More about a failure (see above); 0 on success.
    pub detail: u64,
    /// What tells this segment apart from another made later under its key or name: a System V id
    /// (bits 0-31) and its creator's pid (bits 32-63), then 0; or a file's device and inode. A
    /// binding keeps it, and removes the segment's key or name by it with [`sb_unlink_key_own`] or
    /// [`sb_unlink_name_own`], while the segment is open or after it is closed.
    pub identity: [u64; 2],
}

const _: () = assert!(std::mem::size_of::<SbMapping>() == 56);

/// One mapping of a segment into this process, shared by all the handles that reference it and
/// unmapped when the last one is closed.
#[derive(Debug)]
pub(crate) struct Mapped {
    /// Taken out only by the drop, which unmaps it or leaves a placeholder (see `retired`).
    pub(crate) segment: ManuallyDrop<Segment>,
    /// The key or name it was opened under.
    pub(crate) id: SegmentId,
    /// Memory reported to a JavaScript engine as freed when this mapping goes (see `napi`).
    pub(crate) report: Mutex<Option<Report>>,
    /// The channel endpoints' pid words that JavaScript of this process (any thread) claimed in
    /// this mapping and still holds, as (byte offset, pid): marked `PID_GONE` when the mapping
    /// goes (see `napi`'s `js_claim_endpoint`). Bun releases a terminated Worker's buffers, and
    /// so unmaps, before its Node-API environment's teardown; and an endpoint collected without
    /// `close()` (a main thread's too) can never detach: either way nothing of this process can
    /// reach the word after this, and peers take the endpoint for a dead one.
    pub(crate) claims: Mutex<Vec<(usize, u32)>>,
    /// What the buffers over this mapping that a close detached hold until the engine collects
    /// them (`napi`'s `retire`): if any is still alive when the mapping goes, its addresses stay
    /// reserved, as private memory, until the last of them is collected. Node.js's own native
    /// code keeps raw pointers into a buffer it works on (an `fs.read` or a `crypto.randomFill`
    /// on its thread pool), which a detach does not stop: unmapped under it, the write faulted
    /// (SIGSEGV) or landed in a segment mapped there next. Bounded ([`MAX_KEPT`]).
    pub(crate) retired: Mutex<Option<Arc<Retired>>>,
}

impl Mapped {
    /// Notes that the word at `offset` holds `pid` for an endpoint of this process, to be marked
    /// gone if this mapping goes first (see [`Mapped::claims`]).
    pub(crate) fn claim(&self, offset: usize, pid: u32) {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        claims.retain(|&(claimed, _)| claimed != offset);
        claims.push((offset, pid));
    }

    /// Forgets the claim of the word at `offset` (see [`Mapped::claims`]).
    pub(crate) fn unclaim(&self, offset: usize) {
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|&(claimed, _)| claimed != offset);
    }
}

/// The placeholder of a mapping that went while buffers closed over it were still alive (see
/// [`Mapped::retired`]): unmapped when the last of them and the mapping have let go of it.
#[derive(Debug, Default)]
pub(crate) struct Retired {
    placeholder: Mutex<Option<Kept>>,
}

/// At most this many placeholders at once, and at most this many bytes in all: past either, a
/// mapping goes as it did before them (unmapped at once). Each is a mapping of its own where
/// live mappings lie between them, and Node.js frees them only on a later turn of its event
/// loop: a synchronous loop of opens and closes that kept one more segment open at each turn
/// made one per turn and reached the kernel's limit on mappings (`vm.max_map_count`, 65,530 by
/// default) before the library's own guard, and the engine, out of mappings, aborted. A
/// placeholder is also kept as long as a typed array of the closed buffer is, and holds its
/// segment's length of address space.
const MAX_KEPT: usize = 1024;
const MAX_KEPT_BYTES: usize = 16 << 30;
/// The placeholders alive, and their bytes.
static KEPT: Mutex<(usize, usize)> = Mutex::new((0, 0));

/// A placeholder, counted in [`KEPT`] while it lives.
#[derive(Debug)]
struct Kept {
    /// Held for its drop, which unmaps it.
    _placeholder: shared_buffer::os::Placeholder,
    len: usize,
}

impl Kept {
    /// Replaces `segment` with a placeholder if there is room for one more; otherwise unmaps it.
    fn make(segment: Segment) -> Option<Self> {
        let len = segment.len();
        {
            let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.0 >= MAX_KEPT || kept.1.saturating_add(len) > MAX_KEPT_BYTES {
                drop(kept);
                drop(segment);
                return None;
            }
            kept.0 += 1;
            kept.1 += len;
        }
        match segment.into_placeholder() {
            Some(placeholder) => Some(Self {
                _placeholder: placeholder,
                len,
            }),
            None => {
                Self::uncount(len);
                None
            }
        }
    }

    fn uncount(len: usize) {
        let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
        kept.0 -= 1;
        kept.1 -= len;
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        Self::uncount(self.len);
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        for &(offset, pid) in self
            .claims
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = self.segment.atomic_u32(offset).compare_exchange(
                pid,
                pid | PID_GONE,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        if let Some(report) = self
            .report
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            report.mapping_gone();
        }
        let retired = self
            .retired
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // SAFETY: the only place the segment is taken out, and nothing reads it after this.
        let segment = unsafe { ManuallyDrop::take(&mut self.segment) };
        match retired {
            // A buffer closed over it is alive: keep the addresses until it is collected. (Its
            // holder may let go meanwhile; this one's reference then frees the placeholder.)
            Some(retired) if Arc::strong_count(&retired) > 1 => {
                if let Some(kept) = Kept::make(segment) {
                    *retired
                        .placeholder
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(kept);
                }
            }
            _ => drop(segment),
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

/// The mapping [`mapping_holding`] found last, looked at first: a channel's endpoints attach and
/// detach through one mapping, and the table may hold thousands of handles (views), which a scan
/// walks (an endpoint's attach and detach took 10 µs more at 10,000 handles).
static LAST_HOLDING: Mutex<Weak<Mapped>> = Mutex::new(Weak::new());

/// A live mapping of this process that holds the `len` bytes at `address`.
pub(crate) fn mapping_holding(address: u64, len: u64) -> Option<Arc<Mapped>> {
    let holds = |mapping: &Mapped| {
        let base = mapping.segment.as_ptr() as u64;
        let end = base + mapping.segment.len() as u64;
        address >= base && address.checked_add(len).is_some_and(|last| last <= end)
    };
    let mut last = LAST_HOLDING.lock().unwrap_or_else(PoisonError::into_inner);
    // Alive, it is still mapped (its drop unmaps it): no other mapping can hold these bytes.
    if let Some(mapping) = last.upgrade().filter(|mapping| holds(mapping)) {
        return Some(mapping);
    }
    let found = handles()
        .live
        .values()
        .find(|entry| holds(&entry.mapping))
        .map(|entry| entry.mapping.clone());
    if let Some(mapping) = &found {
        *last = Arc::downgrade(mapping);
    }
    found
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
unsafe fn finish(result: Result<(Segment, SegmentId), SegmentError>, out: *mut SbMapping) -> i32 {
    let (code, record) = match result {
        Ok((segment, id)) => {
            let record = SbMapping {
                handle: 0,
                addr: segment.as_ptr() as u64,
                len: segment.len() as u64,
                created: u64::from(segment.created()),
                detail: 0,
                identity: identity_words(segment.identity()),
            };
            let handle = handles().insert(Arc::new(Mapped {
                segment: ManuallyDrop::new(segment),
                id,
                report: Mutex::new(None),
                claims: Mutex::new(Vec::new()),
                retired: Mutex::new(None),
            }));
            (
                0,
                SbMapping {
                    handle: handle as u64,
                    ..record
                },
            )
        }
        Err(err) => (code_of(&err), failure_record(&err)),
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
/// (for [`SB_OPEN`], 0 means the whole segment); `flags` may hold [`SB_POPULATE`] and
/// [`SB_REPLACE`]; `mode` is the permission bits of a segment this call creates; `owner` is
/// [`SB_OWNER_TRUSTED`], [`SB_OWNER_ANY`], or a uid whose segments are accepted besides the
/// trusted ones.
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
    owner: i64,
    out: *mut SbMapping,
) -> i32 {
    guard(|| {
        let result = open_detailed(SegmentId::key(key), size, how, flags, mode, owner);
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
    owner: i64,
    out: *mut SbMapping,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let id = unsafe { parse_name(name, name_len as usize) };
        let result = open_detailed(id, size, how, flags, mode, owner);
        // SAFETY: forwarded from the caller.
        unsafe { finish(result, out) }
    })
}

/// The record written back after a failure.
fn failure_record(err: &SegmentError) -> SbMapping {
    let mut record = SbMapping::default();
    match err {
        SegmentError::SizeMismatch(m) => record.len = m.actual as u64,
        SegmentError::TooLargeToMap { size, .. } | SegmentError::NoRoomToMap { size } => {
            record.len = *size as u64;
        }
        // Bit 32: its mode keeps this user out too.
        SegmentError::ForeignOwner { uid, shut_out } => {
            record.detail = u64::from(*uid) | u64::from(*shut_out) << 32;
        }
        SegmentError::NotASegment(kind) => {
            record.detail = match kind {
                FileKind::Directory => 1,
                FileKind::Fifo => 2,
                FileKind::Socket => 3,
                FileKind::Device => 4,
                _ => 5,
            }
        }
        SegmentError::HardLinked { .. } => record.detail = 6,
        _ => {}
    }
    record
}

fn open_detailed(
    id: Result<SegmentId, SegmentError>,
    size: u64,
    how: u32,
    flags: u32,
    mode: u32,
    owner: i64,
) -> Result<(Segment, SegmentId), SegmentError> {
    let id = id?;
    let size = usize::try_from(size)
        .map_err(|_| SegmentError::Os(std::io::Error::from_raw_os_error(libc::EFBIG)))?;
    let owner = match owner {
        SB_OWNER_TRUSTED => Owner::Trusted,
        SB_OWNER_ANY => Owner::Any,
        uid => Owner::Uid(u32::try_from(uid).map_err(|_| {
            SegmentError::Invalid("owner must be a uid, SB_OWNER_TRUSTED or SB_OWNER_ANY")
        })?),
    };
    if flags & !(SB_POPULATE | SB_REPLACE) != 0 {
        return Err(SegmentError::Invalid("unknown flags"));
    }
    let options = Options {
        mode,
        populate: flags & SB_POPULATE != 0,
        owner,
        replace: flags & SB_REPLACE != 0,
    };
    let made = match how {
        SB_OPEN => Segment::open(&id, (size != 0).then_some(size), &options),
        SB_CREATE => Segment::create(&id, size, &options),
        SB_OPEN_OR_CREATE if !options.replace => Segment::open_or_create(&id, size, &options),
        SB_OPEN_OR_CREATE => Err(SegmentError::Invalid(
            "SB_REPLACE works with SB_CREATE only",
        )),
        _ => Err(SegmentError::Invalid(
            "how must be SB_OPEN, SB_CREATE or SB_OPEN_OR_CREATE",
        )),
    };
    made.map(|segment| (segment, id))
}

/// # Safety
/// `name` must be valid for reading `len` bytes (or `len` must be 0).
pub(crate) unsafe fn parse_name(name: *const u8, len: usize) -> Result<SegmentId, SegmentError> {
    if name.is_null() && len != 0 {
        return Err(SegmentError::Os(std::io::Error::from_raw_os_error(
            libc::EFAULT,
        )));
    }
    let bytes = if len == 0 {
        &[][..]
    } else {
        // SAFETY: non-null and valid for len bytes, as the caller promises.
        unsafe { std::slice::from_raw_parts(name, len) }
    };
    let text =
        std::str::from_utf8(bytes).map_err(|_| SegmentError::Invalid("name is not UTF-8"))?;
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

/// [`SbMapping::identity`] of `identity`.
pub(crate) fn identity_words(identity: Identity) -> [u64; 2] {
    match identity {
        // The id as a u32 (ids are never negative), its creator's pid above it.
        Identity::SysV { id, creator_pid } => {
            [u64::from(id as u32) | u64::from(creator_pid) << 32, 0]
        }
        Identity::File { dev, ino } => [dev, ino],
    }
}

/// Removes `id` if it still holds the segment whose [`identity_words`] are `words`.
pub(crate) fn unlink_identified(id: &SegmentId, words: [u64; 2]) -> Result<(), SegmentError> {
    let identity = match id {
        SegmentId::Key(_) => match i32::try_from(words[0] as u32) {
            Ok(id) if words[1] == 0 => Identity::SysV {
                id,
                creator_pid: (words[0] >> 32) as u32,
            },
            _ => return Err(SegmentError::NotFound), // no segment has it
        },
        SegmentId::Name(_) => Identity::File {
            dev: words[0],
            ino: words[1],
        },
    };
    Segment::unlink_identified(id, identity)
}

/// Reads the two words at `identity` (`EFAULT` for null, as a name's pointer).
///
/// # Safety
/// `identity` must be null or valid for reading two `u64`s.
unsafe fn read_identity(identity: *const u64) -> Result<[u64; 2], SegmentError> {
    if identity.is_null() {
        return Err(SegmentError::Os(std::io::Error::from_raw_os_error(
            libc::EFAULT,
        )));
    }
    // SAFETY: as the caller promises; unaligned, as a binding's buffer may not be 8-aligned.
    Ok(unsafe { [identity.read_unaligned(), identity.add(1).read_unaligned()] })
}

/// Removes the keyed segment `key` if it is still the segment whose [`SbMapping::identity`] is at
/// `identity`, open here or not (another process may have replaced it since, or removed it): 0,
/// `-ENOENT` if the key holds another segment now, or none.
///
/// # Safety
/// `identity` must be null (`-EFAULT`) or valid for reading two `u64`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_unlink_key_own(key: u32, identity: *const u64) -> i32 {
    guard(|| {
        let id = SegmentId::key(key);
        // SAFETY: forwarded from the caller.
        let words = unsafe { read_identity(identity) };
        status(
            words
                .and_then(|words| unlink_identified(&id?, words))
                .map(|()| 0),
        )
    })
}

/// Removes the named segment `name[..name_len]` if it is still the segment whose
/// [`SbMapping::identity`] is at `identity`: 0, `-ENOENT` if the name holds another segment now,
/// or none.
///
/// # Safety
/// `name` must be valid for reading `name_len` bytes, `identity` null (`-EFAULT`) or valid for
/// reading two `u64`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_unlink_name_own(
    name: *const u8,
    name_len: u32,
    identity: *const u64,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let id = unsafe { parse_name(name, name_len as usize) };
        // SAFETY: forwarded from the caller.
        let words = unsafe { read_identity(identity) };
        status(id.and_then(|id| unlink_identified(&id, words?)).map(|()| 0))
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

/// Closes `handle`. The mapping is unmapped when its last handle is closed. Returns `0`,
/// `-EBADF` for an unknown or already closed handle, or `-EBUSY` (the handle stays open) when
/// this is the mapping's last handle and a live thread of this process holds a lock inside it:
/// unmapping would leave that lock held in the segment with no way to unlock it from here.
/// Unmapping ends the pending [`crate::sync::sb_wait_async`] waits on the mapping's words first
/// (each callback called once with `-EBADF`, on a thread the library starts for them: not this
/// one, which may hold what a callback takes, or run inside Bun's collector).
#[unsafe(no_mangle)]
pub extern "C" fn sb_close(handle: i32) -> i32 {
    guard(|| close(handle, false))
}

/// Closes `handle`; unless `force`, refuses (`-EBUSY`) to unmap memory in which this process
/// holds a lock.
pub(crate) fn close(handle: i32, force: bool) -> i32 {
    // Take the segment out under the lock, unmap after releasing it.
    let removed = {
        let mut handles = handles();
        match handles.live.get(&handle) {
            None => return -libc::EBADF,
            Some(Entry { mapping, .. })
                if !force
                    && Arc::strong_count(mapping) == 1
                    // SAFETY: the mapping is live while its entry is in the table, and the
                    // table's lock is held.
                    && unsafe {
                        shared_buffer::sync::held_in_mapped(
                            mapping.segment.as_ptr() as usize,
                            mapping.segment.len(),
                        )
                    } > 0 =>
            {
                return -libc::EBUSY;
            }
            Some(_) => handles.live.remove(&handle),
        }
    };
    drop(removed);
    0
}

/// [`shared_buffer::sync::held_in`] over the `len` bytes from `addr`, counting only the locks
/// whose owner words name their threads ([`shared_buffer::sync::held_in_mapped`]) where a live
/// handle maps them all; the plain count elsewhere. Cheap when nothing is held there.
pub(crate) fn held_in(addr: usize, len: usize) -> usize {
    if shared_buffer::sync::held_in(addr, len) == 0 {
        return 0;
    }
    let handles = handles();
    let end = addr.saturating_add(len);
    let containing = handles.live.values().find(|entry| {
        let base = entry.mapping.segment.as_ptr() as usize;
        addr >= base && end <= base + entry.mapping.segment.len()
    });
    match containing {
        // SAFETY: the range lies inside a live handle's mapping, which stays mapped while the
        // table's lock is held.
        Some(_) => unsafe { shared_buffer::sync::held_in_mapped(addr, len) },
        None => shared_buffer::sync::held_in(addr, len),
    }
}

/// A deallocator in the shape JavaScriptCore (Bun's `toArrayBuffer`) calls when an external
/// ArrayBuffer is collected or detached: `context` is the handle the buffer holds, which is
/// closed. The bytes pointer is unused. It cannot refuse: if this process still holds a lock in
/// the mapping, the lock stays held in the segment until the holding thread ends (nothing in
/// this process keeps pointing at the freed memory).
#[unsafe(no_mangle)]
pub extern "C" fn sb_release(_bytes: *mut c_void, context: *mut c_void) {
    // An unknown handle here is ignored: a deallocator has nobody to report to.
    let _ = guard(|| close(context as usize as i32, true));
}

/// The address of [`sb_release`], for runtimes that take a deallocator as a function pointer.
#[unsafe(no_mangle)]
pub extern "C" fn sb_release_fn() -> *const c_void {
    sb_release as *const c_void
}

/// The address of `bytes`, as given: what Deno passes for a typed array as a `"buffer"` is the
/// address of its first byte, which its own `Deno.UnsafePointer` would tell only with `--allow-ffi`
/// unscoped (the library's path alone is enough for this call). Nothing is read or written.
#[unsafe(no_mangle)]
pub extern "C" fn sb_address_of(bytes: *const u8) -> usize {
    bytes as usize
}

/// The number of live handles in this process (for leak checks in tests).
#[unsafe(no_mangle)]
pub extern "C" fn sb_handle_count() -> i32 {
    guard(|| i32::try_from(open_handles()).unwrap_or(i32::MAX))
}

/// How many handles are open in this process.
pub(crate) fn open_handles() -> usize {
    handles().live.len()
}

/// Writes the login name of user `uid` (UTF-8, no NUL) into `buf[..len]` and returns its length
/// in bytes, which may exceed `len` (then only `len` bytes were written: call again with a larger
/// buffer); `-ENOENT` if the user database has no such user.
///
/// # Safety
/// `buf` must be valid for writing `len` bytes (or `len` must be 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sb_user_name(uid: u32, buf: *mut u8, len: u32) -> i32 {
    guard(|| {
        let Some(name) = shared_buffer::os::user_name(uid) else {
            return -libc::ENOENT;
        };
        let n = name.len().min(len as usize);
        if n > 0 && !buf.is_null() {
            // SAFETY: the caller promises `buf` is valid for `len` >= n bytes; the source is a
            // distinct Rust string.
            unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), buf, n) };
        }
        i32::try_from(name.len()).unwrap_or(i32::MAX)
    })
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
                SB_OWNER_TRUSTED,
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
