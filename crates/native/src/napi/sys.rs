//! The Node-API functions this library calls, declared by hand from `js_native_api.h`.
//!
//! They are not linked: the runtime that loads the library (Node.js, Deno, Bun) exports them
//! from its own executable, and [`api`] looks each one up once with `dlsym(RTLD_DEFAULT)`. So the
//! library needs no special link flags (napi-rs passes `-undefined dynamic_lookup` on macOS and
//! leaves symbols unresolved on Linux), Rust tests link it as usual, and when it is loaded with
//! `Deno.dlopen` or `bun:ffi` alone nothing here is ever looked up. A missing symbol makes
//! module registration fail with a message naming it, instead of a load-time linker error.
//!
//! Only the functions used are declared; add one by adding a line to the `napi!` list below.

use std::ffi::{c_char, c_void};
use std::sync::OnceLock;

/// `napi_env`: one JavaScript environment (a main thread or a Worker).
pub type Env = *mut c_void;
/// `napi_value`: a JavaScript value, valid during one callback.
pub type Value = *mut c_void;
/// `napi_callback_info`.
pub type CallbackInfo = *mut c_void;
/// `napi_status`.
pub type Status = i32;
/// `napi_ok`.
pub const OK: Status = 0;
/// `napi_pending_exception`.
pub const PENDING_EXCEPTION: Status = 10;
/// `napi_cannot_run_js`: the environment is being torn down (a terminated Worker).
pub const CANNOT_RUN_JS: Status = 23;
/// `napi_undefined`, what `napi_typeof` gives for `undefined`.
pub const UNDEFINED: i32 = 0;
/// `napi_object` of `napi_valuetype`.
pub const OBJECT: i32 = 6;

/// `napi_callback`.
pub type Callback = unsafe extern "C" fn(env: Env, info: CallbackInfo) -> Value;
/// `napi_finalize`.
pub type Finalize = unsafe extern "C" fn(env: Env, data: *mut c_void, hint: *mut c_void);
/// `napi_threadsafe_function_call_js`.
pub type CallJs =
    unsafe extern "C" fn(env: Env, js_callback: Value, context: *mut c_void, data: *mut c_void);
/// `napi_cleanup_hook`.
pub type CleanupHook = unsafe extern "C" fn(arg: *mut c_void);

macro_rules! napi {
    ($( $field:ident = $symbol:literal : fn($($arg:ty),*); )*) => {
        /// The resolved Node-API functions (see the module docs).
        #[allow(clippy::type_complexity)]
        pub struct Api {
            $(
                #[doc = concat!("`", $symbol, "`")]
                pub $field: unsafe extern "C" fn($($arg),*) -> Status,
            )*
        }

        fn resolve() -> Result<Api, &'static str> {
            Ok(Api {
                $(
                    $field: {
                        let name = concat!($symbol, "\0");
                        // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the global
                        // symbol scope, which holds the runtime's exported Node-API functions.
                        let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast()) };
                        if found.is_null() {
                            return Err($symbol);
                        }
                        // SAFETY: the symbol is the Node-API function of that name, whose C
                        // signature (js_native_api.h) is the one declared in this list.
                        unsafe {
                            std::mem::transmute::<
                                *mut c_void,
                                unsafe extern "C" fn($($arg),*) -> Status,
                            >(found)
                        }
                    },
                )*
            })
        }
    };
}

napi! {
    get_cb_info = "napi_get_cb_info":
        fn(Env, CallbackInfo, *mut usize, *mut Value, *mut Value, *mut *mut c_void);
    get_value_int32 = "napi_get_value_int32": fn(Env, Value, *mut i32);
    get_value_uint32 = "napi_get_value_uint32": fn(Env, Value, *mut u32);
    get_value_double = "napi_get_value_double": fn(Env, Value, *mut f64);
    get_value_bigint_uint64 = "napi_get_value_bigint_uint64": fn(Env, Value, *mut u64, *mut bool);
    get_value_bigint_int64 = "napi_get_value_bigint_int64": fn(Env, Value, *mut i64, *mut bool);
    get_value_string_utf8 = "napi_get_value_string_utf8":
        fn(Env, Value, *mut c_char, usize, *mut usize);
    create_int32 = "napi_create_int32": fn(Env, i32, *mut Value);
    create_uint32 = "napi_create_uint32": fn(Env, u32, *mut Value);
    create_double = "napi_create_double": fn(Env, f64, *mut Value);
    create_function = "napi_create_function":
        fn(Env, *const c_char, usize, Callback, *mut c_void, *mut Value);
    set_named_property = "napi_set_named_property": fn(Env, Value, *const c_char, Value);
    create_external_arraybuffer = "napi_create_external_arraybuffer":
        fn(Env, *mut c_void, usize, Finalize, *mut c_void, *mut Value);
    adjust_external_memory = "napi_adjust_external_memory": fn(Env, i64, *mut i64);
    set_instance_data = "napi_set_instance_data": fn(Env, *mut c_void, Finalize, *mut c_void);
    get_instance_data = "napi_get_instance_data": fn(Env, *mut *mut c_void);
    throw_error = "napi_throw_error": fn(Env, *const c_char, *const c_char);
    throw_type_error = "napi_throw_type_error": fn(Env, *const c_char, *const c_char);
    throw_range_error = "napi_throw_range_error": fn(Env, *const c_char, *const c_char);
    // The calls Node.js makes (calls.rs).
    get_value_int64 = "napi_get_value_int64": fn(Env, Value, *mut i64);
    get_typedarray_info = "napi_get_typedarray_info":
        fn(Env, Value, *mut i32, *mut usize, *mut *mut c_void, *mut Value, *mut usize);
    create_string_utf8 = "napi_create_string_utf8": fn(Env, *const c_char, usize, *mut Value);
    create_promise = "napi_create_promise": fn(Env, *mut *mut c_void, *mut Value);
    resolve_deferred = "napi_resolve_deferred": fn(Env, *mut c_void, Value);
    create_threadsafe_function = "napi_create_threadsafe_function":
        fn(Env, Value, Value, Value, usize, usize, *mut c_void, Option<Finalize>, *mut c_void,
           Option<CallJs>, *mut *mut c_void);
    call_threadsafe_function = "napi_call_threadsafe_function": fn(*mut c_void, *mut c_void, i32);
    release_threadsafe_function = "napi_release_threadsafe_function": fn(*mut c_void, i32);
    ref_threadsafe_function = "napi_ref_threadsafe_function": fn(Env, *mut c_void);
    unref_threadsafe_function = "napi_unref_threadsafe_function": fn(Env, *mut c_void);
    add_env_cleanup_hook = "napi_add_env_cleanup_hook": fn(Env, CleanupHook, *mut c_void);
    is_detached_arraybuffer = "napi_is_detached_arraybuffer": fn(Env, Value, *mut bool);
    detach_arraybuffer = "napi_detach_arraybuffer": fn(Env, Value);
    get_undefined = "napi_get_undefined": fn(Env, *mut Value);
    // Weak references to the buffers `wrap` made (mod.rs, `Tracked`).
    create_reference = "napi_create_reference": fn(Env, Value, u32, *mut *mut c_void);
    delete_reference = "napi_delete_reference": fn(Env, *mut c_void);
    get_reference_value = "napi_get_reference_value": fn(Env, *mut c_void, *mut Value);
    open_handle_scope = "napi_open_handle_scope": fn(Env, *mut *mut c_void);
    close_handle_scope = "napi_close_handle_scope": fn(Env, *mut c_void);
    // The views `takeViews` hands back (mod.rs).
    create_array_with_length = "napi_create_array_with_length": fn(Env, usize, *mut Value);
    type_of = "napi_typeof": fn(Env, Value, *mut i32);
    add_finalizer = "napi_add_finalizer":
        fn(Env, Value, *mut c_void, Finalize, *mut c_void, *mut *mut c_void);
    set_element = "napi_set_element": fn(Env, Value, u32, Value);
}

static API: OnceLock<Result<Api, &'static str>> = OnceLock::new();

/// The Node-API functions, looked up on first use.
///
/// # Errors
/// The name of the first function the runtime does not export.
pub fn api() -> Result<&'static Api, &'static str> {
    API.get_or_init(resolve).as_ref().map_err(|name| *name)
}
