// Generated from crates/native/src/abi.rs by `make generate`. Do not edit.

/**
 * The one symbol table of the native library, in Deno's format, with the C signature of
 * each function in its comment; the Bun adapter converts it (`bun/backend.ts`). Every
 * function that can fail returns a negative code (`-errno` of this platform) on failure.
 *
 * "usize" is always an address passed by value (a BigInt in Deno, a number in Bun),
 * checked in TypeScript to lie inside a live mapping of this library.
 *
 * @module
 */

/** The ABI version these bindings were generated for; the library must report the same. */
export const ABI_VERSION = 26;
/** `how` argument of the open calls: open an existing segment. */
export const OPEN = 0;
/** `how`: create exclusively. */
export const CREATE = 1;
/** `how`: open, or create if missing. */
export const OPEN_OR_CREATE = 2;
/** `flags` bit of the open calls: fault every page in now. */
export const POPULATE = 1;
/** `flags` bit, with `CREATE` only: remove a leftover segment under the id first. */
export const REPLACE = 2;
/** `owner` argument of the open calls: accept segments of this user and of root. */
export const OWNER_TRUSTED = -1;
/** `owner`: accept segments of any user. */
export const OWNER_ANY = -2;
/** A wait ended by a notify, or spuriously. */
export const WAIT_OK = 0;
/** A wait found the word not holding the expected value. */
export const WAIT_NOT_EQUAL = 1;
/** A wait timed out. */
export const WAIT_TIMED_OUT = 2;
/** A lock was acquired. */
export const LOCK_ACQUIRED = 0;
/** A lock was acquired after its previous owner died holding it. */
export const LOCK_OWNER_DIED = 1;
/** `sb_channel_put`: the message was sent. */
export const PUT_SENT = 0;
/** `sb_channel_put`: no room now, nothing reserved. */
export const PUT_FULL = 1;
/** `sb_channel_put`: committed, but the receiver had closed without consuming it (`EPIPE`). */
export const PUT_CLOSED = 2;
/** Bytes of the state buffer either channel call takes (`SbTakeState`, `SbPutState`). */
export const CHANNEL_STATE_BYTES = 20;
/** `SbTakeState` field, as an index of 32-bit words: the receiver position. */
export const TAKE_HEAD = 0;
/** `SbTakeState`: the position at which the receiver last looked for parked senders (short of `head` while a wake is due). */
export const TAKE_LOOKED = 1;
/** `SbTakeState`: the `tail` position known to be reached. */
export const TAKE_TAIL_SEEN = 2;
/** `SbTakeState`: the capacity validated at attach. */
export const TAKE_CAPACITY = 3;
/** `SbPutState`: the end of the sender's last reservation. */
export const PUT_TAIL = 0;
/** `SbPutState`: the last `head` seen. */
export const PUT_HEAD_SEEN = 1;
/** `SbPutState`: the capacity validated at attach. */
export const PUT_CAPACITY = 2;
/** `SbPutState`: 1 once the sender saw the receiver's close. */
export const PUT_RX_CLOSED = 3;
/** `SbPutState`: the sender's tag (slot + 1 with many senders, else 0). */
export const PUT_TAG = 4;

/** Symbols of the native library. */
export const symbols = {
  /** `uint32_t sb_abi_version(void)`: the ABI version. */
  sb_abi_version: { parameters: [], result: "u32" },
  /** `const char *sb_error_name(int32_t code)`: the symbolic name of a code (`"EEXIST"`), static. */
  sb_error_name: { parameters: ["i32"], result: "pointer" },
  /** `const char *sb_error_message(int32_t code)`: a short description of a code, static. */
  sb_error_message: { parameters: ["i32"], result: "pointer" },
  /** `int32_t sb_errno(const uint8_t *name, uint32_t name_len)`: the positive error number of a symbolic name on this platform, 0 if unknown. */
  sb_errno: { parameters: ["buffer", "u32"], result: "i32" },
  /** `int32_t sb_open_key(uint32_t key, uint64_t size, uint32_t how, uint32_t flags, uint32_t mode, int64_t owner, SbMapping *out)`: 0, or a negative code; the mapping goes to `out`. */
  sb_open_key: { parameters: ["u32", "u64", "u32", "u32", "u32", "i64", "buffer"], result: "i32" },
  /** `int32_t sb_open_name(const uint8_t *name, uint32_t name_len, uint64_t size, uint32_t how, uint32_t flags, uint32_t mode, int64_t owner, SbMapping *out)`: 0, or a negative code; the mapping goes to `out`. */
  sb_open_name: {
    parameters: ["buffer", "u32", "u64", "u32", "u32", "u32", "i64", "buffer"],
    result: "i32",
  },
  /** `int32_t sb_user_name(uint32_t uid, uint8_t *buf, uint32_t len)`: the user name's length (written to `buf` up to `len` bytes), or -ENOENT. */
  sb_user_name: { parameters: ["u32", "buffer", "u32"], result: "i32" },
  /** `int32_t sb_unlink_key(uint32_t key)`: 0, or a negative code. */
  sb_unlink_key: { parameters: ["u32"], result: "i32" },
  /** `int32_t sb_unlink_name(const uint8_t *name, uint32_t name_len)`: 0, or a negative code. */
  sb_unlink_name: { parameters: ["buffer", "u32"], result: "i32" },
  /** `int32_t sb_unlink_key_own(uint32_t key, const uint64_t *identity)`: 0; -ENOENT if the key names another segment than `identity` now, or none. */
  sb_unlink_key_own: { parameters: ["u32", "buffer"], result: "i32" },
  /** `int32_t sb_unlink_name_own(const uint8_t *name, uint32_t name_len, const uint64_t *identity)`: 0; -ENOENT if the name names another segment than `identity` now, or none. */
  sb_unlink_name_own: { parameters: ["buffer", "u32", "buffer"], result: "i32" },
  /** `int32_t sb_dup(int32_t handle)`: a new handle, or a negative code. */
  sb_dup: { parameters: ["i32"], result: "i32" },
  /** `int32_t sb_close(int32_t handle)`: 0, -EBADF, or -EBUSY while this process holds a lock in the last mapping it would unmap. */
  sb_close: { parameters: ["i32"], result: "i32" },
  /** `void sb_release(void *bytes, void *context)`: the deallocator Bun's buffers call; closes the handle in `context`. */
  sb_release: { parameters: ["pointer", "pointer"], result: "void" },
  /** `const void *sb_release_fn(void)`: the address of `sb_release`. */
  sb_release_fn: { parameters: [], result: "pointer" },
  /** `int32_t sb_handle_count(void)`: live handles in this process. */
  sb_handle_count: { parameters: [], result: "i32" },
  /** `uintptr_t sb_address_of(const uint8_t *bytes)`: the address of the bytes given (in Deno, of a typed array, under a scoped --allow-ffi). */
  sb_address_of: { parameters: ["buffer"], result: "usize" },
  /** `int32_t sb_wait(const uint32_t *addr, uint32_t expected, int64_t timeout_ns)`: 0 woken, 1 not equal, 2 timed out, or a negative code. */
  sb_wait: { parameters: ["usize", "u32", "i64"], result: "i32" },
  /** `int32_t sb_wait_spin(const uint32_t *addr, uint32_t expected, int64_t timeout_ns, uint32_t spins)`: as `sb_wait`, spinning first. */
  sb_wait_spin: { parameters: ["usize", "u32", "i64", "u32"], result: "i32" },
  /** `int32_t sb_notify(const uint32_t *addr, uint32_t count)`: how many were woken, or a negative code. */
  sb_notify: { parameters: ["usize", "u32"], result: "i32" },
  /** `int32_t sb_wait_async(const uint32_t *addr, uint32_t expected, int64_t timeout_ns, uint64_t token, void (*cb)(uint64_t token, int32_t result))`: 0 pending (`cb` is called once later, from a native thread), 1 not equal, 2 timed out, or a negative code. */
  sb_wait_async: { parameters: ["usize", "u32", "i64", "u64", "function"], result: "i32" },
  /** `int32_t sb_wait_cancel(uintptr_t addr, uintptr_t len)`: ends the pending waits on `addr..addr + len` with -EBADF now; how many. */
  sb_wait_cancel: { parameters: ["usize", "usize"], result: "i32" },
  /** `uint32_t sb_mutex_size(void)`: the bytes a mutex occupies. */
  sb_mutex_size: { parameters: [], result: "u32" },
  /** `uint32_t sb_mutex_align(void)`: the alignment a mutex needs. */
  sb_mutex_align: { parameters: [], result: "u32" },
  /** `int32_t sb_mutex_init(uint8_t *addr)`: 0 initialised, 1 already initialised, or a negative code. */
  sb_mutex_init: { parameters: ["usize"], result: "i32" },
  /** `int32_t sb_mutex_open(uint8_t *addr)`: 0 if a ready mutex is there, or a negative code (-EINVAL, -EAGAIN). */
  sb_mutex_open: { parameters: ["usize"], result: "i32" },
  /** `int32_t sb_mutex_held_in(const uint8_t *addr, uint64_t len)`: how many locks threads of this process hold in the `len` bytes from `addr`. */
  sb_mutex_held_in: { parameters: ["usize", "u64"], result: "i32" },
  /** `int32_t sb_mutex_lock(uint8_t *addr, int64_t timeout_ns)`: 0 acquired, 1 acquired after the owner died, or a negative code. */
  sb_mutex_lock: { parameters: ["usize", "i64"], result: "i32" },
  /** `int32_t sb_mutex_trylock(uint8_t *addr)`: as `sb_mutex_lock`, or -EBUSY. */
  sb_mutex_trylock: { parameters: ["usize"], result: "i32" },
  /** `int32_t sb_mutex_unlock(uint8_t *addr)`: 0, or -EPERM if this thread does not hold it. */
  sb_mutex_unlock: { parameters: ["usize"], result: "i32" },
  /** `int32_t sb_process_alive(uint32_t pid)`: 1 alive, 0 dead (gone or zombie), or a negative code. */
  sb_process_alive: { parameters: ["u32"], result: "i32" },
  /** `uint32_t sb_pid_namespace(void)`: this process's pid namespace (the inode number of /proc/self/ns/pid), 0 if unknown. */
  sb_pid_namespace: { parameters: [], result: "u32" },
  /** `int32_t sb_channel_take(uint8_t *region, SbTakeState *state, uint8_t *target, uint32_t room)`: the length of the message taken into `target`, or -1 with nothing taken. */
  sb_channel_take: { parameters: ["usize", "usize", "buffer", "u32"], result: "i32" },
  /** `int32_t sb_channel_scan_run(uint8_t *region, SbTakeState *state, uint8_t *out, uint32_t out_len, uint32_t *lens, uint32_t max, uint32_t small)`: how many messages of the run at `head` were copied to `out` (their lengths to `lens`); 0 for none. */
  sb_channel_scan_run: {
    parameters: ["usize", "usize", "buffer", "u32", "buffer", "u32", "u32"],
    result: "i32",
  },
  /** `int32_t sb_channel_put(uint8_t *region, SbPutState *state, const uint8_t *src, uint32_t len)`: 0 sent, 1 no room now, 2 committed after the receiver closed (EPIPE), or -1 with nothing reserved. */
  sb_channel_put: { parameters: ["usize", "usize", "buffer", "u32"], result: "i32" },
  /** `int32_t sb_channel_commit_run(uint8_t *region, SbPutState *state, uint32_t idx, const uint32_t *lens, uint32_t count)`: 0 committed, 1 committed after the receiver closed, or -1 with nothing written. */
  sb_channel_commit_run: { parameters: ["usize", "usize", "u32", "buffer", "u32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The shape of the symbol table. */
export type Symbols = typeof symbols;
