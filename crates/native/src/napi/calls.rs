//! The calls Node.js makes, as Node-API functions: Node 20 has no FFI, so everything the
//! TypeScript `Backend` needs (open, handles, error text, wait/notify, the mutex, the
//! channel's helpers) is exported here as a JavaScript function on the module's `exports`.
//!
//! Each function converts its arguments and calls the `sb_*` function of the flat C ABI that
//! Deno and Bun call, so both paths share one implementation and one set of result codes. Only
//! `waitAsync` differs: it registers the wait with the native async wait pool
//! ([`shared_buffer::sync::wait_async`], which Bun reaches through `sb_wait_async`) and resolves a
//! Promise through a thread-safe function, so the event loop never blocks and Node's own thread
//! pool (four threads, shared with file I/O) is never occupied by a wait.
//!
//! Addresses are JavaScript numbers (measured in Node 20: a mutex lock+unlock pair costs less as
//! a number than as a BigInt; see `docs/node.md`); a BigInt is accepted too. Argument types are
//! checked (a wrong type throws a `TypeError`); ranges, bounds and liveness of addresses are
//! checked by the TypeScript side before it calls, exactly as for Deno and Bun.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::{Mutex, PoisonError};

use super::sys::{self, Api, Env, Value};
use super::{Outcome, Thrown, check, throw};
use crate::{
    SB_WAIT_PENDING, STATE_BYTES, SbMapping, sb_channel_commit_run, sb_channel_scan_run, sb_close,
    sb_dup, sb_errno, sb_error_message, sb_error_name, sb_handle_count, sb_mutex_held_in,
    sb_mutex_init, sb_mutex_lock, sb_mutex_open, sb_mutex_size, sb_mutex_trylock, sb_mutex_unlock,
    sb_notify, sb_open_key, sb_open_name, sb_pid_namespace, sb_process_alive, sb_user_name,
    sb_wait, sb_wait_cancel, sb_wait_spin, start_wait_async,
};

/// `napi_biguint64_array` in `napi_typedarray_type`.
pub(super) const BIGUINT64_ARRAY: i32 = 10;
/// `napi_uint8_array`.
const UINT8_ARRAY: i32 = 1;
/// `napi_int32_array`.
const INT32_ARRAY: i32 = 5;
/// The 64-bit words of one `SbMapping`, which an open writes.
const MAPPING_WORDS: usize = size_of::<SbMapping>() / 8;
/// `napi_tsfn_nonblocking`.
const TSFN_NONBLOCKING: i32 = 0;
/// `napi_tsfn_release`.
const TSFN_RELEASE: i32 = 0;

type Call = Outcome;

/// The arguments of one call, read with `napi_get_cb_info`.
struct Args<'a> {
    api: &'a Api,
    env: Env,
    argv: [Value; 8],
    argc: usize,
}

impl<'a> Args<'a> {
    /// # Safety
    /// `env` and `info` must be those of the running callback.
    unsafe fn read(
        api: &'a Api,
        env: Env,
        info: sys::CallbackInfo,
    ) -> Result<(Self, *mut c_void), Thrown> {
        // SAFETY: forwarded from the caller.
        let (argv, argc, data) = unsafe { super::arguments::<8>(api, env, info)? };
        Ok((
            Self {
                api,
                env,
                argv,
                argc,
            },
            data,
        ))
    }

    fn arg(&self, i: usize) -> Result<Value, Thrown> {
        if i < self.argc.min(self.argv.len()) {
            Ok(self.argv[i])
        } else {
            Err(Thrown::Type("missing argument".into()))
        }
    }

    fn u32(&self, i: usize) -> Result<u32, Thrown> {
        let mut out = 0;
        // SAFETY: a value of this callback and a valid out-pointer.
        let status = unsafe { (self.api.get_value_uint32)(self.env, self.arg(i)?, &mut out) };
        ok_or(status, out, "expected a number")
    }

    fn i32(&self, i: usize) -> Result<i32, Thrown> {
        let mut out = 0;
        // SAFETY: as above.
        let status = unsafe { (self.api.get_value_int32)(self.env, self.arg(i)?, &mut out) };
        ok_or(status, out, "expected a number")
    }

    fn i64(&self, i: usize) -> Result<i64, Thrown> {
        let mut out = 0;
        // SAFETY: as above.
        let status = unsafe { (self.api.get_value_int64)(self.env, self.arg(i)?, &mut out) };
        ok_or(status, out, "expected a number")
    }

    fn u64_bigint(&self, i: usize) -> Result<u64, Thrown> {
        let (mut out, mut lossless) = (0, false);
        // SAFETY: as above.
        let status = unsafe {
            (self.api.get_value_bigint_uint64)(self.env, self.arg(i)?, &mut out, &mut lossless)
        };
        if status == sys::OK && !lossless {
            return Err(Thrown::Type("BigInt out of the u64 range".into()));
        }
        ok_or(status, out, "expected a BigInt")
    }

    fn i64_bigint(&self, i: usize) -> Result<i64, Thrown> {
        let (mut out, mut lossless) = (0, false);
        // SAFETY: as above.
        let status = unsafe {
            (self.api.get_value_bigint_int64)(self.env, self.arg(i)?, &mut out, &mut lossless)
        };
        if status == sys::OK && !lossless {
            return Err(Thrown::Type("BigInt out of the i64 range".into()));
        }
        ok_or(status, out, "expected a BigInt")
    }

    /// An address: a non-negative integral number (below 2^53), or a BigInt.
    fn address(&self, i: usize) -> Result<usize, Thrown> {
        let value = self.arg(i)?;
        let mut number = 0.0;
        // SAFETY: as above.
        if unsafe { (self.api.get_value_double)(self.env, value, &mut number) } == sys::OK {
            if (0.0..=9_007_199_254_740_991.0).contains(&number) && number.fract() == 0.0 {
                return Ok(number as usize);
            }
            return Err(Thrown::Type("an address must be a safe integer".into()));
        }
        let wrong = || Thrown::Type("an address must be a number or a BigInt".into());
        usize::try_from(self.u64_bigint(i).map_err(|_| wrong())?).map_err(|_| wrong())
    }

    /// The bytes of a typed array of `kind`: (data, element count).
    fn typed_array(&self, i: usize, kind: i32) -> Result<(*mut c_void, usize), Thrown> {
        let (mut ty, mut length, mut data) = (-1, 0, ptr::null_mut());
        let (mut buffer, mut offset) = (ptr::null_mut(), 0);
        // SAFETY: a value of this callback and valid out-pointers.
        let status = unsafe {
            (self.api.get_typedarray_info)(
                self.env,
                self.arg(i)?,
                &mut ty,
                &mut length,
                &mut data,
                &mut buffer,
                &mut offset,
            )
        };
        if status != sys::OK || ty != kind {
            let wanted = match kind {
                UINT8_ARRAY => "a Uint8Array",
                INT32_ARRAY => "an Int32Array",
                _ => "a BigUint64Array",
            };
            return Err(Thrown::Type(format!("expected {wanted}")));
        }
        Ok((data, length))
    }

    /// A string argument of at most 63 bytes of UTF-8 (names of constants and errors), or None
    /// when it is longer.
    fn short_string(&self, i: usize) -> Result<Option<ShortString>, Thrown> {
        let mut text = ShortString {
            bytes: [0; 64],
            len: 0,
        };
        // SAFETY: `bytes` has room for its length, including the NUL Node-API writes.
        let status = unsafe {
            (self.api.get_value_string_utf8)(
                self.env,
                self.arg(i)?,
                text.bytes.as_mut_ptr().cast::<c_char>(),
                text.bytes.len(),
                &mut text.len,
            )
        };
        ok_or(status, (), "expected a string")?;
        // A string that filled the buffer may have been cut short.
        Ok((text.len + 1 < text.bytes.len()).then_some(text))
    }

    fn int(&self, value: i32) -> Call {
        let mut out = ptr::null_mut();
        check(
            // SAFETY: a valid env and out-pointer.
            unsafe { (self.api.create_int32)(self.env, value, &mut out) },
            "napi_create_int32",
        )?;
        Ok(out)
    }
}

/// A short string read by [`Args::short_string`].
struct ShortString {
    bytes: [u8; 64],
    len: usize,
}

impl std::ops::Deref for ShortString {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn ok_or<T>(status: sys::Status, value: T, message: &str) -> Result<T, Thrown> {
    if status == sys::OK {
        Ok(value)
    } else {
        Err(Thrown::Type(message.into()))
    }
}

/// The body of one exported function: arguments in, a value out (or an error to throw).
type Body = fn(&Args<'_>, *mut c_void) -> Call;

/// Runs `body` for a Node-API callback: reads the arguments, catches any panic, and turns an
/// error into a thrown JavaScript exception (returning null, as Node-API expects).
///
/// # Safety
/// `env` and `info` must be those of the running callback.
unsafe fn run(env: Env, info: sys::CallbackInfo, body: Body) -> Value {
    let Ok(api) = sys::api() else {
        return ptr::null_mut(); // unreachable: registration resolved the API
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded from the caller.
        let (args, data) = unsafe { Args::read(api, env, info) }?;
        body(&args, data)
    }))
    .unwrap_or_else(|_| {
        Err(Thrown::Code(
            crate::SB_EPANIC,
            "internal error in the native library (a panic was caught)".into(),
        ))
    });
    outcome.unwrap_or_else(|thrown| {
        // SAFETY: env is live and this is its thread.
        unsafe { throw(api, env, thrown) };
        ptr::null_mut()
    })
}

/// Declares `extern "C"` Node-API callbacks that run a [`Body`] each.
macro_rules! callbacks {
    ($($name:ident => $body:expr;)*) => {
        $(
            unsafe extern "C" fn $name(env: Env, info: sys::CallbackInfo) -> Value {
                let body: Body = $body;
                // SAFETY: Node-API calls this with the callback's own env and info.
                unsafe { run(env, info, body) }
            }
        )*
    };
}

callbacks! {
    open_key => |a, _| {
        let (out, len) = a.typed_array(6, BIGUINT64_ARRAY)?;
        if len < MAPPING_WORDS {
            return Err(Thrown::Type(format!("out must hold {MAPPING_WORDS} elements")));
        }
        // SAFETY: `out` is the data of a live BigUint64Array of at least MAPPING_WORDS elements
        // (one SbMapping), which this synchronous call alone uses.
        let rc = unsafe {
            sb_open_key(a.u32(0)?, a.u64_bigint(1)?, a.u32(2)?, a.u32(3)?, a.u32(4)?, a.i64_bigint(5)?, out.cast::<SbMapping>())
        };
        // SAFETY: as above; the env of this call, on its thread.
        unsafe { opened_by(a, rc, out.cast::<SbMapping>()) };
        a.int(rc)
    };
    open_name => |a, _| {
        let (name, name_len) = a.typed_array(0, UINT8_ARRAY)?;
        let (out, len) = a.typed_array(6, BIGUINT64_ARRAY)?;
        if len < MAPPING_WORDS {
            return Err(Thrown::Type(format!("out must hold {MAPPING_WORDS} elements")));
        }
        let name_len = u32::try_from(name_len).map_err(|_| Thrown::Type("name too long".into()))?;
        // SAFETY: `name` is the data of a live Uint8Array of `name_len` bytes; `out` as above.
        let rc = unsafe {
            sb_open_name(name.cast(), name_len, a.u64_bigint(1)?, a.u32(2)?, a.u32(3)?, a.u32(4)?, a.i64_bigint(5)?, out.cast::<SbMapping>())
        };
        // SAFETY: as above; the env of this call, on its thread.
        unsafe { opened_by(a, rc, out.cast::<SbMapping>()) };
        a.int(rc)
    };
    user_name => |a, _| {
        let uid = a.u32(0)?;
        let mut buf = vec![0u8; 64];
        loop {
            let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            // SAFETY: `buf` is valid for `len` bytes.
            let n = unsafe { sb_user_name(uid, buf.as_mut_ptr(), len) };
            if n < 0 {
                let mut undefined = ptr::null_mut();
                // SAFETY: a valid env and out-pointer.
                check(unsafe { (a.api.get_undefined)(a.env, &mut undefined) }, "napi_get_undefined")?;
                return Ok(undefined);
            }
            if n as usize <= buf.len() {
                let mut out = ptr::null_mut();
                // SAFETY: the first `n` bytes of `buf` were written; Node-API copies them.
                let status = unsafe {
                    (a.api.create_string_utf8)(a.env, buf.as_ptr().cast(), n as usize, &mut out)
                };
                check(status, "napi_create_string_utf8")?;
                return Ok(out);
            }
            buf.resize(n as usize, 0);
        }
    };
    dup => |a, _| {
        let handle = sb_dup(a.i32(0)?);
        if handle > 0 {
            // SAFETY: the env of this call, on its thread.
            unsafe { super::opened(a.api, a.env, handle) };
        }
        a.int(handle)
    };
    close => |a, _| {
        let handle = a.i32(0)?;
        let rc = sb_close(handle);
        // Still open after an `EBUSY` (a lock held in its last mapping): still noted.
        if rc == 0 {
            // SAFETY: the env of this call, on its thread.
            unsafe { super::owned(a.api, a.env, handle) };
        }
        a.int(rc)
    };
    handle_count => |a, _| a.int(sb_handle_count());
    error_name => |a, _| string(a, sb_error_name(a.i32(0)?));
    error_message => |a, _| string(a, sb_error_message(a.i32(0)?));
    wait => |a, _| {
        let (address, expected, timeout, spins) = (a.address(0)?, a.u32(1)?, a.i64(2)?, a.u32(3)?);
        // SAFETY: the TypeScript side checked that the address is an aligned word inside a live
        // mapping of this library, which stays mapped during this synchronous call.
        let rc = unsafe {
            if spins > 0 {
                sb_wait_spin(address as *const u32, expected, timeout, spins)
            } else {
                sb_wait(address as *const u32, expected, timeout)
            }
        };
        a.int(rc)
    };
    notify => |a, _| {
        // SAFETY: the kernel never dereferences the address of a wake (see sb_notify).
        a.int(unsafe { sb_notify(a.address(0)? as *const u32, a.u32(1)?) })
    };
    cancel_waits => |a, _| a.int(sb_wait_cancel(a.address(0)?, a.address(1)?));
    mutex_init => |a, _| {
        // SAFETY: checked by the TypeScript side as for Deno and Bun (see sb_mutex_init).
        a.int(unsafe { sb_mutex_init(a.address(0)? as *mut u8) })
    };
    mutex_open => |a, _| {
        // SAFETY: as sb_mutex_init.
        a.int(unsafe { sb_mutex_open(a.address(0)? as *mut u8) })
    };
    // A length, like an address, is a non-negative integer below 2^53.
    mutex_held_in => |a, _| a.int(sb_mutex_held_in(a.address(0)? as *const u8, a.address(1)? as u64));
    mutex_lock => |a, _| {
        // SAFETY: as sb_mutex_init; the lock belongs to this (the JavaScript) thread.
        a.int(unsafe { sb_mutex_lock(a.address(0)? as *mut u8, a.i64(1)?) })
    };
    mutex_trylock => |a, _| {
        // SAFETY: as above.
        a.int(unsafe { sb_mutex_trylock(a.address(0)? as *mut u8) })
    };
    mutex_unlock => |a, _| {
        // SAFETY: as above.
        a.int(unsafe { sb_mutex_unlock(a.address(0)? as *mut u8) })
    };
    mutex_size => |a, _| a.int(i32::try_from(sb_mutex_size()).unwrap_or(i32::MAX));
    process_alive => |a, _| a.int(sb_process_alive(a.u32(0)?));
    // As an int32 bit for bit (JavaScript takes it back with `>>> 0`).
    pid_namespace => |a, _| a.int(sb_pid_namespace() as i32);
    errno => |a, _| {
        let value = match a.short_string(0)? {
            // SAFETY: the slice is valid for its length.
            Some(name) => unsafe { sb_errno(name.as_ptr(), name.len() as u32) },
            None => 0, // longer than any error's name
        };
        a.int(value)
    };
    detach => |a, _| {
        // Node 20 has no `ArrayBuffer.prototype.transfer`: this is how `close()` detaches.
        let buffer = a.arg(0)?;
        let mut detached = false;
        // SAFETY: a value of this callback and a valid out-pointer.
        let status = unsafe { (a.api.is_detached_arraybuffer)(a.env, buffer, &mut detached) };
        check(status, "napi_is_detached_arraybuffer")?;
        if !detached {
            // SAFETY: as above; a buffer that cannot be detached gives a status, not a crash.
            let status = unsafe { (a.api.detach_arraybuffer)(a.env, buffer) };
            check(status, "napi_detach_arraybuffer")?;
        }
        let mut undefined = ptr::null_mut();
        // SAFETY: a valid env and out-pointer.
        check(unsafe { (a.api.get_undefined)(a.env, &mut undefined) }, "napi_get_undefined")?;
        Ok(undefined)
    };
    channel_scan_run => |a, _| {
        let region = a.address(0)?;
        let (state, state_len) = a.typed_array(1, INT32_ARRAY)?;
        let (out, out_len) = a.typed_array(2, UINT8_ARRAY)?;
        let (lens, lens_len) = a.typed_array(3, INT32_ARRAY)?;
        let (max, small) = (a.u32(4)?, a.u32(5)?);
        if state_len * 4 < STATE_BYTES {
            return Err(Thrown::Type(format!("state must hold {STATE_BYTES} bytes")));
        }
        let out_len = u32::try_from(out_len).unwrap_or(u32::MAX);
        let max = max.min(u32::try_from(lens_len).unwrap_or(u32::MAX));
        // SAFETY: `state`, `out` and `lens` are the data of live typed arrays of the lengths
        // checked here (`max` is at most the elements of `lens`), which this synchronous call
        // alone uses (a detached one has no data and length 0: null `out` or `lens` gives 0);
        // the TypeScript side checked that `region` is a live channel region of the capacity
        // `state` holds, as for Deno and Bun.
        let n = unsafe {
            sb_channel_scan_run(region as *mut u8, state.cast(), out.cast(), out_len, lens.cast(), max, small)
        };
        a.int(n)
    };
    channel_commit_run => |a, _| {
        let region = a.address(0)?;
        let (state, state_len) = a.typed_array(1, INT32_ARRAY)?;
        let idx = a.u32(2)?;
        let (lens, lens_len) = a.typed_array(3, INT32_ARRAY)?;
        let count = a.u32(4)?;
        if state_len * 4 < STATE_BYTES {
            return Err(Thrown::Type(format!("state must hold {STATE_BYTES} bytes")));
        }
        if count as usize > lens_len {
            return Err(Thrown::Type("lens must hold count elements".into()));
        }
        // SAFETY: `state` and `lens` are the data of live typed arrays of the lengths checked
        // here, which this synchronous call alone uses; the TypeScript side checked that
        // `region` is a live channel region of the capacity `state` holds, and the records are
        // its sender's own reservation, as for Deno and Bun.
        let rc = unsafe { sb_channel_commit_run(region as *mut u8, state.cast(), idx, lens.cast(), count) };
        a.int(rc)
    };
    wait_async => |a, data| {
        // SAFETY: `data` is the `Waits` that `register` made for this environment and keeps
        // alive until the environment is torn down; it is only used on this thread.
        let waits = unsafe { &*data.cast::<Waits>() };
        waits.start(a)
    };
}

/// After an `sb_open_*` that returned `rc` into `out`: notes the new handle as owned by no
/// object yet (see `super::opened`).
///
/// # Safety
/// `out` points to the `SbMapping` the call filled when `rc` is 0; `a` is the running call's.
unsafe fn opened_by(a: &Args<'_>, rc: i32, out: *const SbMapping) {
    if rc == 0 {
        // SAFETY: the caller's promise; read unaligned, as a BigUint64Array's data may not be.
        let mapping = unsafe { out.read_unaligned() };
        if let Ok(handle) = i32::try_from(mapping.handle) {
            // SAFETY: the env of this call, on its thread.
            unsafe { super::opened(a.api, a.env, handle) };
        }
    }
}

fn string(a: &Args<'_>, text: *const c_char) -> Call {
    let mut out = ptr::null_mut();
    check(
        // SAFETY: sb_error_name/sb_error_message return static NUL-terminated strings;
        // NAPI_AUTO_LENGTH (usize::MAX) tells Node-API to find the NUL.
        unsafe { (a.api.create_string_utf8)(a.env, text, usize::MAX, &mut out) },
        "napi_create_string_utf8",
    )?;
    Ok(out)
}

/// The functions [`register`] adds to `exports`, by JavaScript name.
const FUNCTIONS: &[(&CStr, sys::Callback)] = &[
    (c"openKey", open_key),
    (c"openName", open_name),
    (c"userName", user_name),
    (c"dup", dup),
    (c"close", close),
    (c"handleCount", handle_count),
    (c"errorName", error_name),
    (c"errorMessage", error_message),
    (c"wait", wait),
    (c"notify", notify),
    (c"cancelWaits", cancel_waits),
    (c"mutexInit", mutex_init),
    (c"mutexOpen", mutex_open),
    (c"mutexHeldIn", mutex_held_in),
    (c"mutexLock", mutex_lock),
    (c"mutexTryLock", mutex_trylock),
    (c"mutexUnlock", mutex_unlock),
    (c"mutexSize", mutex_size),
    (c"processAlive", process_alive),
    (c"pidNamespace", pid_namespace),
    (c"errno", errno),
    (c"detach", detach),
    (c"channelScanRun", channel_scan_run),
    (c"channelCommitRun", channel_commit_run),
];

/// Adds the calls to `exports`.
///
/// # Safety
/// `env` and `exports` must be those of the running module registration.
pub(super) unsafe fn register(
    api: &Api,
    env: Env,
    exports: Value,
) -> Result<(), (&'static str, sys::Status)> {
    let waits = Box::into_raw(Box::new(Waits::new()));
    // SAFETY: the hook frees `waits` when this environment is torn down, after which nothing
    // calls `waitAsync` of this environment again.
    let status = unsafe { (api.add_env_cleanup_hook)(env, drop_waits, waits.cast()) };
    if status != sys::OK {
        // SAFETY: made above and not shared.
        drop(unsafe { Box::from_raw(waits) });
        return Err(("napi_add_env_cleanup_hook", status));
    }
    let entries = FUNCTIONS
        .iter()
        .map(|&(name, cb)| (name, cb, ptr::null_mut()))
        .chain([(
            c"waitAsync",
            wait_async as sys::Callback,
            waits.cast::<c_void>(),
        )]);
    for (name, cb, data) in entries {
        let mut function = ptr::null_mut();
        // SAFETY: a valid env, a NUL-terminated name, and a callback of the right signature.
        let status = unsafe {
            (api.create_function)(env, name.as_ptr(), usize::MAX, cb, data, &mut function)
        };
        if status != sys::OK {
            return Err(("napi_create_function", status));
        }
        // SAFETY: as above; `exports` is the module's exports object.
        let status = unsafe { (api.set_named_property)(env, exports, name.as_ptr(), function) };
        if status != sys::OK {
            return Err(("napi_set_named_property", status));
        }
    }
    Ok(())
}

// ---- waitAsync -------------------------------------------------------------------------------

/// A thread-safe function pointer that may cross threads (Node-API allows calling it from any
/// thread).
#[derive(Clone, Copy)]
struct Tsfn(*mut c_void);
// SAFETY: napi_call_threadsafe_function may be called from any thread; see LIVE for lifetime.
unsafe impl Send for Tsfn {}

/// The thread-safe function of each environment that has one, by [`Waits::id`]. A completion
/// calls it only while holding this lock and finding it here; an environment's teardown removes
/// it first (`forget`, a cleanup hook registered after the function was made, runs before the
/// function's own teardown in Node, and before `drop_waits` everywhere), so no completion ever
/// calls a destroyed function, and `settle` touches the environment only while it is here.
static LIVE: Mutex<Option<HashMap<u64, Tsfn>>> = Mutex::new(None);
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn live() -> std::sync::MutexGuard<'static, Option<HashMap<u64, Tsfn>>> {
    // Every update is one insert or remove, so a poisoned lock still holds a consistent map.
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The async waits of one environment (the main thread, or one Worker). Used on its JavaScript
/// thread only.
struct Waits {
    id: u64,
    /// Created on the first wait; null until then.
    tsfn: Cell<*mut c_void>,
    /// Waits started and not yet resolved. While above zero the thread-safe function is
    /// referenced, which keeps the event loop alive, as a pending `Atomics.waitAsync` does.
    pending: Cell<usize>,
}

/// What a completion hands to the JavaScript thread.
struct Completion {
    deferred: *mut c_void,
    code: i32,
    /// The [`Waits::id`] of the environment that made the wait.
    id: u64,
}

impl Waits {
    fn new() -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            tsfn: Cell::new(ptr::null_mut()),
            pending: Cell::new(0),
        }
    }

    /// `waitAsync(address, expected, timeoutNs)`: a Promise of the same codes as `wait`.
    fn start(&self, a: &Args<'_>) -> Call {
        let (address, expected, timeout) = (a.address(0)?, a.u32(1)?, a.i64(2)?);
        let tsfn = self.tsfn(a)?;
        let (mut deferred, mut promise) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: a valid env and out-pointers.
        let status = unsafe { (a.api.create_promise)(a.env, &mut deferred, &mut promise) };
        check(status, "napi_create_promise")?;
        let id = self.id;
        let deferred_addr = deferred as usize;
        let done = move |code| {
            let data = Box::into_raw(Box::new(Completion {
                deferred: deferred_addr as *mut c_void,
                code,
                id,
            }));
            let queued = match (live().as_ref().and_then(|map| map.get(&id)), sys::api()) {
                // SAFETY: the function is live while it is in LIVE and the lock is held (the
                // guard lives to the end of this statement); the call only queues `data` for
                // the JavaScript thread.
                (Some(tsfn), Ok(api)) => unsafe {
                    (api.call_threadsafe_function)(tsfn.0, data.cast(), TSFN_NONBLOCKING) == sys::OK
                },
                _ => false,
            };
            if !queued {
                // The environment is going away and nobody awaits the Promise.
                // SAFETY: not queued, so still ours.
                drop(unsafe { Box::from_raw(data) });
            }
        };
        // SAFETY: the TypeScript side checked that the address is an aligned word inside a live
        // mapping of this library; on Linux only the kernel reads it later (see sb_wait_async).
        let code = unsafe { start_wait_async(address as *const u32, expected, timeout, id, done) };
        if code == SB_WAIT_PENDING {
            if self.pending.get() == 0 {
                // SAFETY: on the JavaScript thread, with this environment's function.
                unsafe { (a.api.ref_threadsafe_function)(a.env, tsfn) };
            }
            self.pending.set(self.pending.get() + 1);
            return Ok(promise);
        }
        // Settled at once; `done` was dropped without running.
        let value = a.int(code)?;
        // SAFETY: a deferred of this env, resolved once.
        unsafe { (a.api.resolve_deferred)(a.env, deferred, value) };
        Ok(promise)
    }

    /// This environment's thread-safe function, created (unreferenced) on first use.
    fn tsfn(&self, a: &Args<'_>) -> Result<*mut c_void, Thrown> {
        let existing = self.tsfn.get();
        if !existing.is_null() {
            return Ok(existing);
        }
        let mut name = ptr::null_mut();
        // SAFETY: a valid env, a NUL-terminated name.
        let status = unsafe {
            (a.api.create_string_utf8)(
                a.env,
                c"shared-buffer waitAsync".as_ptr(),
                usize::MAX,
                &mut name,
            )
        };
        check(status, "napi_create_string_utf8")?;
        let mut tsfn = ptr::null_mut();
        // SAFETY: valid env and values; `settle` has the call_js signature; the context is this
        // Waits, which outlives every call with a non-null env (freed only at teardown).
        let status = unsafe {
            (a.api.create_threadsafe_function)(
                a.env,
                ptr::null_mut(),
                ptr::null_mut(),
                name,
                0,
                1,
                ptr::null_mut(),
                None,
                ptr::from_ref(self).cast_mut().cast(),
                Some(settle),
                &mut tsfn,
            )
        };
        check(status, "napi_create_threadsafe_function")?;
        // Unreferenced until a wait is pending, so an idle module never keeps the process alive.
        // SAFETY: on the JavaScript thread, with the function just made.
        unsafe { (a.api.unref_threadsafe_function)(a.env, tsfn) };
        // Registered after the function's own teardown hook, so it runs before it.
        // SAFETY: `forget` only removes this id from LIVE.
        let status =
            unsafe { (a.api.add_env_cleanup_hook)(a.env, forget, self.id as usize as *mut c_void) };
        if status != sys::OK {
            // SAFETY: the function just made, released once.
            unsafe { (a.api.release_threadsafe_function)(tsfn, TSFN_RELEASE) };
            return Err(Thrown::Status("napi_add_env_cleanup_hook", status));
        }
        live()
            .get_or_insert_with(HashMap::new)
            .insert(self.id, Tsfn(tsfn));
        self.tsfn.set(tsfn);
        Ok(tsfn)
    }
}

/// The thread-safe function's `call_js`: resolves one wait's Promise on the JavaScript thread.
/// With a null `env` (teardown) it only frees the completion.
unsafe extern "C" fn settle(env: Env, _js: Value, context: *mut c_void, data: *mut c_void) {
    // SAFETY: every `data` queued is a Box<Completion> (see Waits::start).
    let completion = unsafe { Box::from_raw(data.cast::<Completion>()) };
    // Bun delivers what was queued before a Worker's teardown after its cleanup hooks ran (with
    // the env not null yet): once `forget` removed the environment from LIVE, its Waits may be
    // freed and its env going, so nothing is touched but the completion. `forget` and this run
    // on the environment's JavaScript thread only, so the look cannot go stale.
    if env.is_null()
        || !live()
            .as_ref()
            .is_some_and(|map| map.contains_key(&completion.id))
    {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let Ok(api) = sys::api() else { return };
        // SAFETY: the environment is in LIVE, so its cleanup hooks have not run: the context is
        // its live Waits (freed by `drop_waits`, which runs after `forget`).
        let waits = unsafe { &*context.cast::<Waits>() };
        let left = waits.pending.get().saturating_sub(1);
        waits.pending.set(left);
        let mut value = ptr::null_mut();
        // SAFETY: on the JavaScript thread of `env`, which made the deferred; resolved once.
        unsafe {
            if left == 0 {
                (api.unref_threadsafe_function)(env, waits.tsfn.get());
            }
            (api.create_int32)(env, completion.code, &mut value);
            (api.resolve_deferred)(env, completion.deferred, value);
        }
    }));
}

/// Teardown of an environment's thread-safe function: completions stop calling it, then its
/// pending waits end (their completions find no function, and free what they carry). Left
/// registered, they would take wake-ups from live waiters (a notify of one wakes a dead wait)
/// and room in the service until they timed out, or for ever.
unsafe extern "C" fn forget(id: *mut c_void) {
    let id = id as usize as u64;
    if let Some(map) = live().as_mut() {
        map.remove(&id);
    }
    shared_buffer::sync::cancel_owned(id);
}

/// Teardown of an environment: frees its [`Waits`].
unsafe extern "C" fn drop_waits(waits: *mut c_void) {
    // SAFETY: made by Box::into_raw in register, freed only here, once.
    drop(unsafe { Box::from_raw(waits.cast::<Waits>()) });
}
