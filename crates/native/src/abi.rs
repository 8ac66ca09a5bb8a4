//! The one declaration of the C ABI: every exported function with its parameters, result and a
//! one-line summary, and the constants the bindings use.
//!
//! `ts/ffi.ts` is generated from [`EXPORTS`] and [`CONSTANTS`] (`make generate`; the test
//! `tests/generated.rs` fails when the checked-in file is not what the tables give). The
//! declarations cannot drift from the functions: [`exports!`] coerces each function to the
//! `extern "C" fn` pointer type its entry declares, so a parameter or result of another type, or
//! a missing or extra parameter, fails to compile. An exported function missing from the table
//! is caught by `tests/abi_exports.test.ts`, which compares the built library's symbols with
//! the generated table.
//!
//! To add a function: write it (`#[unsafe(no_mangle)] pub extern "C" fn sb_...`) in its module,
//! add an entry to [`EXPORTS`] below, run `make generate`, and bump [`SB_ABI_VERSION`] if an
//! existing signature or struct changed.
//!
//! [`SB_ABI_VERSION`]: crate::SB_ABI_VERSION

use std::ffi::{c_char, c_void};

use crate::*;

/// One parameter of an exported function.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its name in the C signature.
    pub name: &'static str,
    /// Its C type, as written in a header (`"uint32_t"`, `"const uint8_t *"`).
    pub c: &'static str,
    /// Its type in Deno's FFI (`"u32"`, `"buffer"`, `"usize"`, ...).
    pub ffi: &'static str,
}

/// One exported function.
#[derive(Debug, Clone, Copy)]
pub struct Export {
    /// The symbol (`"sb_open_key"`).
    pub name: &'static str,
    /// A one-line summary of what it returns, for the bindings' comment.
    pub doc: &'static str,
    /// The parameters, in order.
    pub params: &'static [Param],
    /// The C result type (`"void"` for none).
    pub result_c: &'static str,
    /// The result type in Deno's FFI.
    pub result_ffi: &'static str,
    /// A second binding of the same symbol that Deno runs on a thread of its pool and that
    /// returns a Promise (`nonblocking: true`), under this name; Bun's table leaves it out.
    pub nonblocking: Option<&'static str>,
}

/// One constant the bindings use.
#[derive(Debug, Clone, Copy)]
pub struct Constant {
    /// Its name in TypeScript.
    pub name: &'static str,
    /// Its doc comment.
    pub doc: &'static str,
    /// Its value.
    pub value: i64,
}

/// A Rust type that crosses the ABI: its C spelling and its default Deno FFI type.
pub trait AbiType {
    /// The C type.
    const C: &'static str;
    /// Deno's FFI type for it; a pointer parameter may override it in [`EXPORTS`] (`buffer` for
    /// a typed array the call reads or writes, `usize` for an address passed as a number).
    const FFI: &'static str;
}

macro_rules! abi_types {
    ($($t:ty => $c:literal, $ffi:literal;)*) => {
        $(impl AbiType for $t {
            const C: &'static str = $c;
            const FFI: &'static str = $ffi;
        })*
    };
}

abi_types! {
    () => "void", "void";
    i32 => "int32_t", "i32";
    u32 => "uint32_t", "u32";
    i64 => "int64_t", "i64";
    u64 => "uint64_t", "u64";
    usize => "uintptr_t", "usize";
    *const u8 => "const uint8_t *", "pointer";
    *mut u8 => "uint8_t *", "pointer";
    *const u32 => "const uint32_t *", "pointer";
    *mut u32 => "uint32_t *", "pointer";
    *const u64 => "const uint64_t *", "pointer";
    // `*const c_char` as spelled where C's `char` is signed (x86-64, macOS). Where it is unsigned
    // (arm64 Linux) `*const c_char` is `*const u8`, a second impl would conflict, and it reads
    // `const uint8_t *`: the checked-in table is generated on x86-64.
    *const i8 => "const char *", "pointer";
    *mut c_void => "void *", "pointer";
    *const c_void => "const void *", "pointer";
    *mut SbMapping => "SbMapping *", "pointer";
    *mut TakeState => "SbTakeState *", "pointer";
    *mut PutState => "SbPutState *", "pointer";
    Option<SbWakeCallback> => "void (*)(uint64_t token, int32_t result)", "function";
}

/// The Deno FFI type of a parameter: the override when given, else the type's default.
macro_rules! ffi_type {
    ($t:ty) => {
        <$t as AbiType>::FFI
    };
    ($t:ty, $ffi:literal) => {
        $ffi
    };
}

/// `Some(x)` for one argument, `None` for none.
macro_rules! optional {
    () => {
        None
    };
    ($x:literal) => {
        Some($x)
    };
}

/// Declares [`EXPORTS`], checking each entry against the real function at compile time.
///
/// Each entry is `/// summary`, then optionally `#[nonblocking = "deno_name"]`, then
/// `fn name(param: Type, ...) -> Result;`, where a pointer parameter may add `=> "buffer"` or
/// `=> "usize"` to say how JavaScript passes it.
macro_rules! exports {
    ($(
        $(#[doc = $doc:literal])*
        $(#[nonblocking = $alias:literal])?
        fn $name:ident($($p:ident: $t:ty $(=> $ffi:literal)?),* $(,)?) -> $r:ty;
    )*) => {
        /// Every exported function, in the order of the generated bindings.
        pub const EXPORTS: &[Export] = &[$({
            // The declaration must be the function's real signature (an unsafe fn pointer
            // accepts both safe and unsafe functions).
            const _: unsafe extern "C" fn($($t),*) -> $r = $name;
            Export {
                name: stringify!($name),
                doc: concat!($($doc),*),
                params: &[$(Param {
                    name: stringify!($p),
                    c: <$t as AbiType>::C,
                    ffi: ffi_type!($t $(, $ffi)?),
                }),*],
                result_c: <$r as AbiType>::C,
                result_ffi: <$r as AbiType>::FFI,
                nonblocking: optional!($($alias)?),
            }
        }),*];
    };
}

// "usize" is always an address passed by value: a BigInt in Deno (measured: 57 ns for a mutex
// lock+unlock, against 250 ns with pointer objects), and Bun's "ptr", a number (35 ns, against
// 75-150 ns as "u64"). Each address is checked in TypeScript to lie inside a live mapping.
exports! {
    /// The ABI version.
    fn sb_abi_version() -> u32;
    /// The symbolic name of a code (`"EEXIST"`), static.
    fn sb_error_name(code: i32) -> *const c_char;
    /// A short description of a code, static.
    fn sb_error_message(code: i32) -> *const c_char;
    /// The positive error number of a symbolic name on this platform, 0 if unknown.
    fn sb_errno(name: *const u8 => "buffer", name_len: u32) -> i32;
    /// 0, or a negative code; the mapping goes to `out`.
    fn sb_open_key(
        key: u32,
        size: u64,
        how: u32,
        flags: u32,
        mode: u32,
        owner: i64,
        out: *mut SbMapping => "buffer",
    ) -> i32;
    /// 0, or a negative code; the mapping goes to `out`.
    fn sb_open_name(
        name: *const u8 => "buffer",
        name_len: u32,
        size: u64,
        how: u32,
        flags: u32,
        mode: u32,
        owner: i64,
        out: *mut SbMapping => "buffer",
    ) -> i32;
    /// The user name's length (written to `buf` up to `len` bytes), or -ENOENT.
    fn sb_user_name(uid: u32, buf: *mut u8 => "buffer", len: u32) -> i32;
    /// 0, or a negative code.
    fn sb_unlink_key(key: u32) -> i32;
    /// 0, or a negative code.
    fn sb_unlink_name(name: *const u8 => "buffer", name_len: u32) -> i32;
    /// 0; -ENOENT if the key names another segment than `identity` now, or none.
    fn sb_unlink_key_own(key: u32, identity: *const u64 => "buffer") -> i32;
    /// 0; -ENOENT if the name names another segment than `identity` now, or none.
    fn sb_unlink_name_own(
        name: *const u8 => "buffer",
        name_len: u32,
        identity: *const u64 => "buffer",
    ) -> i32;
    /// A new handle, or a negative code.
    fn sb_dup(handle: i32) -> i32;
    /// 0, -EBADF, or -EBUSY while this process holds a lock in the last mapping it would unmap.
    fn sb_close(handle: i32) -> i32;
    /// The deallocator Bun's buffers call; closes the handle in `context`.
    fn sb_release(bytes: *mut c_void, context: *mut c_void) -> ();
    /// The address of `sb_release`.
    fn sb_release_fn() -> *const c_void;
    /// Live handles in this process.
    fn sb_handle_count() -> i32;
    /// The address of the bytes given (in Deno, of a typed array, under a scoped --allow-ffi).
    fn sb_address_of(bytes: *const u8 => "buffer") -> usize;
    /// 0 woken, 1 not equal, 2 timed out, or a negative code.
    fn sb_wait(addr: *const u32 => "usize", expected: u32, timeout_ns: i64) -> i32;
    /// As `sb_wait`, spinning first.
    fn sb_wait_spin(
        addr: *const u32 => "usize",
        expected: u32,
        timeout_ns: i64,
        spins: u32,
    ) -> i32;
    /// How many were woken, or a negative code.
    fn sb_notify(addr: *const u32 => "usize", count: u32) -> i32;
    /// 0 pending (`cb` is called once later, from a native thread), 1 not equal, 2 timed out,
    /// or a negative code.
    fn sb_wait_async(
        addr: *const u32 => "usize",
        expected: u32,
        timeout_ns: i64,
        token: u64,
        cb: Option<SbWakeCallback>,
    ) -> i32;
    /// Ends the pending waits on `addr..addr + len` with -EBADF now; how many.
    fn sb_wait_cancel(addr: usize, len: usize) -> i32;
    /// The bytes a mutex occupies.
    fn sb_mutex_size() -> u32;
    /// The alignment a mutex needs.
    fn sb_mutex_align() -> u32;
    /// 0 initialised, 1 already initialised, or a negative code.
    fn sb_mutex_init(addr: *mut u8 => "usize") -> i32;
    /// 0 if a ready mutex is there, or a negative code (-EINVAL, -EAGAIN).
    fn sb_mutex_open(addr: *mut u8 => "usize") -> i32;
    /// How many locks threads of this process hold in the `len` bytes from `addr`.
    fn sb_mutex_held_in(addr: *const u8 => "usize", len: u64) -> i32;
    /// 0 acquired, 1 acquired after the owner died, or a negative code.
    fn sb_mutex_lock(addr: *mut u8 => "usize", timeout_ns: i64) -> i32;
    /// As `sb_mutex_lock`, or -EBUSY.
    fn sb_mutex_trylock(addr: *mut u8 => "usize") -> i32;
    /// 0, or -EPERM if this thread does not hold it.
    fn sb_mutex_unlock(addr: *mut u8 => "usize") -> i32;
    /// 1 alive, 0 dead (gone or zombie), or a negative code.
    fn sb_process_alive(pid: u32) -> i32;
    /// This process's pid namespace (the inode number of /proc/self/ns/pid), 0 if unknown.
    fn sb_pid_namespace() -> u32;
    /// The length of the message taken into `target`, or -1 with nothing taken.
    fn sb_channel_take(
        region: *mut u8 => "usize",
        state: *mut TakeState => "usize",
        target: *mut u8 => "buffer",
        room: u32,
    ) -> i32;
    /// How many messages of the run at `head` were copied to `out` (their lengths to `lens`); 0
    /// for none.
    fn sb_channel_scan_run(
        region: *mut u8 => "usize",
        state: *mut TakeState => "usize",
        out: *mut u8 => "buffer",
        out_len: u32,
        lens: *mut u32 => "buffer",
        max: u32,
        small: u32,
    ) -> i32;
    /// 0 sent, 1 no room now, 2 committed after the receiver closed (EPIPE), or -1 with nothing
    /// reserved.
    fn sb_channel_put(
        region: *mut u8 => "usize",
        state: *mut PutState => "usize",
        src: *const u8 => "buffer",
        len: u32,
    ) -> i32;
    /// 0 committed, 1 committed after the receiver closed, or -1 with nothing written.
    fn sb_channel_commit_run(
        region: *mut u8 => "usize",
        state: *mut PutState => "usize",
        idx: u32,
        lens: *const u32 => "buffer",
        count: u32,
    ) -> i32;
}

/// Declares [`CONSTANTS`] from the Rust constants themselves.
macro_rules! constants {
    ($($(#[doc = $doc:literal])* $ts:ident = $rust:expr;)*) => {
        /// The constants the bindings use, under their TypeScript names.
        pub const CONSTANTS: &[Constant] = &[$(Constant {
            name: stringify!($ts),
            doc: concat!($($doc),*),
            value: $rust as i64,
        }),*];
    };
}

constants! {
    /// `how` argument of the open calls: open an existing segment.
    OPEN = SB_OPEN;
    /// `how`: create exclusively.
    CREATE = SB_CREATE;
    /// `how`: open, or create if missing.
    OPEN_OR_CREATE = SB_OPEN_OR_CREATE;
    /// `flags` bit of the open calls: fault every page in now.
    POPULATE = SB_POPULATE;
    /// `flags` bit, with `CREATE` only: remove a leftover segment under the id first.
    REPLACE = SB_REPLACE;
    /// `owner` argument of the open calls: accept segments of this user and of root.
    OWNER_TRUSTED = SB_OWNER_TRUSTED;
    /// `owner`: accept segments of any user.
    OWNER_ANY = SB_OWNER_ANY;
    /// A wait ended by a notify, or spuriously.
    WAIT_OK = SB_WAIT_OK;
    /// A wait found the word not holding the expected value.
    WAIT_NOT_EQUAL = SB_WAIT_NOT_EQUAL;
    /// A wait timed out.
    WAIT_TIMED_OUT = SB_WAIT_TIMED_OUT;
    /// A lock was acquired.
    LOCK_ACQUIRED = SB_LOCK_ACQUIRED;
    /// A lock was acquired after its previous owner died holding it.
    LOCK_OWNER_DIED = SB_LOCK_OWNER_DIED;
    /// `sb_channel_put`: the message was sent.
    PUT_SENT = shared_buffer::channel::foreign::PUT_SENT;
    /// `sb_channel_put`: no room now, nothing reserved.
    PUT_FULL = shared_buffer::channel::foreign::PUT_FULL;
    /// `sb_channel_put`: committed, but the receiver had closed without consuming it (`EPIPE`).
    PUT_CLOSED = shared_buffer::channel::foreign::PUT_CLOSED;
    /// Bytes of the state buffer either channel call takes (`SbTakeState`, `SbPutState`).
    CHANNEL_STATE_BYTES = STATE_BYTES;
    /// `SbTakeState` field, as an index of 32-bit words: the receiver position.
    TAKE_HEAD = std::mem::offset_of!(TakeState, head) / 4;
    /// `SbTakeState`: the position at which the receiver last looked for parked senders (short
    /// of `head` while a wake is due).
    TAKE_LOOKED = std::mem::offset_of!(TakeState, looked) / 4;
    /// `SbTakeState`: the `tail` position known to be reached.
    TAKE_TAIL_SEEN = std::mem::offset_of!(TakeState, tail_seen) / 4;
    /// `SbTakeState`: the capacity validated at attach.
    TAKE_CAPACITY = std::mem::offset_of!(TakeState, capacity) / 4;
    /// `SbPutState`: the end of the sender's last reservation.
    PUT_TAIL = std::mem::offset_of!(PutState, tail) / 4;
    /// `SbPutState`: the last `head` seen.
    PUT_HEAD_SEEN = std::mem::offset_of!(PutState, head_seen) / 4;
    /// `SbPutState`: the capacity validated at attach.
    PUT_CAPACITY = std::mem::offset_of!(PutState, capacity) / 4;
    /// `SbPutState`: 1 once the sender saw the receiver's close.
    PUT_RX_CLOSED = std::mem::offset_of!(PutState, rx_closed) / 4;
    /// `SbPutState`: the sender's tag (slot + 1 with many senders, else 0).
    PUT_TAG = std::mem::offset_of!(PutState, tag) / 4;
}
