//! The Node-API module: ArrayBuffers over segments that the JavaScript engine owns.
//!
//! The same library file is loaded twice in one process: through `Deno.dlopen` / `bun:ffi` for
//! the flat `sb_*` calls, and through `process.dlopen` (Node.js, Deno, Bun) as a Node-API module,
//! which registers [`napi_register_module_v1`]. Both loads are the same image, so they share the
//! handle table: a handle opened through `sb_open_name` can be given to [`wrap`] here.
//!
//! What it exports (all functions; errors are thrown as JavaScript errors, never panics):
//!
//! - `wrap(handle, address, length, group?)`: an external ArrayBuffer over `length` bytes at
//!   `address` (a BigInt), which must lie inside the mapping `handle` references. The buffer takes
//!   over `handle` (one reference to the mapping): its finalizer closes it when the engine
//!   collects the buffer, wherever the buffer was moved. Closing the handle earlier with
//!   `sb_close` is allowed; the finalizer then does nothing (each handle carries a serial number
//!   that is never reused, so a later handle with the same number is never closed by mistake).
//!   With `group`, an open handle (a `SharedMemory`'s own), the buffer is a view of that group:
//!   `takeViews(group)` hands it back. It is held by a weak Node-API reference, which, unlike a
//!   JavaScript `WeakRef`, does not keep it alive until the end of the job that made it.
//! - `takeViews(group)`: the views made with `group` (by its handle's serial number) that have
//!   not been collected, as an array, forgetting them: `close()` detaches those still attached.
//! - `retire(buffer, handle)`: closes `handle`, that of `buffer`, which a close has just detached
//!   (Node.js); if the mapping goes, its addresses stay reserved as private memory until the
//!   engine collects `buffer` (see [`Mapped::retired`]).
//! - `addFinalizer(object, handle)`: `object` takes over `handle`, closed (by serial number) when
//!   the engine finalizes the object; with `trackAll`, tracked like a buffer. For engines whose
//!   buffer finalizers wait for the event loop anyway (Node.js), a finalizer on the object is a
//!   cheaper owner than a private one-byte buffer.
//! - `trackAll()`: from now on the buffers `wrap` makes and the objects given to `addFinalizer`
//!   are tracked (see [`Tracked`]), not only views, once this process holds many handles or the
//!   mapping is not small ([`TRACK_FROM_HANDLES`]), and always in a Worker; Node.js's `relieve`
//!   needs them. Without it nothing but views costs a reference.
//! - `keepMovedAtEnd()`: for a Worker: at the environment's teardown, however it ends, keeps until
//!   the process ends the mappings of tracked buffers whose memory may have moved to another
//!   thread's buffer (see [`Sentinel`] and [`keep_moved`]), and closes the handles it opened that
//!   no object took over ([`Account::unowned`]).
//! - `unlinkKey(key)` / `unlinkName(name)`: `sb_unlink_*`, returning the
//!   same code, and after a successful unlink each mapping this process holds of that segment is
//!   reported to the engine with `napi_adjust_external_memory` as the memory its unmapping would
//!   free (its length). The report is taken back when the mapping goes. A mapping of a linked
//!   segment is never reported: unmapping it frees no memory.
//! - `unlinkKeyOwn(key, identity)` / `unlinkNameOwn(name, identity)`: `sb_unlink_*_own`, the
//!   same for the segment whose `SbMapping::identity` is `identity` (a BigUint64Array of 2), open
//!   here or closed since.
//! - `claimEndpoint(address, expected, pid)` / `unclaimEndpoint(address, pid)`: a channel
//!   endpoint attaching here stores `pid` in its pid word at `address` (a BigInt, inside a mapping
//!   of this process) if it holds `expected`, and the word is noted in the same call; detaching,
//!   clears it back to 0 and forgets the note, in one call too (a `terminate()` falls between two
//!   calls, never inside one). Both return what the word held. At the environment's teardown (a
//!   Worker that ends, `terminate()` included) each word still noted is marked with `PID_GONE`,
//!   so that peers take its endpoint for dead (see [`HeldEndpoint::mark_gone`]); so is each word
//!   noted in a mapping that goes (see [`Mapped::claims`]).
//! - `noteMainThread()`: this environment is a main thread's, whose teardown is its process's end
//!   (or, in Deno's test runner, the end of one test module's isolate): it marks nothing gone, and
//!   forgets its endpoints' notes ([`endpoints_left`]).
//! - `leaveEndpoints()`: forgets this environment's endpoints' notes now, without marking them
//!   (Node.js's `exit` event on the main thread, before it finalizes the buffers and so unmaps).
//!   A pid word left as it is dies with its process, which peers then report as the process's
//!   death, not as an endpoint gone without `close()` while its process lives on.
//! - `relieve()`: forces a full collection through the memory-pressure path (a huge report for a
//!   moment, taken back at once), for when creating a segment failed with `ENOSPC`.
//! - `forgetDetached()`: forgets the buffers `wrap` made here that are now detached or collected
//!   (see [`Tracked`]) and arms the next `relieve`, which then closes the handles of the buffers
//!   its collection collected; call it right before `relieve`. Returns how many are tracked.
//! - `reportedBytes()`: what this environment has reported and not yet taken back (for tests).
//! - `sentinels()`: how many [`Sentinel`]s of this process are not yet freed (for tests).
//! - `weakRef(object)` / `derefWeak(id)` / `dropWeak(id)`: a weak Node-API reference to `object`
//!   by a number: the object, or undefined once collected; deleted by `dropWeak`. Unlike a
//!   `WeakRef`, it does not keep its object alive until the end of the job that made it, so a
//!   synchronous loop that drops what it refers to lets the engine collect it at once.
//! - `abiVersion`: [`crate::SB_ABI_VERSION`].
//! - `releaseFn`: the address of this copy's [`crate::sb_release`], and `libraryFile`, the file
//!   it was loaded from (`dladdr`), where known: a `bun build --compile` program writes its
//!   library out once for `bun:ffi` and once for this module, and Bun, finding the two
//!   `sb_release`s at two addresses, opens its FFI again from this file, so that both are one
//!   library (see `ts/bun/backend.ts`).
//!
//! Finalizers may run on any thread (V8 may free a backing store on a background thread) and
//! after the environment that made the buffer is gone, so they call no Node-API function: they
//! close the handle, and a mapping that goes adds its report to its environment's `pending`
//! count, which the next call from that environment takes back with `napi_adjust_external_memory`.

mod calls;
pub mod sys;

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use shared_buffer::channel::layout::PID_GONE;
use shared_buffer::segment::{Segment, SegmentError, SegmentId};

use crate::segment::{Mapped, Retired, close_owned, lookup, mappings_of, open_handles};
use crate::{SB_ABI_VERSION, code_of, sb_error_name};
use sys::{Api, CallbackInfo, Env, OK, Value, api};

/// What one JavaScript environment has reported with `napi_adjust_external_memory`.
#[derive(Debug, Default)]
pub(crate) struct Account {
    /// Bytes reported and not yet taken back.
    outstanding: AtomicI64,
    /// Bytes whose mapping has gone, to take back on the environment's next call.
    pending: AtomicI64,
    /// How many times `relieve` has run.
    reliefs: AtomicI64,
    /// The buffers `wrap` made here, weakly; used on the environment's own thread only.
    tracked: Mutex<Tracked>,
    /// Set by `trackAll`: every buffer is tracked, not only views.
    track_all: AtomicBool,
    /// Set by `keepMovedAtEnd`: `wrap` keeps a [`Sentinel`] newer than every buffer it made.
    watch_end: AtomicBool,
    /// The current sentinel: its strong `napi_ref` and its state, as addresses; used on the
    /// environment's own thread only.
    sentinel: Mutex<Option<(usize, usize)>>,
    /// Set by `keepMovedAtEnd` and by `noteUnowned` (Bun's Workers, whose buffers are made by
    /// `bun:ffi`): `openKey`, `openName` and `dup` note the handles they open in `unowned`.
    notes_unowned: AtomicBool,
    /// With `notes_unowned`: the handles this environment opened (`openKey`, `openName`, `dup`) that
    /// no object owns yet, by handle and serial: a Worker terminated between an open and the
    /// `wrap` or `addFinalizer` that hands the handle over would leave it open for good, so the
    /// teardown closes them ([`sentinel_gone`]).
    unowned: Mutex<Vec<(i32, u64)>>,
    /// The weak references `weakRef` made, by id (a `napi_ref` as an address); used on the
    /// environment's own thread only.
    weak: Mutex<Weak>,
    /// The pid words of the channel endpoints JavaScript here holds (`claimEndpoint`): marked as
    /// gone at the environment's teardown if still held (see [`HeldEndpoint::mark_gone`]).
    endpoints: Mutex<Endpoints>,
    /// Set by `noteMainThread`: a main thread's, whose teardown is its process's end; it leaves
    /// the endpoints still noted here as they are, to die with the process.
    main: AtomicBool,
    /// Set by `leaveEndpoints`: the process is ending; claims made here after it are not noted
    /// (a Node.js `exit` listener that attaches an endpoint after the library's).
    left: AtomicBool,
}

/// The pid words of the channel endpoints an environment holds, by address.
#[derive(Debug, Default)]
struct Endpoints {
    by_address: HashMap<u64, HeldEndpoint>,
    /// How many entries the table may hold before those of unmapped mappings are dropped.
    prune_at: usize,
}

/// A channel endpoint's pid word in a mapping, held weakly: an endpoint dropped without closing
/// it (collected) must not keep its mapping, nor its memory, until the environment ends.
#[derive(Debug)]
struct HeldEndpoint {
    mapping: std::sync::Weak<Mapped>,
    /// The word's byte offset in the mapping (4-aligned, inside it).
    offset: usize,
    /// The pid the endpoint stored there.
    pid: u32,
}

impl HeldEndpoint {
    /// Marks the endpoint's pid word with `PID_GONE` if it still holds the endpoint's pid: its
    /// thread ended without closing it (a Worker's teardown, `terminate()` included, which runs
    /// no JavaScript), and peers then take it for dead, as a dead process's, instead of holding
    /// its place until the process exits. No JavaScript of the thread runs any more, and this
    /// runs on it: its stores to the ring come before this one.
    fn mark_gone(&self) {
        // Unmapped here: nothing of this process can reach the word.
        let Some(mapping) = self.mapping.upgrade() else {
            return;
        };
        let word = mapping.segment.atomic_u32(self.offset);
        let _ = word.compare_exchange(
            self.pid,
            self.pid | PID_GONE,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        // Marked: the mapping's own mark, when it goes, is not needed (and the word may be
        // another Worker's of this process by then, which holds the same pid).
        mapping.unclaim(self.offset);
    }
}

/// The weak references of `weakRef`, by a nonzero id that is not reused while it is held.
#[derive(Debug, Default)]
struct Weak {
    by_id: HashMap<u32, usize>,
    last: u32,
}

impl Account {
    /// The table of `weakRef`'s references (a panic elsewhere leaves it consistent: each change
    /// is one insert or remove).
    fn weak_refs(&self) -> MutexGuard<'_, Weak> {
        self.weak.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One buffer made by `wrap`: a weak reference to it (refcount 0) and the handle it owns.
#[derive(Debug)]
struct Watched {
    /// The `napi_ref`, as an address so that [`Account`] stays `Send`.
    reference: usize,
    handle: i32,
    serial: u64,
    /// The serial number of the handle whose `takeViews` hands it back; 0 for none.
    group: u64,
    /// Whether an empty reference means the object still owned `handle` when it was collected:
    /// true for an object given to `addFinalizer` (a plain object, never detached), false for a
    /// buffer, which may have moved its memory to another buffer first (`transfer()` in Node 21
    /// and newer; in Node 20 a byte stream's `enqueue` or a BYOB read, which detach it through
    /// Node's internals).
    owns_when_collected: bool,
}

/// The weak references of one environment to the buffers it made.
///
/// Node.js runs the finalizer of a collected external buffer only on a later turn of the event
/// loop, so a synchronous loop that drops buffers without `close()` never gets their mappings
/// back, even after a forced collection. V8 clears weak references during the collection itself,
/// so `relieve` reads them right after it forces one: a buffer whose reference is empty was
/// collected, and its handle is closed at once (by serial, so the finalizer that comes later
/// closes nothing). A buffer detached before it was collected may have handed its memory to
/// another buffer (`transfer()`), so `forgetDetached`, called just before `relieve`, forgets
/// every detached buffer (its finalizer runs when the memory is really released). A buffer's
/// reference found empty before that, emptied by an earlier collection, is ambiguous in the same
/// way and is forgotten too; an object that could not have been detached
/// ([`Watched::owns_when_collected`]) has its handle closed wherever its empty reference is seen.
/// `forgetDetached` is a call of its own because the values it reads must not live through the
/// collection, and a handle scope inside one call does not free them in every runtime (Deno). Any
/// `wrap` in between disarms `relieve`'s release.
#[derive(Debug, Default)]
struct Tracked {
    /// Buffers of no group (tracked for `relieve` only).
    entries: Vec<Watched>,
    /// Views, by group, so that `takeViews` finds a group's without a scan of everything.
    views: HashMap<u64, Vec<Watched>>,
    /// How many there are in `entries` and `views` together.
    count: usize,
    /// Length at which `wrap` next forgets collected and detached buffers (amortised: twice
    /// what was left after the last time).
    prune_at: usize,
    /// Set by `forgetDetached`, cleared by `wrap` and `relieve`: every buffer still tracked was
    /// attached (not detached) when last looked at.
    armed: bool,
    /// The handles of buffers forgotten because they were detached, and still open then: their
    /// memory may have moved to another buffer, perhaps of another thread, which [`keep_moved`]
    /// keeps mapped.
    moved: Vec<(i32, u64)>,
}

impl Tracked {
    fn push(&mut self, watched: Watched) {
        self.count += 1;
        if watched.group == 0 {
            self.entries.push(watched);
        } else {
            self.views.entry(watched.group).or_default().push(watched);
        }
    }

    /// Keeps the entries for which `keep` is true, in `entries` and in every group.
    fn retain(&mut self, mut keep: impl FnMut(&Watched) -> bool) {
        self.entries.retain(&mut keep);
        self.views.retain(|_, group| {
            group.retain(&mut keep);
            !group.is_empty()
        });
        self.count = self.entries.len() + self.views.values().map(Vec::len).sum::<usize>();
    }

    /// Removes and returns the entries of `group`.
    fn take_group(&mut self, group: u64) -> Vec<Watched> {
        let taken = self.views.remove(&group).unwrap_or_default();
        self.count -= taken.len();
        taken
    }
}

/// With `trackAll`, the fewest open handles at which `wrap` tracks every buffer (and
/// `addFinalizer` every object), and the fewest bytes of a mapping at which it tracks one below
/// that. Tracking serves the relief (`relieve` closes what its
/// collection collected), which matters only to a process that holds many mappings or much
/// memory in buffers dropped without `close()`: below both, a buffer costs no reference (in
/// Node.js about 0.5-1 us of the 12-13 us of an `open` + `.buffer` + `close()` of 4 KiB). A
/// relief then leaves at most 16 handles to their finalizers (a segment has two: its
/// `SharedMemory` and its `.buffer`), under 64 KiB each: 512 KiB of `/dev/shm` in all. (With 256
/// handles, a review's loop of 60 KiB segments in a 4 MiB `/dev/shm` got `ENOSPC` after 68.) In
/// a Worker (`keepMovedAtEnd`) every buffer is tracked: a moved one must be seen.
const TRACK_FROM_HANDLES: usize = 16;
const TRACK_FROM_BYTES: u64 = 64 << 10;

/// Whether `wrap` tracks a buffer of no group over `mapping`, and `addFinalizer` an object that
/// owns a handle of it.
fn tracks(account: &Account, mapping: &Mapped) -> bool {
    account.track_all.load(Ordering::Relaxed)
        && (mapping.segment.len() as u64 >= TRACK_FROM_BYTES
            || account.watch_end.load(Ordering::Relaxed)
            || open_handles() >= TRACK_FROM_HANDLES)
}

thread_local! {
    /// Whether the environment of this thread notes the handles it opens ([`note_unowned`]: a
    /// Node.js environment runs on one thread, a Worker on its own): [`opened`] and [`owned`] look here first, so that the
    /// opens and closes of a main thread do not look up their environment's account for nothing.
    static WATCHING_END: Cell<bool> = const { Cell::new(false) };
}

/// Notes handle `handle`, just opened by a call of this environment, as owned by no object yet
/// (in a Worker only: see [`Account::unowned`]).
///
/// # Safety
/// `env` is live and this runs on its thread.
pub(crate) unsafe fn opened(api: &Api, env: Env, handle: i32) {
    if !WATCHING_END.with(Cell::get) {
        return;
    }
    // SAFETY: forwarded.
    let Ok(account) = (unsafe { account(api, env) }) else {
        return;
    };
    // The thread may have run an environment that noted them before this one (a thread reused).
    if !account.notes_unowned.load(Ordering::Relaxed) {
        return;
    }
    if let Some((_, serial)) = lookup(handle) {
        account
            .unowned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((handle, serial));
    }
}

/// Forgets handle `handle` among the unowned ones: an object took it over, or it was closed.
///
/// # Safety
/// `env` is live and this runs on its thread.
pub(crate) unsafe fn owned(api: &Api, env: Env, handle: i32) {
    if !WATCHING_END.with(Cell::get) {
        return;
    }
    // SAFETY: forwarded.
    if let Ok(account) = unsafe { account(api, env) } {
        settle_owned(&account, handle);
    }
}

/// Has this environment's opens note the handles no object owns yet, from now on (it runs on
/// this thread: see [`WATCHING_END`]).
fn note_unowned(account: &Account) {
    account.notes_unowned.store(true, Ordering::Relaxed);
    WATCHING_END.with(|watching| watching.set(true));
}

/// [`owned`], given the account.
fn settle_owned(account: &Account, handle: i32) {
    if account.notes_unowned.load(Ordering::Relaxed) {
        account
            .unowned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|&(open, _)| open != handle);
    }
}

/// The fewest entries at which `wrap` prunes.
const PRUNE_MIN: usize = 64;

/// A mapping's report: to whom, and how much.
#[derive(Debug)]
pub(crate) struct Report {
    account: Arc<Account>,
    bytes: i64,
}

impl Report {
    /// Called when the mapping is unmapped, on whatever thread that happens.
    pub(crate) fn mapping_gone(self) {
        self.account
            .pending
            .fetch_add(self.bytes, Ordering::Relaxed);
    }
}

/// What a finalizer needs to close the handle its object owns.
struct Owner {
    handle: i32,
    serial: u64,
}

/// An error to throw into JavaScript.
enum Thrown {
    Type(String),
    Range(String),
    /// An `Error` whose `code` is the symbolic name of a native code.
    Code(i32, String),
    /// A Node-API call failed; an exception may already be pending.
    Status(&'static str, sys::Status),
}

type Outcome = Result<Value, Thrown>;

fn check(status: sys::Status, what: &'static str) -> Result<(), Thrown> {
    if status == OK {
        Ok(())
    } else {
        Err(Thrown::Status(what, status))
    }
}

/// The exported module: called once per environment that loads the library with
/// `process.dlopen` (or `require`).
///
/// # Safety
/// Called by the runtime with a live `env` and its `exports` object.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn napi_register_module_v1(env: Env, exports: Value) -> Value {
    let registered = panic::catch_unwind(AssertUnwindSafe(|| {
        // Without the runtime's Node-API functions nothing can be exported; the JavaScript side
        // finds `abiVersion` missing and says so.
        let Ok(api) = api() else { return };
        // SAFETY: env and exports come from the runtime for this call.
        if let Err(thrown) = unsafe { register(api, env, exports) } {
            // SAFETY: as above.
            unsafe { throw(api, env, thrown) };
        }
    }));
    if registered.is_err() {
        return ptr::null_mut();
    }
    exports
}

/// # Safety
/// `env` and `exports` are live for this call.
unsafe fn register(api: &Api, env: Env, exports: Value) -> Result<(), Thrown> {
    // SAFETY: env is live.
    unsafe { account(api, env)? };
    let functions: [(&CStr, sys::Callback); 24] = [
        (c"wrap", js_wrap),
        (c"retire", js_retire),
        (c"keepMovedAtEnd", js_keep_moved_at_end),
        (c"noteUnowned", js_note_unowned),
        (c"noteMainThread", js_note_main_thread),
        (c"leaveEndpoints", js_leave_endpoints),
        (c"handedOver", js_handed_over),
        (c"takeViews", js_take_views),
        (c"addFinalizer", js_add_finalizer),
        (c"trackAll", js_track_all),
        (c"relieve", js_relieve),
        (c"forgetDetached", js_forget_detached),
        (c"unlinkKey", js_unlink_key),
        (c"unlinkName", js_unlink_name),
        (c"unlinkKeyOwn", js_unlink_key_own),
        (c"unlinkNameOwn", js_unlink_name_own),
        (c"reportedBytes", js_reported_bytes),
        (c"sentinels", js_sentinels),
        (c"owners", js_owners),
        (c"weakRef", js_weak_ref),
        (c"claimEndpoint", js_claim_endpoint),
        (c"unclaimEndpoint", js_unclaim_endpoint),
        (c"derefWeak", js_deref_weak),
        (c"dropWeak", js_drop_weak),
    ];
    // SAFETY: env and exports are live for this call.
    unsafe { calls::register(api, env, exports) }
        .map_err(|(what, status)| Thrown::Status(what, status))?;
    for (name, callback) in functions {
        let mut function = ptr::null_mut();
        check(
            // SAFETY: name is NUL-terminated (length from to_bytes), callback has the napi_callback
            // signature, and `function` is a valid out-pointer.
            unsafe {
                (api.create_function)(
                    env,
                    name.as_ptr(),
                    name.to_bytes().len(),
                    callback,
                    ptr::null_mut(),
                    &mut function,
                )
            },
            "napi_create_function",
        )?;
        check(
            // SAFETY: exports is an object of this env, name is NUL-terminated.
            unsafe { (api.set_named_property)(env, exports, name.as_ptr(), function) },
            "napi_set_named_property",
        )?;
    }
    let mut version = ptr::null_mut();
    check(
        // SAFETY: valid out-pointer.
        unsafe { (api.create_uint32)(env, SB_ABI_VERSION, &mut version) },
        "napi_create_uint32",
    )?;
    check(
        // SAFETY: exports is an object of this env, the name is NUL-terminated.
        unsafe { (api.set_named_property)(env, exports, c"abiVersion".as_ptr(), version) },
        "napi_set_named_property",
    )?;
    // An address of user space (under 2^47 on x86-64 and arm64 Linux and macOS) is exact as a
    // double.
    let mut release = ptr::null_mut();
    check(
        // SAFETY: valid out-pointer.
        unsafe { (api.create_double)(env, crate::sb_release_fn() as usize as f64, &mut release) },
        "napi_create_double",
    )?;
    check(
        // SAFETY: as above.
        unsafe { (api.set_named_property)(env, exports, c"releaseFn".as_ptr(), release) },
        "napi_set_named_property",
    )?;
    // SAFETY: an all-zero `Dl_info` is a valid value (null pointers) for dladdr to fill.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: the address is a function of this library; `info` is a valid out-pointer.
    let found = unsafe { libc::dladdr(crate::sb_release_fn(), &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Ok(());
    }
    // SAFETY: dladdr filled in a NUL-terminated path, which lives while the library is loaded.
    let file = unsafe { CStr::from_ptr(info.dli_fname) };
    let mut value = ptr::null_mut();
    check(
        // SAFETY: the pointer and length are the path's own bytes; valid out-pointer.
        unsafe { (api.create_string_utf8)(env, file.as_ptr(), file.to_bytes().len(), &mut value) },
        "napi_create_string_utf8",
    )?;
    check(
        // SAFETY: as above.
        unsafe { (api.set_named_property)(env, exports, c"libraryFile".as_ptr(), value) },
        "napi_set_named_property",
    )
}

/// This environment's [`Account`], made on first use and freed with the environment.
///
/// # Safety
/// `env` is live and this runs on its thread.
unsafe fn account(api: &Api, env: Env) -> Result<Arc<Account>, Thrown> {
    let mut data: *mut c_void = ptr::null_mut();
    check(
        // SAFETY: valid out-pointer.
        unsafe { (api.get_instance_data)(env, &mut data) },
        "napi_get_instance_data",
    )?;
    if !data.is_null() {
        // SAFETY: only this module sets this environment's instance data, always to a
        // `Box<Arc<Account>>`, which lives until `drop_account`.
        return Ok(unsafe { &*data.cast::<Arc<Account>>() }.clone());
    }
    let account = Arc::new(Account::default());
    let boxed = Box::into_raw(Box::new(account.clone()));
    // SAFETY: `boxed` is handed to the runtime, which calls `drop_account` with it once.
    let status =
        unsafe { (api.set_instance_data)(env, boxed.cast(), drop_account, ptr::null_mut()) };
    if status != OK {
        // SAFETY: the runtime did not take `boxed`; it came from Box::into_raw above.
        drop(unsafe { Box::from_raw(boxed) });
        check(status, "napi_set_instance_data")?;
    }
    Ok(account)
}

/// The environment's teardown (its instance data's finalizer): marks the channel endpoints still
/// held as gone (where the [`Sentinel`] did not, first), closes the handles that no object took
/// over, then lets the account go. No output here: a Worker's standard streams may be gone.
unsafe extern "C" fn drop_account(_env: Env, data: *mut c_void, _hint: *mut c_void) {
    let _ = panic::catch_unwind(|| {
        // SAFETY: `data` is the `Box<Arc<Account>>` given to napi_set_instance_data.
        let account = unsafe { Box::from_raw(data.cast::<Arc<Account>>()) };
        if account.main.load(Ordering::Relaxed) {
            endpoints_left(&account);
        }
        endpoints_gone(&account);
        // Opened and owned by no object (Bun's Workers; in Node.js the sentinel took them
        // first): closed by serial, so a handle its buffer's deallocator closed is left alone.
        let unowned = std::mem::take(
            &mut *account
                .unowned
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (handle, serial) in unowned {
            close_owned(handle, serial);
        }
    });
}

/// Marks the channel endpoints still held here as gone ([`HeldEndpoint::mark_gone`]) and forgets
/// them: the environment is being torn down. Those whose mapping went first are left as they
/// are (Node.js finalizes a Worker's buffers before its instance data; its [`Sentinel`]'s
/// finalizer, which runs before theirs, calls this first).
fn endpoints_gone(account: &Account) {
    for endpoint in take_endpoints(account).values() {
        endpoint.mark_gone();
    }
}

/// Forgets the channel endpoints still held here, in this account and in their mappings, without
/// marking them: a main thread's end, the end of its process, whose pid then dies with it
/// (Node.js finalizes the buffers after its `exit` event, and Deno unmaps the mappings after
/// the teardown, which would mark them).
fn endpoints_left(account: &Account) {
    for endpoint in take_endpoints(account).values() {
        if let Some(mapping) = endpoint.mapping.upgrade() {
            mapping.unclaim(endpoint.offset);
        }
    }
}

/// The channel endpoints noted in `account`, taken out of its table.
fn take_endpoints(account: &Account) -> HashMap<u64, HeldEndpoint> {
    std::mem::take(
        &mut account
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_address,
    )
}

/// Takes back what mappings that have gone had reported.
///
/// # Safety
/// `env` is live and this runs on its thread.
unsafe fn settle(api: &Api, env: Env, account: &Account) -> Result<(), Thrown> {
    let gone = account.pending.swap(0, Ordering::Relaxed);
    if gone != 0 {
        account.outstanding.fetch_sub(gone, Ordering::Relaxed);
        let mut total = 0;
        check(
            // SAFETY: valid out-pointer.
            unsafe { (api.adjust_external_memory)(env, -gone, &mut total) },
            "napi_adjust_external_memory",
        )?;
    }
    Ok(())
}

/// The first `N` arguments of a call (`undefined` for those not passed), how many were passed,
/// and the data pointer the function was made with.
///
/// # Safety
/// `env` and `info` come from the runtime for this call.
unsafe fn arguments<const N: usize>(
    api: &Api,
    env: Env,
    info: CallbackInfo,
) -> Result<([Value; N], usize, *mut c_void), Thrown> {
    let mut argc = N;
    let mut argv = [ptr::null_mut(); N];
    let mut data = ptr::null_mut();
    check(
        // SAFETY: argv has room for argc values; the other out-pointers are valid or null.
        unsafe {
            (api.get_cb_info)(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                &mut data,
            )
        },
        "napi_get_cb_info",
    )?;
    Ok((argv, argc, data))
}

/// Runs a JavaScript-facing function: reads `N` arguments, settles the account, runs `body`, and
/// turns its error (or a panic) into a thrown JavaScript error.
///
/// # Safety
/// `env` and `info` come from the runtime for this call.
unsafe fn call<const N: usize>(
    env: Env,
    info: CallbackInfo,
    body: impl FnOnce(&Api, &Arc<Account>, [Value; N]) -> Outcome,
) -> Value {
    // SAFETY: forwarded.
    unsafe { call_with(env, info, N, body) }
}

/// [`call`], of which only the first `required` arguments must be passed (the others are null).
///
/// # Safety
/// `env` and `info` come from the runtime for this call.
unsafe fn call_with<const N: usize>(
    env: Env,
    info: CallbackInfo,
    required: usize,
    body: impl FnOnce(&Api, &Arc<Account>, [Value; N]) -> Outcome,
) -> Value {
    let Ok(api) = api() else {
        return ptr::null_mut();
    };
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded from the caller.
        let (argv, argc, _) = unsafe { arguments::<N>(api, env, info)? };
        if argc < required {
            return Err(Thrown::Type(format!(
                "expected {required} arguments, got {argc}"
            )));
        }
        // SAFETY: env is live and this is its thread.
        let account = unsafe { account(api, env)? };
        // SAFETY: as above.
        unsafe { settle(api, env, &account)? };
        body(api, &account, argv)
    }));
    let thrown = match outcome {
        Ok(Ok(value)) => return value,
        Ok(Err(thrown)) => thrown,
        Err(_) => Thrown::Code(
            crate::SB_EPANIC,
            "internal error in the native library (a panic was caught)".into(),
        ),
    };
    // SAFETY: env is live.
    unsafe { throw(api, env, thrown) };
    ptr::null_mut()
}

/// # Safety
/// `env` is live and this runs on its thread.
unsafe fn throw(api: &Api, env: Env, thrown: Thrown) {
    let text = |s: String| CString::new(s.replace('\0', " ")).unwrap_or_default();
    // The status of a throw is ignored: it fails only when an exception is already pending, which
    // is then the one JavaScript sees, and there is nobody else to report to.
    let _ = match thrown {
        // SAFETY: the strings are NUL-terminated and live for the call.
        Thrown::Type(msg) => unsafe {
            (api.throw_type_error)(env, ptr::null(), text(msg).as_ptr())
        },
        // SAFETY: the strings are NUL-terminated and live for the call.
        Thrown::Range(msg) => unsafe {
            (api.throw_range_error)(env, ptr::null(), text(msg).as_ptr())
        },
        // SAFETY: the strings are NUL-terminated and live for the call.
        Thrown::Code(code, msg) => unsafe {
            (api.throw_error)(env, sb_error_name(code), text(msg).as_ptr())
        },
        // A failed call may have left an exception pending; throwing again would fail too.
        Thrown::Status(_, sys::PENDING_EXCEPTION) => return,
        // SAFETY: the strings are NUL-terminated and live for the call.
        Thrown::Status(what, status) => unsafe {
            (api.throw_error)(
                env,
                ptr::null(),
                text(format!("{what} failed (napi_status {status})")).as_ptr(),
            )
        },
    };
}

/// `undefined`, to return.
fn undefined(api: &Api, env: Env) -> Outcome {
    let mut value = ptr::null_mut();
    check(
        // SAFETY: a valid out-pointer; env is live on this thread (every caller runs in a callback).
        unsafe { (api.get_undefined)(env, &mut value) },
        "napi_get_undefined",
    )?;
    Ok(value)
}

/// `n` as a JavaScript number, to return.
fn int_value(api: &Api, env: Env, n: i32) -> Outcome {
    let mut value = ptr::null_mut();
    check(
        // SAFETY: a valid out-pointer; env is live on this thread (every caller runs in a callback).
        unsafe { (api.create_int32)(env, n, &mut value) },
        "napi_create_int32",
    )?;
    Ok(value)
}

fn int32(api: &Api, env: Env, value: Value, what: &str) -> Result<i32, Thrown> {
    let mut out = 0;
    // SAFETY: value belongs to this call; valid out-pointer.
    let status = unsafe { (api.get_value_int32)(env, value, &mut out) };
    if status != OK {
        return Err(Thrown::Type(format!("{what} must be a number")));
    }
    Ok(out)
}

fn handle_arg(api: &Api, env: Env, value: Value) -> Result<(Arc<Mapped>, Owner), Thrown> {
    let handle = int32(api, env, value, "handle")?;
    match lookup(handle) {
        Some((mapping, serial)) => Ok((mapping, Owner { handle, serial })),
        None => Err(Thrown::Code(
            -libc::EBADF,
            format!("handle {handle} is not open (EBADF)"),
        )),
    }
}

/// The serial number of the group handle `value` (`undefined` or 0: none, 0).
fn group_arg(api: &Api, env: Env, value: Value) -> Result<u64, Thrown> {
    if value.is_null() {
        return Ok(0);
    }
    let mut kind = 0;
    // SAFETY: a value of this call; valid out-pointer.
    let status = unsafe { (api.type_of)(env, value, &mut kind) };
    if status == OK && kind == sys::UNDEFINED {
        return Ok(0);
    }
    match int32(api, env, value, "group")? {
        0 => Ok(0),
        handle => match lookup(handle) {
            Some((_, serial)) => Ok(serial),
            None => Err(Thrown::Code(
                -libc::EBADF,
                format!("group handle {handle} is not open (EBADF)"),
            )),
        },
    }
}

/// Whether `napi_create_external_arraybuffer` refused with `status` before it made anything, so
/// that the finalizer given to it will never run: Node.js's `NAPI_PREAMBLE` refuses so in a
/// Worker being terminated (an exception pending, or the environment unable to run JavaScript).
/// Deno's Node-API never returns these. (Bun may return `napi_pending_exception` after making
/// the buffer, its finalizer then still to come: its buffers are `bun:ffi`'s, never made here.)
fn refused_up_front(status: sys::Status) -> bool {
    status == sys::PENDING_EXCEPTION || status == sys::CANNOT_RUN_JS
}

/// How many finalizers' [`Owner`]s the engines hold, in every environment of the process (for
/// tests: none may be left once the environments that made them have ended).
static OWNERS: AtomicI64 = AtomicI64::new(0);

/// An [`Owner`] for a finalizer to take back ([`release_owner`]), counted in [`OWNERS`].
fn owner_hint(owner: Owner) -> *mut Owner {
    OWNERS.fetch_add(1, Ordering::Relaxed);
    Box::into_raw(Box::new(owner))
}

/// Frees an [`Owner`] of [`owner_hint`] that no engine took, without closing its handle.
///
/// # Safety
///
/// `hint` came from [`owner_hint`] and no engine holds it.
unsafe fn forget_owner_hint(hint: *mut Owner) {
    // SAFETY: the caller's guarantee.
    drop(unsafe { Box::from_raw(hint) });
    OWNERS.fetch_sub(1, Ordering::Relaxed);
}

/// Called by the engine when a buffer made by `wrap` releases its memory: it was collected, or
/// detached (`transfer(0)`, `napi_detach_arraybuffer`). Node.js calls it on a later turn of its
/// event loop, also for a detached buffer whose object is still alive (Node 20 and 26, checked),
/// which is why `retire` hangs a finalizer on the object itself. Calls no Node-API function.
unsafe extern "C" fn release_owner(_env: Env, _data: *mut c_void, hint: *mut c_void) {
    let _ = panic::catch_unwind(|| {
        // SAFETY: `hint` is the `Box<Owner>` given with the object, finalized exactly once.
        let owner = unsafe { Box::from_raw(hint.cast::<Owner>()) };
        OWNERS.fetch_sub(1, Ordering::Relaxed);
        close_owned(owner.handle, owner.serial);
    });
}

unsafe extern "C" fn js_wrap(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call_with(
            env,
            info,
            3,
            |api, account, [handle, address, length, group]: [Value; 4]| {
                let (mapping, owner) = handle_arg(api, env, handle)?;
                let group = group_arg(api, env, group)?;
                let mut start = 0u64;
                let mut lossless = false;
                // SAFETY: valid out-pointers.
                let status = (api.get_value_bigint_uint64)(env, address, &mut start, &mut lossless);
                if status != OK || !lossless {
                    return Err(Thrown::Type("address must be a BigInt in 0..2^64".into()));
                }
                let mut len = 0f64;
                let status = (api.get_value_double)(env, length, &mut len);
                if status != OK || !(len >= 1.0 && len.fract() == 0.0 && len <= isize::MAX as f64) {
                    return Err(Thrown::Type("length must be a positive integer".into()));
                }
                let len = len as u64;
                let base = mapping.segment.as_ptr() as u64;
                let end = base + mapping.segment.len() as u64;
                if start < base || start.checked_add(len).is_none_or(|last| last > end) {
                    return Err(Thrown::Range(format!(
                        "{len} bytes at {start:#x} are not inside the mapping of handle {}",
                        owner.handle
                    )));
                }
                let hint = owner_hint(owner);
                let mut buffer = ptr::null_mut();
                // SAFETY: [start, start+len) lies inside the mapping, which stays mapped while the
                // handle `hint` owns is open, and `release_owner` closes it exactly once when the
                // engine releases the buffer. Other processes may write these bytes at any time,
                // which JavaScript's memory model allows for an ArrayBuffer's contents.
                let status = (api.create_external_arraybuffer)(
                    env,
                    start as usize as *mut c_void,
                    len as usize,
                    release_owner,
                    hint.cast(),
                    &mut buffer,
                );
                if refused_up_front(status) {
                    // No finalizer will run. The handle stays open for the caller to close.
                    // SAFETY: `hint` came from `owner_hint` above and the engine did not take it.
                    forget_owner_hint(hint);
                    return Err(Thrown::Status("napi_create_external_arraybuffer", status));
                }
                if status != OK {
                    // Otherwise whether the finalizer ran is not known: Node.js 20 makes the
                    // buffer with `node::Buffer::New`, which calls it at once when it refuses the
                    // length (more than 4 GiB there), closing the handle and freeing `hint`; the
                    // other engines do not call it. Freeing `hint` here too was a double free
                    // that aborted the process, so it is left to the finalizer: where none runs,
                    // its 16 bytes leak, once per refused buffer, and the handle stays open (the
                    // caller closes it, by number: after the finalizer it is closed already).
                    return Err(Thrown::Status("napi_create_external_arraybuffer", status));
                }
                // SAFETY: env is live on this thread; `hint` is the engine's now, read only here
                // before any JavaScript runs again (the finalizer cannot run during this call).
                let (handle, serial) = ((*hint).handle, (*hint).serial);
                settle_owned(account, handle);
                if group != 0 || tracks(account, &mapping) {
                    // A buffer may be detached, its memory moved, before it is collected.
                    let owner = Owner { handle, serial };
                    track(api, env, account, buffer, owner, group, false)?;
                }
                if account.watch_end.load(Ordering::Relaxed) {
                    renew_sentinel(api, env, account)?;
                }
                Ok(buffer)
            },
        )
    }
}

unsafe extern "C" fn js_take_views(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, [group]: [Value; 1]| {
            let group = group_arg(api, env, group)?;
            let mut views = Vec::new();
            if group != 0 {
                let mut tracked = account
                    .tracked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for entry in tracked.take_group(group) {
                    let reference = entry.reference as *mut c_void;
                    let mut value = ptr::null_mut();
                    // SAFETY: a reference of this environment, not yet deleted; valid
                    // out-pointer. The value lives in this call's scope.
                    let status = (api.get_reference_value)(env, reference, &mut value);
                    if status == OK && !value.is_null() {
                        let mut detached = false;
                        // SAFETY: a live ArrayBuffer of this environment; valid out-pointer.
                        (api.is_detached_arraybuffer)(env, value, &mut detached);
                        if detached && is_open(entry.handle, entry.serial) {
                            // Moved: its finalizer owns the handle (see `keep_moved`).
                            tracked.moved.push((entry.handle, entry.serial));
                        }
                        views.push(value);
                    }
                    // SAFETY: as above; deleted once, and dropped from the list already.
                    (api.delete_reference)(env, reference);
                }
            }
            let mut array = ptr::null_mut();
            check(
                (api.create_array_with_length)(env, views.len(), &mut array),
                "napi_create_array_with_length",
            )?;
            for (index, view) in views.into_iter().enumerate() {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                // SAFETY: an array and a value of this call.
                check(
                    (api.set_element)(env, array, index, view),
                    "napi_set_element",
                )?;
            }
            Ok(array)
        })
    }
}

unsafe extern "C" fn js_add_finalizer(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, [object, handle]: [Value; 2]| {
            let (mapping, owner) = handle_arg(api, env, handle)?;
            let hint = owner_hint(owner);
            // SAFETY: `release_owner` takes back `hint` exactly once, when the engine finalizes
            // the object; it calls no Node-API function. No reference is asked for: one given
            // out here would own the finalizer (deleting it early cancels it in Node.js).
            let status = (api.add_finalizer)(
                env,
                object,
                ptr::null_mut(),
                release_owner,
                hint.cast(),
                ptr::null_mut(),
            );
            if status != OK {
                // The engine did not take the finalizer, so it will never run it.
                forget_owner_hint(hint);
                return Err(Thrown::Status("napi_add_finalizer", status));
            }
            // SAFETY: as in `js_wrap`: read before any JavaScript runs again.
            let (handle, serial) = ((*hint).handle, (*hint).serial);
            settle_owned(account, handle);
            if tracks(account, &mapping) {
                // A plain object cannot be detached: collected, it still owned the handle.
                track(api, env, account, object, Owner { handle, serial }, 0, true)?;
            }
            undefined(api, env)
        })
    }
}

/// `retire(buffer, handle)`: closes `handle`, the one of `buffer`, which a close has just
/// detached, as `close` would; but until the engine collects the buffer, the mapping's addresses
/// stay reserved if it goes ([`Mapped::retired`]). A handle closed already is left alone. The
/// buffer's own finalizer cannot stand in for the one added here: Node.js runs it once the detach
/// released the memory, while a pending `fs.read` still holds the object (keeping the handle
/// open for it instead, the read failed with `EFAULT`: the placeholder went with the handle).
unsafe extern "C" fn js_retire(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, _account, [buffer, handle]: [Value; 2]| {
            let handle = int32(api, env, handle, "handle")?;
            let Some((mapping, _)) = lookup(handle) else {
                // Closed in the detach: the buffer's own finalizer ran there, as where the engine
                // frees a detached buffer's memory at once unless an operation of its own holds
                // it (Deno's Node-API does; only Node.js calls this, but an engine may change).
                return undefined(api, env);
            };
            let retired = mapping
                .retired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(Default::default)
                .clone();
            drop(mapping);
            let hint = Box::into_raw(Box::new(retired));
            // SAFETY: `release_retired` takes back `hint` exactly once, when the engine finalizes
            // the buffer; it calls no Node-API function. No reference is asked for (one given out
            // here would own the finalizer).
            let status = (api.add_finalizer)(
                env,
                buffer,
                ptr::null_mut(),
                release_retired,
                hint.cast(),
                ptr::null_mut(),
            );
            if status != OK {
                // Never to be run: the mapping goes as it would have (a failed call of the
                // engine's, which leaves nothing better to do).
                drop(Box::from_raw(hint));
            }
            crate::segment::close(handle, false);
            undefined(api, env)
        })
    }
}

/// The finalizer of a buffer given to `retire`: lets go of the mapping's placeholder (unmapped
/// if this was the last holder and the mapping has gone).
unsafe extern "C" fn release_retired(_env: Env, _data: *mut c_void, hint: *mut c_void) {
    let _ = panic::catch_unwind(|| {
        // SAFETY: `hint` is the `Box<Arc<Retired>>` given with the buffer, finalized exactly once.
        drop(unsafe { Box::from_raw(hint.cast::<Arc<Retired>>()) });
    });
}

unsafe extern "C" fn js_keep_moved_at_end(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, []: [Value; 0]| {
            if !account.watch_end.swap(true, Ordering::Relaxed) {
                note_unowned(account);
                renew_sentinel(api, env, account)?;
            }
            undefined(api, env)
        })
    }
}

/// Bun's Workers: `openKey`, `openName` and `dup` note each handle they open until `handedOver`
/// says an object owns it, and the environment's teardown closes those still noted
/// ([`drop_account`]): a Worker terminated between an open and the `bun:ffi` buffer that takes
/// the handle over left it, and its mapping, open for good. (Bun releases the Worker's buffers
/// at its teardown, closing the handles they own, but runs no Node-API finalizer of this
/// module's before them: only the cleanup hooks and the instance data's, after.)
unsafe extern "C" fn js_note_unowned(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe { on_account(env, info, note_unowned) }
}

/// `noteMainThread()`: this environment is a main thread's (see [`Account::main`]).
unsafe extern "C" fn js_note_main_thread(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        on_account(env, info, |account| {
            account.main.store(true, Ordering::Relaxed)
        })
    }
}

/// `leaveEndpoints()`: forgets this environment's endpoints' notes without marking them
/// ([`endpoints_left`]).
unsafe extern "C" fn js_leave_endpoints(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        on_account(env, info, |account| {
            account.left.store(true, Ordering::Relaxed);
            endpoints_left(account);
        })
    }
}

/// A call of no arguments that does `act` to this environment's [`Account`] and returns
/// `undefined`.
///
/// # Safety
/// `env` and `info` come from the runtime for this call.
unsafe fn on_account(env: Env, info: CallbackInfo, act: fn(&Account)) -> Value {
    // SAFETY: as the caller promises.
    unsafe {
        call(env, info, |api, account, []: [Value; 0]| {
            act(account);
            undefined(api, env)
        })
    }
}

/// `handedOver(handle)`: an object (a `bun:ffi` buffer, whose deallocator closes it) owns
/// `handle` now; it is no longer closed at the teardown.
unsafe extern "C" fn js_handed_over(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, [handle]: [Value; 1]| {
            settle_owned(account, int32(api, env, handle, "handle")?);
            undefined(api, env)
        })
    }
}

/// A one-byte external buffer that only this module holds (by a strong reference, so it is
/// never collected, and never seen by JavaScript, so never detached by it), made by `wrap` after
/// each buffer in an environment that called `keepMovedAtEnd`, so that it is always the newest
/// buffer the environment made. The next one retires it: the module then detaches it itself.
///
/// Node.js, tearing down an environment (a Worker that returns, calls `process.exit()` or is
/// ended by `worker.terminate()`), detaches each external buffer the environment made that is
/// still attached and calls its finalizer, newest first, whether or not the buffer's memory
/// moved to a buffer of another thread. The current sentinel's finalizer therefore runs before
/// any other buffer's, while every buffer detached then was detached by JavaScript (moved, or
/// closed, which closes its handle), and it keeps their mappings ([`keep_moved`]). Nothing else
/// runs at a `terminate()`: no JavaScript, and the Node-API cleanup hooks only after the buffers'
/// finalizers.
struct Sentinel {
    /// Set when a newer sentinel replaces this one: its finalizer then only frees it.
    retired: AtomicBool,
    /// The buffer's one byte, which nothing reads or writes.
    byte: u8,
    account: Arc<Account>,
}

/// How many [`Sentinel`]s of this process, in every environment, are not yet freed.
static SENTINELS: AtomicI64 = AtomicI64::new(0);

/// Makes a new [`Sentinel`], newer than every buffer made here so far, and detaches the previous
/// one (its finalizer, which Node.js then runs on this thread from its event loop, frees it and
/// does nothing else).
///
/// # Safety
/// `env` is live and this runs on its thread.
unsafe fn renew_sentinel(api: &Api, env: Env, account: &Arc<Account>) -> Result<(), Thrown> {
    let state = Box::into_raw(Box::new(Sentinel {
        retired: AtomicBool::new(false),
        byte: 0,
        account: account.clone(),
    }));
    SENTINELS.fetch_add(1, Ordering::Relaxed);
    let mut buffer = ptr::null_mut();
    // SAFETY: the byte lives as long as `state`, which `sentinel_gone` frees exactly once, when
    // the engine releases the buffer. No JavaScript ever gets the buffer.
    let status = unsafe {
        (api.create_external_arraybuffer)(
            env,
            ptr::addr_of_mut!((*state).byte).cast(),
            1,
            sentinel_gone,
            state.cast(),
            &mut buffer,
        )
    };
    if refused_up_front(status) {
        // No finalizer will ever run: left, the state and its account leaked, once per Worker
        // terminated inside a `wrap`.
        // SAFETY: `state` came from Box::into_raw above and nothing else holds it.
        drop(unsafe { Box::from_raw(state) });
        SENTINELS.fetch_sub(1, Ordering::Relaxed);
    }
    // On another failure `state` is left to a finalizer that may or may not run (see
    // `js_wrap`): a small leak.
    check(status, "napi_create_external_arraybuffer")?;
    let mut reference = ptr::null_mut();
    // SAFETY: a value of this call and a valid out-pointer. Refcount 1: a strong reference.
    let status = unsafe { (api.create_reference)(env, buffer, 1, &mut reference) };
    if status != OK {
        // SAFETY: the buffer is not released during this call, so `state` is alive.
        unsafe { (*state).retired.store(true, Ordering::Relaxed) };
        check(status, "napi_create_reference")?;
    }
    let mut current = account
        .sentinel
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some((old_reference, old_state)) = current.replace((reference as usize, state as usize))
    {
        let old_reference = old_reference as *mut c_void;
        // SAFETY: the old sentinel's strong reference, deleted only here, has kept its buffer,
        // and so its state, alive until now; this is the environment's thread, and the value
        // lives in the caller's scope.
        unsafe {
            (*(old_state as *const Sentinel))
                .retired
                .store(true, Ordering::Relaxed);
            let mut old = ptr::null_mut();
            if (api.get_reference_value)(env, old_reference, &mut old) == OK && !old.is_null() {
                // Released now, on this thread, rather than by the collector: Node.js 26 can
                // crash tearing down a Worker while its collector's background sweeper frees the
                // memory of an external buffer collected just before (`Clean` in its
                // `node_buffer.cc` still uses its record of the buffer after unlocking it, and
                // the sweeper's `OnBackingStoreFree` deletes that record), and every `wrap` in a
                // Worker retires one sentinel. Detached, the buffer's record is freed through an
                // immediate of this environment, on its thread. A failure only leaves the buffer
                // to the collector, as before.
                let _ = (api.detach_arraybuffer)(env, old);
            }
            (api.delete_reference)(env, old_reference);
        }
    }
    Ok(())
}

/// The finalizer of a [`Sentinel`]'s buffer: a retired one's is only freed; the current one's
/// runs at the environment's teardown, on its thread, before any other buffer's finalizer.
unsafe extern "C" fn sentinel_gone(env: Env, _data: *mut c_void, hint: *mut c_void) {
    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `hint` is the `Box<Sentinel>` given with the buffer, finalized exactly once.
        let sentinel = unsafe { Box::from_raw(hint.cast::<Sentinel>()) };
        SENTINELS.fetch_sub(1, Ordering::Relaxed);
        if sentinel.retired.load(Ordering::Relaxed) {
            return;
        }
        let Ok(api) = api() else { return };
        // SAFETY: the current sentinel is only released by the teardown of `env`, which runs
        // this on the environment's thread while its values and references can still be read.
        // A failure leaves the moved buffers as they were: nothing else can be done then.
        let _ = unsafe { keep_moved(api, env, &sentinel.account) };
        endpoints_gone(&sentinel.account);
        // Opened, and no object took them over: the environment ended in between (a
        // `terminate()`), and nothing else would ever close them. A mapping a moved buffer
        // still uses was kept above, apart from its handle.
        let unowned = std::mem::take(
            &mut *sentinel
                .account
                .unowned
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (handle, serial) in unowned {
            close_owned(handle, serial);
        }
    }));
}

unsafe extern "C" fn js_track_all(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, []: [Value; 0]| {
            account.track_all.store(true, Ordering::Relaxed);
            undefined(api, env)
        })
    }
}

/// Removes a segment, then reports each of this process's mappings of it (see the module docs).
///
/// # Safety
/// `env` is live and this runs on its thread.
unsafe fn unlink(
    api: &Api,
    env: Env,
    account: &Arc<Account>,
    id: Result<SegmentId, SegmentError>,
) -> Outcome {
    // SAFETY: forwarded from the caller.
    unsafe { unlink_with(api, env, account, id, Segment::unlink) }
}

/// As [`unlink`], removing the segment with `remove`.
///
/// # Safety
/// As [`unlink`].
unsafe fn unlink_with(
    api: &Api,
    env: Env,
    account: &Arc<Account>,
    id: Result<SegmentId, SegmentError>,
    remove: impl FnOnce(&SegmentId) -> Result<(), SegmentError>,
) -> Outcome {
    let code = match id.and_then(|id| remove(&id).map(|()| id)) {
        Ok(id) => {
            for mapping in mappings_of(&id) {
                let mut report = mapping
                    .report
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if report.is_some() {
                    continue;
                }
                // The whole length: a named segment this library creates reserves all of its
                // memory up front (so that a full /dev/shm fails the create, not a later write),
                // and counting resident pages (mincore) took 80 ms for 1 GiB here.
                let bytes = i64::try_from(mapping.segment.len()).unwrap_or(i64::MAX);
                let mut total = 0;
                check(
                    // SAFETY: valid out-pointer; env is live on this thread.
                    unsafe { (api.adjust_external_memory)(env, bytes, &mut total) },
                    "napi_adjust_external_memory",
                )?;
                account.outstanding.fetch_add(bytes, Ordering::Relaxed);
                *report = Some(Report {
                    account: account.clone(),
                    bytes,
                });
            }
            0
        }
        Err(err) => code_of(&err),
    };
    int_value(api, env, code)
}

unsafe extern "C" fn js_unlink_key(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, [key]: [Value; 1]| {
            let mut raw = 0u32;
            if (api.get_value_uint32)(env, key, &mut raw) != OK {
                return Err(Thrown::Type("key must be a number".into()));
            }
            unlink(api, env, account, SegmentId::key(raw))
        })
    }
}

/// The identity (two words of a BigUint64Array, see `SbMapping::identity`) argument of an unlink.
///
/// # Safety
/// `env` is live and this runs on its thread; `value` is a value of the running callback.
unsafe fn identity_arg(api: &Api, env: Env, value: Value) -> Result<[u64; 2], Thrown> {
    let (mut ty, mut length, mut data) = (-1, 0, ptr::null_mut());
    let (mut buffer, mut offset) = (ptr::null_mut(), 0);
    // SAFETY: as the caller promises, with valid out-pointers.
    let status = unsafe {
        (api.get_typedarray_info)(
            env,
            value,
            &mut ty,
            &mut length,
            &mut data,
            &mut buffer,
            &mut offset,
        )
    };
    if status != OK || ty != calls::BIGUINT64_ARRAY || length < 2 {
        return Err(Thrown::Type(
            "identity must be a BigUint64Array of at least 2 elements".into(),
        ));
    }
    let words = data.cast::<u64>();
    // SAFETY: the data of a live BigUint64Array of at least 2 elements, read on its thread.
    Ok(unsafe { [words.read_unaligned(), words.add(1).read_unaligned()] })
}

unsafe extern "C" fn js_unlink_key_own(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, [key, identity]: [Value; 2]| {
            let mut raw = 0u32;
            if (api.get_value_uint32)(env, key, &mut raw) != OK {
                return Err(Thrown::Type("key must be a number".into()));
            }
            let words = identity_arg(api, env, identity)?;
            let id = SegmentId::key(raw);
            unlink_with(api, env, account, id, |id| {
                crate::segment::unlink_identified(id, words)
            })
        })
    }
}

unsafe extern "C" fn js_unlink_name_own(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, [name, identity]: [Value; 2]| {
            let words = identity_arg(api, env, identity)?;
            let id = name_arg(api, env, name)?;
            unlink_with(api, env, account, id, |id| {
                crate::segment::unlink_identified(id, words)
            })
        })
    }
}

/// A segment name argument, parsed (`ENAMETOOLONG` past 510 bytes of UTF-8).
///
/// # Safety
/// `env` is live and this runs on its thread; `name` is a value of the running callback.
unsafe fn name_arg(
    api: &Api,
    env: Env,
    name: Value,
) -> Result<Result<SegmentId, SegmentError>, Thrown> {
    let mut buf = [0u8; 512];
    let mut len = 0usize;
    // SAFETY: as the caller promises; `buf` has room for its length, NUL included.
    let status = unsafe {
        (api.get_value_string_utf8)(
            env,
            name,
            buf.as_mut_ptr().cast::<c_char>(),
            buf.len(),
            &mut len,
        )
    };
    if status != OK {
        return Err(Thrown::Type("name must be a string".into()));
    }
    Ok(if len + 1 >= buf.len() {
        Err(SegmentError::Os(std::io::Error::from_raw_os_error(
            libc::ENAMETOOLONG,
        )))
    } else {
        // SAFETY: `buf` holds `len` bytes written by Node-API.
        unsafe { crate::segment::parse_name(buf.as_ptr(), len) }
    })
}

unsafe extern "C" fn js_unlink_name(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, [name]: [Value; 1]| {
            let id = name_arg(api, env, name)?;
            unlink(api, env, account, id)
        })
    }
}

/// How much the first `relieve` reports for a moment: far above an engine's limit for a
/// synchronous full collection (V8: half the old generation above the last low mark).
const RELIEF_BYTES: i64 = 1 << 44;
/// How much more each later `relieve` reports. V8 sets its next limit from the external memory
/// at the time of a collection, which a relief's own collection sees inflated, so the same
/// amount again would not cross it.
const RELIEF_STEP: i64 = 1 << 37;

unsafe extern "C" fn js_relieve(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, []: [Value; 0]| {
            let round = account.reliefs.fetch_add(1, Ordering::Relaxed);
            let bytes = RELIEF_STEP
                .checked_mul(round)
                .and_then(|more| more.checked_add(RELIEF_BYTES))
                .unwrap_or(i64::MAX / 2);
            let mut total = 0;
            check(
                (api.adjust_external_memory)(env, bytes, &mut total),
                "napi_adjust_external_memory",
            )?;
            check(
                (api.adjust_external_memory)(env, -bytes, &mut total),
                "napi_adjust_external_memory",
            )?;
            let mut tracked = account
                .tracked
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if std::mem::take(&mut tracked.armed) {
                // The collection has run: every empty reference is a buffer it collected, none
                // of them detached (forgetDetached ran just before, and no JavaScript since).
                release_collected(api, env, &mut tracked);
            }
            drop(tracked);
            settle(api, env, account)?;
            int_value(api, env, 0)
        })
    }
}

unsafe extern "C" fn js_forget_detached(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, []: [Value; 0]| {
            let mut tracked = account
                .tracked
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            prune(api, env, &mut tracked)?;
            tracked.armed = true;
            let count = i32::try_from(tracked.count).unwrap_or(i32::MAX);
            drop(tracked);
            int_value(api, env, count)
        })
    }
}

unsafe extern "C" fn js_weak_ref(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, [object]: [Value; 1]| {
            let mut kind = 0;
            // SAFETY: a value of this call; valid out-pointer.
            let status = (api.type_of)(env, object, &mut kind);
            if status != OK || kind != sys::OBJECT {
                return Err(Thrown::Type("weakRef takes an object".into()));
            }
            let mut reference = ptr::null_mut();
            // SAFETY: a value of this call; valid out-pointer. Refcount 0: a weak reference.
            check(
                (api.create_reference)(env, object, 0, &mut reference),
                "napi_create_reference",
            )?;
            let mut weak = account.weak_refs();
            // The next id not in use (a table of 2^32 - 1 live references is out of reach).
            let mut id = weak.last;
            loop {
                id = id.wrapping_add(1).max(1);
                if !weak.by_id.contains_key(&id) {
                    break;
                }
            }
            weak.last = id;
            weak.by_id.insert(id, reference as usize);
            int_value(api, env, id as i32)
        })
    }
}

unsafe extern "C" fn js_deref_weak(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, [id]: [Value; 1]| {
            let id = int32(api, env, id, "id")? as u32;
            let reference = account.weak_refs().by_id.get(&id).copied();
            let mut value = ptr::null_mut();
            if let Some(reference) = reference {
                // SAFETY: a reference of this environment, not deleted while in the table;
                // valid out-pointer. Null once the object was collected.
                check(
                    (api.get_reference_value)(env, reference as *mut c_void, &mut value),
                    "napi_get_reference_value",
                )?;
            }
            if value.is_null() {
                return undefined(api, env);
            }
            Ok(value)
        })
    }
}

unsafe extern "C" fn js_drop_weak(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, [id]: [Value; 1]| {
            let id = int32(api, env, id, "id")? as u32;
            let reference = account.weak_refs().by_id.remove(&id);
            if let Some(reference) = reference {
                // SAFETY: a reference of this environment, removed from the table: deleted once.
                (api.delete_reference)(env, reference as *mut c_void);
            }
            undefined(api, env)
        })
    }
}

/// The pid word of a channel endpoint at `address` (a BigInt) in a live mapping of this process:
/// the mapping, the word's byte offset there, and the address.
///
/// # Safety
/// `env` is live and this runs on its thread; `address` is a value of the running callback.
unsafe fn endpoint_word(
    api: &Api,
    env: Env,
    address: Value,
) -> Result<(Arc<Mapped>, usize, u64), Thrown> {
    let mut at = 0u64;
    let mut lossless = false;
    // SAFETY: as the caller promises; valid out-pointers.
    let status = unsafe { (api.get_value_bigint_uint64)(env, address, &mut at, &mut lossless) };
    if status != OK || !lossless {
        return Err(Thrown::Type("address must be a BigInt in 0..2^64".into()));
    }
    let mapping = crate::segment::mapping_holding(at, 4)
        .filter(|_| at % 4 == 0)
        .ok_or_else(|| Thrown::Range(format!("{at:#x} is no aligned word of a mapping here")))?;
    let offset = (at - mapping.segment.as_ptr() as u64) as usize;
    Ok((mapping, offset, at))
}

/// A pid argument: a positive int32 without [`PID_GONE`].
///
/// # Safety
/// As [`endpoint_word`].
unsafe fn pid_arg(api: &Api, env: Env, pid: Value) -> Result<u32, Thrown> {
    let pid = int32(api, env, pid, "pid")?;
    u32::try_from(pid)
        .ok()
        .filter(|&pid| pid != 0 && pid & PID_GONE == 0)
        .ok_or_else(|| Thrown::Range(format!("{pid} is not a pid")))
}

unsafe extern "C" fn js_claim_endpoint(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(
            env,
            info,
            |api, account, [address, expected, pid]: [Value; 3]| {
                let (mapping, offset, at) = endpoint_word(api, env, address)?;
                let expected = int32(api, env, expected, "expected")? as u32;
                let pid = pid_arg(api, env, pid)?;
                let word = mapping.segment.atomic_u32(offset);
                let held = match word.compare_exchange(
                    expected,
                    pid,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(held) | Err(held) => held,
                };
                // A word that already held `pid` is not this call's to note (nor, once the
                // process is ending, any word).
                if held == expected && expected != pid && !account.left.load(Ordering::Relaxed) {
                    // Taken: noted in this same call, so that no `terminate()` comes in between;
                    // in the mapping too, which marks the word if it goes first.
                    mapping.claim(offset, pid);
                    let mut endpoints = account
                        .endpoints
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    endpoints.by_address.insert(
                        at,
                        HeldEndpoint {
                            mapping: Arc::downgrade(&mapping),
                            offset,
                            pid,
                        },
                    );
                    // Notes of endpoints dropped without closing, whose mappings went, go too.
                    if endpoints.by_address.len() >= endpoints.prune_at {
                        endpoints
                            .by_address
                            .retain(|_, held| held.mapping.strong_count() > 0);
                        endpoints.prune_at = (endpoints.by_address.len() * 2).max(64);
                    }
                }
                // The mapping's reference goes after the lock (dropping it may unmap).
                drop(mapping);
                int_value(api, env, held as i32)
            },
        )
    }
}

unsafe extern "C" fn js_unclaim_endpoint(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, [address, pid]: [Value; 2]| {
            let (mapping, offset, at) = endpoint_word(api, env, address)?;
            let pid = pid_arg(api, env, pid)?;
            let note = account
                .endpoints
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .by_address
                .remove(&at);
            mapping.unclaim(offset);
            let word = mapping.segment.atomic_u32(offset);
            let held = match word.compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(held) | Err(held) => held,
            };
            // References to mappings go after the lock (dropping one may unmap).
            drop((note, mapping));
            int_value(api, env, held as i32)
        })
    }
}

unsafe extern "C" fn js_reported_bytes(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, account, []: [Value; 0]| {
            let bytes = account.outstanding.load(Ordering::Relaxed);
            int_value(api, env, i32::try_from(bytes).unwrap_or(i32::MAX))
        })
    }
}

unsafe extern "C" fn js_sentinels(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, _account, []: [Value; 0]| {
            let live = SENTINELS.load(Ordering::Relaxed);
            int_value(api, env, i32::try_from(live).unwrap_or(i32::MAX))
        })
    }
}

unsafe extern "C" fn js_owners(env: Env, info: CallbackInfo) -> Value {
    // SAFETY: env and info come from the runtime.
    unsafe {
        call(env, info, |api, _account, []: [Value; 0]| {
            let live = OWNERS.load(Ordering::Relaxed);
            int_value(api, env, i32::try_from(live).unwrap_or(i32::MAX))
        })
    }
}

/// Keeps a weak reference to `object` (a buffer, or an object given to `addFinalizer`), which
/// owns `owner`'s handle, and now and then forgets the buffers already collected or detached.
///
/// # Safety
/// `env` is live and this runs on its thread; `object` is a value of this call.
unsafe fn track(
    api: &Api,
    env: Env,
    account: &Account,
    object: Value,
    owner: Owner,
    group: u64,
    owns_when_collected: bool,
) -> Result<(), Thrown> {
    let mut reference = ptr::null_mut();
    check(
        // SAFETY: a value of this call and a valid out-pointer.
        unsafe { (api.create_reference)(env, object, 0, &mut reference) },
        "napi_create_reference",
    )?;
    let mut tracked = account
        .tracked
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    tracked.push(Watched {
        reference: reference as usize,
        handle: owner.handle,
        serial: owner.serial,
        group,
        owns_when_collected,
    });
    if tracked.count >= tracked.prune_at.max(PRUNE_MIN) {
        // SAFETY: forwarded.
        unsafe { prune(api, env, &mut tracked)? };
        tracked.prune_at = tracked.count * 2;
    }
    Ok(())
}

/// Forgets (deletes the references of) the tracked buffers that were collected or detached,
/// leaving their handles to their finalizers, except that the handle of a collected object that
/// still owned it ([`Watched::owns_when_collected`]) is closed here, at once.
///
/// # Safety
/// `env` is live and this runs on its thread.
unsafe fn prune(api: &Api, env: Env, tracked: &mut Tracked) -> Result<(), Thrown> {
    let mut scope = ptr::null_mut();
    check(
        // SAFETY: valid out-pointer. The scope frees the values read below before the caller
        // goes on, so that they keep nothing alive through a collection.
        unsafe { (api.open_handle_scope)(env, &mut scope) },
        "napi_open_handle_scope",
    )?;
    let mut moved = Vec::new();
    tracked.retain(|entry| {
        let reference = entry.reference as *mut c_void;
        let mut value = ptr::null_mut();
        // SAFETY: a reference of this environment, not yet deleted; valid out-pointer.
        let status = unsafe { (api.get_reference_value)(env, reference, &mut value) };
        let mut detached = false;
        if status == OK && !value.is_null() {
            // SAFETY: a live ArrayBuffer of this environment; valid out-pointer.
            unsafe { (api.is_detached_arraybuffer)(env, value, &mut detached) };
            if !detached {
                return true;
            }
            // Detached while alive: moved (or closed, which closes its handle too).
            moved.push((entry.handle, entry.serial));
        } else if status == OK && entry.owns_when_collected {
            // Collected while it owned the handle (its finalizer, later, finds it closed).
            close_owned(entry.handle, entry.serial);
        }
        // SAFETY: as above; deleted once, then dropped from the list.
        unsafe { (api.delete_reference)(env, reference) };
        false
    });
    // SAFETY: the scope opened above, closed once.
    unsafe { (api.close_handle_scope)(env, scope) };
    // Those whose handle closed since (their memory was released, or `close()` detached them)
    // are done with.
    tracked.moved.extend(moved);
    tracked
        .moved
        .retain(|&(handle, serial)| is_open(handle, serial));
    Ok(())
}

/// Whether handle `handle` is open with serial number `serial`.
fn is_open(handle: i32, serial: u64) -> bool {
    lookup(handle).is_some_and(|(_, open)| open == serial)
}

/// At a Worker's teardown, before any buffer's finalizer (from the [`Sentinel`]'s): Node.js then
/// calls the finalizer of every buffer made here, the moved ones' too, and the memory of a
/// buffer seen detached (now, or by [`prune`] or `takeViews` before it was collected) may have
/// moved to a buffer of another thread (`transfer()` or a byte stream, then a transfer list),
/// which would lose it when that finalizer closes the handle. Such a mapping is kept, by a
/// reference that is never dropped, until the process ends. A buffer still attached is detached
/// by the engine at the teardown, and goes; so does one collected without having been seen
/// detached (most are buffers dropped without `close()`, whose finalizer has not run yet:
/// keeping them all would keep every such mapping of a Worker until the process ends).
///
/// # Safety
/// `env` is live and this runs on its thread.
unsafe fn keep_moved(api: &Api, env: Env, account: &Account) -> Result<(), Thrown> {
    let keep = |handle: i32, serial: u64| match lookup(handle) {
        Some((mapping, open)) if open == serial => std::mem::forget(mapping),
        _ => {}
    };
    let mut tracked = account
        .tracked
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for &(handle, serial) in &tracked.moved {
        keep(handle, serial);
    }
    tracked.moved.clear();
    let mut scope = ptr::null_mut();
    check(
        // SAFETY: valid out-pointer.
        unsafe { (api.open_handle_scope)(env, &mut scope) },
        "napi_open_handle_scope",
    )?;
    let all = tracked
        .entries
        .iter()
        .chain(tracked.views.values().flatten());
    for entry in all.filter(|entry| !entry.owns_when_collected) {
        let mut value = ptr::null_mut();
        // SAFETY: a reference of this environment, not yet deleted; valid out-pointer.
        let status =
            unsafe { (api.get_reference_value)(env, entry.reference as *mut c_void, &mut value) };
        let mut detached = false;
        if status == OK && !value.is_null() {
            // SAFETY: a live ArrayBuffer of this environment; valid out-pointer.
            unsafe { (api.is_detached_arraybuffer)(env, value, &mut detached) };
        }
        if detached {
            keep(entry.handle, entry.serial);
        }
    }
    // SAFETY: the scope opened above, closed once.
    unsafe { (api.close_handle_scope)(env, scope) };
    Ok(())
}

/// Closes the handles of the tracked buffers whose references are empty (collected; none was
/// detached, see [`prune`]) and forgets them.
///
/// # Safety
/// `env` is live and this runs on its thread, with no JavaScript run since [`prune`].
unsafe fn release_collected(api: &Api, env: Env, tracked: &mut Tracked) {
    tracked.retain(|entry| {
        let reference = entry.reference as *mut c_void;
        let mut value = ptr::null_mut();
        // SAFETY: a reference of this environment, not yet deleted; valid out-pointer. An empty
        // reference gives no value to keep in a scope.
        let status = unsafe { (api.get_reference_value)(env, reference, &mut value) };
        if status != OK || !value.is_null() {
            return true;
        }
        close_owned(entry.handle, entry.serial);
        // SAFETY: as above; deleted once, then dropped from the list.
        unsafe { (api.delete_reference)(env, reference) };
        false
    });
    tracked.prune_at = tracked.count * 2;
}
