/**
 * The one symbol table of the native library, in Deno's format. The Bun adapter converts it
 * (`bun/backend.ts`); `tests/ffi_drift.test.ts` fails when it drifts from the library's exports.
 *
 * Every function returns `0` (or a documented positive value) on success and a negative code on
 * failure; the C signature of each is in its comment.
 *
 * @module
 */

/** The ABI version these bindings were written for; the library must report the same. */
export const ABI_VERSION = 1;

/** `how` argument of the open calls. */
export const OPEN = 0;
/** `how`: create exclusively. */
export const CREATE = 1;
/** `how`: open, or create if missing. */
export const OPEN_OR_CREATE = 2;
/** `flags` bit: fault all pages in now. */
export const POPULATE = 1;

/** Symbols of the native library. */
export const symbols = {
  /** `uint32_t sb_abi_version(void)` */
  sb_abi_version: { parameters: [], result: "u32" },
  /** `const char *sb_error_name(int32_t code)` */
  sb_error_name: { parameters: ["i32"], result: "pointer" },
  /** `const char *sb_error_message(int32_t code)` */
  sb_error_message: { parameters: ["i32"], result: "pointer" },
  /** `int32_t sb_open_key(uint32_t key, uint64_t size, uint32_t how, uint32_t flags, uint32_t mode, SbMapping *out)` */
  sb_open_key: {
    parameters: ["u32", "u64", "u32", "u32", "u32", "buffer"],
    result: "i32",
  },
  /** `int32_t sb_open_name(const uint8_t *name, size_t name_len, uint64_t size, uint32_t how, uint32_t flags, uint32_t mode, SbMapping *out)` */
  sb_open_name: {
    parameters: ["buffer", "usize", "u64", "u32", "u32", "u32", "buffer"],
    result: "i32",
  },
  /** `int32_t sb_unlink_key(uint32_t key)` */
  sb_unlink_key: { parameters: ["u32"], result: "i32" },
  /** `int32_t sb_unlink_name(const uint8_t *name, size_t name_len)` */
  sb_unlink_name: { parameters: ["buffer", "usize"], result: "i32" },
  /** `int32_t sb_dup(int32_t handle)`: a new handle, or a negative code */
  sb_dup: { parameters: ["i32"], result: "i32" },
  /** `int32_t sb_close(int32_t handle)` */
  sb_close: { parameters: ["i32"], result: "i32" },
  /** `void sb_release(void *bytes, void *context)`: the deallocator Bun's buffers call */
  sb_release: { parameters: ["pointer", "pointer"], result: "void" },
  /** `const void *sb_release_fn(void)`: the address of `sb_release` */
  sb_release_fn: { parameters: [], result: "pointer" },
  /** `int32_t sb_handle_count(void)`: live handles in this process */
  sb_handle_count: { parameters: [], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The shape of the symbol table. */
export type Symbols = typeof symbols;
