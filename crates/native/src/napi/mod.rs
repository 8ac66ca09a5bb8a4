//! The Node-API module: the same library file, loaded with `process.dlopen`, registers functions
//! on its `exports`. The Node-API functions are looked up at run time ([`sys`]), so loading the
//! library through `Deno.dlopen` or `bun:ffi` alone never touches them.

mod calls;
// Until the external buffers land, some declared functions are not called yet.
#[allow(dead_code)]
mod sys;

use std::ptr;

/// Node-API's entry point: fills `exports` with this module's functions. On failure it throws
/// an Error naming the missing Node-API function and returns null.
///
/// # Safety
/// Called by the runtime with a valid `env` and `exports`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn napi_register_module_v1(env: sys::Env, exports: sys::Value) -> sys::Value {
    let registered = std::panic::catch_unwind(|| {
        let api = sys::api()?;
        // SAFETY: forwarded from the caller.
        unsafe { calls::register(api, env, exports) }.map(|()| api)
    });
    match registered {
        Ok(Ok(_)) => exports,
        Ok(Err(missing)) => {
            if let Ok(api) = sys::api() {
                let message = format!("shared-buffer: Node-API registration failed at {missing}\0");
                // SAFETY: a valid env and a NUL-terminated message.
                unsafe { (api.throw_error)(env, ptr::null(), message.as_ptr().cast()) };
            }
            ptr::null_mut()
        }
        Err(_) => ptr::null_mut(),
    }
}
