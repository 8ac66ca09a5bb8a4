/**
 * The runtime-neutral public API: {@linkcode SharedMemory} and the seed package's two functions.
 *
 * @module
 */

import { type Backend, backend } from "./backend.ts";
import { errorOf, SharedMemoryError } from "./errors.ts";
import {
  CREATE,
  OPEN,
  OPEN_OR_CREATE,
  OWNER_ANY,
  OWNER_TRUSTED,
  POPULATE,
  REPLACE,
} from "./ffi.ts";
import { bufferByteLength, bufferDetached, isArray } from "./intrinsics.ts";
import * as check from "./validate.ts";

/** The method `console.log` and `util.inspect` call to show an object, in every runtime. */
const INSPECT = Symbol.for("nodejs.util.inspect.custom");

/**
 * Which segment: a System V key (the seed package's kind) or a POSIX name such as `"/jobs"`.
 *
 * @example
 * ```ts
 * const keyed: SegmentId = { key: 1024 };
 * const named: SegmentId = { name: "/jobs" };
 * ```
 */
export type SegmentId = { readonly key: number } | { readonly name: string };

/**
 * Whose existing segment an open accepts: `undefined` (the default) accepts segments of this
 * process's user and of root; a uid accepts that user's segments too; `"any"` accepts every
 * user's, as the seed package did.
 *
 * A segment's owner can read, change, truncate and remove it whatever its mode, so a segment
 * made by another user is someone else's memory: a squatter can create a well-known name or key
 * first, with mode `0o666`, and hand you data they control. Accept another owner only when you
 * trust that user.
 */
export type Owner = number | "any";

/** Options for {@linkcode SharedMemory.openOrCreate}. */
export interface CreateOptions {
  /** Permission bits of a segment this call creates. Default `0o600`: owner only. */
  mode?: number;
  /** Fault every page in now, so that no access pays a page fault later. Default `false`. */
  populate?: boolean;
  /** Whose existing segment is accepted (see {@linkcode Owner}). Default: this user's or root's. */
  owner?: Owner;
}

/** Options for {@linkcode SharedMemory.create}. */
export interface CreateNewOptions extends CreateOptions {
  /**
   * If a segment exists under the id (a leftover of a crashed run), remove it and create a new
   * one instead of failing with `EEXIST`. Processes still mapping the old segment keep it, cut
   * off from the id. Only a segment of an accepted {@linkcode CreateOptions.owner} is removed.
   * Default `false`.
   */
  replace?: boolean;
}

/** Options for {@linkcode SharedMemory.open}. */
export interface OpenOptions {
  /** Whose segment is accepted (see {@linkcode Owner}). Default: this user's or root's. */
  owner?: Owner;
  /**
   * Expose only the first `size` bytes; the segment must have at least that many.
   * Default: the whole segment, its size read from the OS.
   */
  size?: number;
  /** Fault every page in now. Default `false`. */
  populate?: boolean;
}

/** What this library knows of a buffer it handed out. */
interface Owned {
  /** The handle (mapping reference) the buffer owns. */
  handle: number;
  /** The address of its first byte. */
  address: bigint;
  /** The whole mapping (createSharedBuffer). */
  whole: boolean;
  /** Detached by this library already: tells "twice" from "never ours". */
  released: boolean;
  /**
   * The segment's identity (`SbMapping.identity`), the same through every mapping of it in this
   * process; both 0 where the OS gives none (a named segment on macOS).
   */
  identity0: bigint;
  identity1: bigint;
  /** Where the buffer's first byte is in its segment. */
  offset: number;
}

/**
 * Each buffer handed out to the caller. (A `SharedMemory`'s private anchor is not in it: only
 * its owner ever sees it.) A released buffer keeps its entry, marked, rather than moving to a
 * second weak collection: each weak-collection write costs the engine a write barrier and work
 * at every collection, and one attach is only a few of them.
 */
const owned = new WeakMap<ArrayBuffer, Owned>();
/** What the private constructors take first, so that no caller outside this module can run them. */
const CONSTRUCT: unique symbol = Symbol("SharedMemory");
/**
 * Scratch for the open calls' out-parameter (`SbMapping`): handle, address, length, created,
 * detail, and two words of identity.
 */
const out = new BigUint64Array(7);
/** `out[4]` after `EFTYPE`: what is at the name, by number. */
const FILE_KINDS = [
  "",
  "a directory",
  "a FIFO",
  "a socket",
  "a device",
  "a special file",
  "a file with other names too (hard links)",
];
/** `FILE_KINDS` index of a hard-linked file, which is refused for its links, not its kind. */
const HARD_LINKED = 6;

/** What a `view()` offset is a multiple of: the alignment of a typed array's widest element. */
const VIEW_ALIGNMENT = 8;

/**
 * A checked id: a System V key (`bytes` undefined), or a name with its UTF-8 bytes. Plain data,
 * so that an open allocates no closures and builds no label until an error needs one.
 */
interface Resolved {
  /**
   * A copy of the id, frozen: a caller who changes their own id object afterwards changes
   * nothing here (`unlink()` once removed the segment under the new name).
   */
  readonly id: SegmentId;
  readonly key: number;
  /** The canonical name (one leading `/`). */
  readonly name: string;
  readonly bytes: Uint8Array | undefined;
}

/** How errors name a segment: `key 0x...` or `name /...`. */
export function segmentLabel(id: SegmentId): string {
  return labelOf(resolve(id, "id"));
}

function labelOf(id: Resolved): string {
  if (id.bytes === undefined) return `key 0x${id.key.toString(16)}`;
  // Quoted unless printable ASCII without a quote: a space, a control character (a newline
  // would break the message's line) or an invisible one would not read as part of one name.
  if (/^[\x21\x23-\x7e]*$/.test(id.name)) return `name ${id.name}`;
  // Escaped past what JSON escapes (C0 controls, lone surrogates): what would hide in the line
  // or reorder it, DEL and C1 controls, zero-width, bidi and line-separating characters.
  const quoted = JSON.stringify(id.name).replace(
    /[\x7f-\x9f\xad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return `name ${quoted}`;
}

function resolve(id: unknown, what: string): Resolved {
  if (typeof id !== "object" || id === null || isArray(id)) {
    throw new TypeError(
      `${what} must be { key: number } or { name: string }, got ${check.describe(id)}`,
    );
  }
  // Nothing else, as for options: `{ key, nmae }` would silently be the key's segment.
  for (const property of Object.keys(id)) {
    if (property !== "key" && property !== "name") {
      throw new TypeError(
        `${what} has a property ${
          JSON.stringify(property)
        }: a segment's id is { key: number } or { name: string }, nothing else`,
      );
    }
  }
  // Own properties only, as for options: a `key` or `name` on `Object.prototype` is not this id's.
  // One that holds undefined is absent, as an option's is: `{ name, key: opts.key }`. Each is
  // read once (a getter may answer differently the next time).
  const ownKey = Object.hasOwn(id, "key");
  const ownName = Object.hasOwn(id, "name");
  if (!ownKey && !ownName && ("key" in id || "name" in id)) {
    throw new TypeError(
      `${what}.${
        "key" in id ? "key" : "name"
      } is inherited, not the object's own property: set it on the id itself (one on Object.prototype, or on a prototype of yours, is not taken)`,
    );
  }
  const givenKey: unknown = ownKey ? (id as { key: unknown }).key : undefined;
  const givenName: unknown = ownName ? (id as { name: unknown }).name : undefined;
  if ((givenKey === undefined) === (givenName === undefined)) {
    // Neither given, though one is there: say why it does not count.
    const absent = givenKey === undefined && (ownKey || ownName);
    throw new TypeError(
      `${what} must have exactly one of "key" and "name"${
        absent ? " (one that is undefined counts as absent)" : ""
      }`,
    );
  }
  if (givenKey !== undefined) {
    const key = check.key(givenKey, `${what}.key`);
    return { id: Object.freeze({ key }), key, name: "", bytes: undefined };
  }
  const [name, bytes] = check.name(givenName, `${what}.name`);
  return { id: Object.freeze({ name: givenName as string }), key: 0, name, bytes };
}

function openResolved(
  b: Backend,
  id: Resolved,
  size: bigint,
  how: number,
  flags: number,
  mode: number,
  owner: bigint,
): number {
  return id.bytes === undefined
    ? b.openKey(id.key, size, how, flags, mode, owner, out)
    : b.openName(id.bytes, size, how, flags, mode, owner, out);
}

function unlinkResolved(b: Backend, id: Resolved): number {
  return id.bytes === undefined ? b.unlinkKey(id.key) : b.unlinkName(id.bytes);
}

function fail(b: Backend, code: number, action: string): never {
  const name = b.errorName(code);
  throw new SharedMemoryError(
    `${action}: ${b.errorMessage(code)} (${name})`,
    name,
    -code,
  );
}

function flag(value: unknown, what: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") {
    throw new TypeError(`${what} must be a boolean, got ${check.describe(value)}`);
  }
  return value;
}

function ownerArg(value: unknown, what: string): bigint {
  if (value === undefined) return BigInt(OWNER_TRUSTED);
  if (value === "any") return BigInt(OWNER_ANY);
  return BigInt(check.integer(value, what, 0, 2 ** 32 - 1, `"any" or a user id (a number)`));
}

/** The permission bits a creating call asked for (default `0o600`), checked. */
function createMode(value: unknown): number {
  // Only a missing mode is the default: null is a wrong type, as for every other option.
  const mode = check.mode(value === undefined ? 0o600 : value, "options.mode");
  if ((mode & 0o600) !== 0o600) {
    // Every open maps a segment for reading and writing: without these bits the owner's own
    // later opens fail (EACCES), and a keyed create failed at once with a misleading message.
    throw new RangeError(
      `options.mode must let the owner read and write (0o600), got 0o${mode.toString(8)}`,
    );
  }
  return mode;
}

/** The options `SharedMemory.create` takes; `openOrCreate` takes them less `replace`. */
const CREATE_OPTIONS = ["mode", "populate", "owner", "replace"] as const;
const OPEN_OR_CREATE_OPTIONS = ["mode", "populate", "owner"] as const;

/**
 * How an open should go. Every field is set: one left out would be read from `Object.prototype`.
 */
interface OpenRequest {
  size: number;
  how: number;
  populate: boolean;
  mode: number;
  owner: bigint;
  replace: boolean;
}

/** The user `uid` as `uid 1000 (alice)`. */
function describeUser(b: Backend, uid: number): string {
  const name = b.userName(uid);
  return name === undefined ? `uid ${uid}` : `uid ${uid} (${name})`;
}

/** `n` open segment handles, in words. */
function handles(n: number): string {
  return `${n} open segment handle${n === 1 ? "" : "s"}`;
}

/** The message for a failed open: what went wrong, and what to do about it. */
function openFailure(b: Backend, code: number, id: Resolved, req: OpenRequest): string {
  const name = b.errorName(code);
  const actual = Number(out[2]);
  const detail = Number(out[4]);
  switch (name) {
    case "EINVAL":
      if (actual > 0) {
        return req.how === OPEN
          ? `the segment has ${actual} bytes, fewer than the ${req.size} asked for`
          : `the segment exists with ${actual} bytes, not ${req.size}: open it with that size, or unlink it first`;
      }
      break;
    case "ENOMEM":
      // A keyed segment, which is mapped whole: its size written back.
      if (actual > req.size && req.size > 0) {
        return `the segment has ${actual} bytes, more than the ${req.size} asked for, and a keyed segment is mapped whole: this process has no memory or address space left to map that many`;
      }
      return `${
        actual > 0 ? `the segment has ${actual} bytes (a keyed segment is mapped whole): ` : ""
      }no memory or address space left to map it; this process holds ${
        handles(b.handleCount())
      } (a buffer dropped without close() or detachSharedBuffer() keeps its mapping until the engine collects it)`;
    case "ENOSPC": {
      // A keyed create's shmget refused the size: the native side reports its ENOMEM so.
      const room = id.bytes === undefined
        ? "the system will not provide a keyed segment of this size: more memory than it may commit (RAM and swap), or its limits on keyed segments reached (kernel.shmall, kernel.shmmni)"
        : "no room left for it in the shared-memory filesystem (/dev/shm)";
      const held = b.handleCount();
      // A keyed create is refused mostly for its size (over what the system commits), which no
      // segment of this process's would free: no advice there, but where collected buffers wait
      // for the event loop (below).
      if (held === 0 || (id.bytes === undefined && b.mappingLimit === undefined)) return room;
      // The relief's collection frees what nothing refers to: the code running may still refer
      // to the segment dropped last (a loop's previous turn's, through a local the engine has
      // not reused yet, kept across an await too). Where collected buffers keep their mappings
      // until the event loop turns (Node.js), it cannot release one that the engine's own
      // collection collected earlier, which may have moved its memory to another buffer first.
      const later = b.mappingLimit === undefined
        ? ""
        : `${b.runtimeName} unmaps some of them only when the event loop turns (as an awaited setImmediate lets it), and `;
      return `${room}; this process holds ${
        handles(held)
      }: if segments it dropped without close() or detachSharedBuffer() hold the room asked for, close() the ones you are done with: ${later}the code running may still refer to the one it dropped last (a loop to its previous turn's)`;
    }
    case "EOWNER": {
      // The owner's uid; above it (bit 32), whether the segment's mode keeps this user out too.
      const uid = detail % 2 ** 32;
      const owner = `the segment belongs to ${describeUser(b, uid)}, not to this user or root`;
      return detail >= 2 ** 32
        ? `${owner}, and its mode keeps this user out: it is not shared with this user`
        : `${owner}; if you trust that user, pass { owner: ${uid} }`;
    }
    case "EFTYPE":
      if (detail === HARD_LINKED) {
        return `the name holds ${
          FILE_KINDS[detail]
        }, so not a segment's own name: it may be another segment, linked here by someone else`;
      }
      return `the name holds ${FILE_KINDS[detail] ?? "a special file"}, not a segment`;
    case "EEXIST":
      if (req.how === CREATE) {
        return "a segment exists already under this id; open it, or pass { replace: true } to remove a leftover of a crashed run and create afresh";
      }
      break;
    case "ENOENT":
      return "no segment exists under this id (create it first, or check the name or key)";
    case "EACCES":
    case "EPERM":
      // A replace that may not remove what is under the id (another user's file in /dev/shm,
      // whose sticky bit lets only its owner and root remove it, or another user's key).
      if (req.replace) {
        return "permission denied: this user may not remove the segment under this id (only its owner, a key's creator or root may), so { replace: true } cannot replace it";
      }
      if (name === "EPERM") break;
      return "permission denied: the segment's owner did not grant this user access in its mode";
  }
  return b.errorMessage(code);
}

/**
 * How many times an `ENOSPC` create has the engine collect and tries again: once, and again while
 * a collection releases segments. One collection usually frees every segment dropped without
 * `close()`; Node.js 26 once needed more than three in a loop that drops a segment and a view of
 * it each turn (not reproduced since). A create that cannot fit stops after one retry: each try
 * reserves (zero-fills) memory up to the full filesystem (about 2 s for 3.5 GiB), and every other
 * program's allocation fails meanwhile.
 */
const RELIEF_TRIES = 6;

/** Whether an open that failed with `name` may succeed once the engine has collected. */
function mayRelieve(name: string, req: OpenRequest): boolean {
  return name === "ENOMEM" || (name === "ENOSPC" && req.how !== OPEN);
}

/** The open handle count at which an open first has the engine collect (see `crowded`). */
let crowdedAt = 0;
/** Opens made, of which every 256th looks at the handle count. */
let opens = 0;
/** The last look found the process at its limit: every open looks, until it is below. */
let full = false;

/**
 * Where the backend says collected buffers keep their mappings until the event loop turns
 * ({@linkcode Backend.mappingLimit}): has the engine collect, and releases what it collected,
 * once this process holds an eighth of `limit` in handles, then each time they have doubled, and
 * once more at seven eighths: not at every open, which would cost a full collection each. Past
 * seven eighths no more. The schedule starts over once the count has fallen (the event loop
 * turned, or `close()` ran). Looks at the count every 256th open (one more call into the
 * library at every open upset the timing of the `ENOSPC` relief), and at every open while the
 * last look found seven eighths. Returns how many handles are open if that is still seven eighths
 * of `limit` or more (the open must not map more), else 0.
 */
function crowded(b: Backend, limit: number): number {
  if ((++opens & 255) !== 0 && !full) return 0;
  const base = Math.max(1024, limit >> 3);
  const cap = limit - base;
  let count = b.handleCount();
  if (count < crowdedAt >> 2) crowdedAt = 0;
  if (count >= (crowdedAt ||= base)) {
    b.relieve();
    count = b.handleCount();
    crowdedAt = count < cap ? Math.min(Math.max(base, 2 * count), cap) : 2 * count;
  }
  full = count >= cap;
  return full ? count : 0;
}

/**
 * What {@linkcode openSegment} returns: handle, address, length, created, and what tells the
 * segment apart from another made later under its key or name (`SbMapping.identity`).
 */
type Opened = [number, bigint, number, boolean, bigint, bigint];

/** Opens a segment. */
function openSegment(caller: string, id: Resolved, req: OpenRequest): Opened {
  const b = backend();
  const held = b.mappingLimit === undefined ? 0 : crowded(b, b.mappingLimit);
  if (held !== 0) {
    throw new SharedMemoryError(
      `${caller} of ${labelOf(id)}: this process holds ${
        handles(held)
      }, near its limit of ${b.mappingLimit} mappings (vm.max_map_count), and mapping more would leave the engine none; ${b.runtimeName} may free a buffer dropped without close() or detachSharedBuffer() only when the event loop turns, so close() them, or let the event loop run, as an awaited setImmediate does (ENOMEM)`,
      "ENOMEM",
      b.errno("ENOMEM"),
    );
  }
  out.fill(0n);
  const flags = (req.populate ? POPULATE : 0) | (req.replace ? REPLACE : 0);
  let code = openResolved(b, id, BigInt(req.size), req.how, flags, req.mode, req.owner);
  for (
    let retry = 0;
    retry < RELIEF_TRIES && code < 0 && mayRelieve(b.errorName(code), req);
    retry++
  ) {
    // Shared memory is full, perhaps of segments that were unlinked and dropped but not yet
    // collected, or this process has no room left to map (ENOMEM: its mappings, dropped
    // buffers' among them, reached `vm.max_map_count`): have the engine collect them, then try
    // again.
    // (Negative when another thread opened segments meanwhile: nothing released either.)
    if (b.relieve() <= 0 && retry > 0) break;
    out.fill(0n);
    code = openResolved(b, id, BigInt(req.size), req.how, flags, req.mode, req.owner);
  }
  if (code < 0) {
    const action = `${caller} of ${labelOf(id)}${req.size ? ` (${req.size} bytes)` : ""}`;
    const name = b.errorName(code);
    throw new SharedMemoryError(
      `${action}: ${openFailure(b, code, id, req)} (${name})`,
      name,
      -code,
    );
  }
  return [Number(out[0]), out[1], Number(out[2]), out[3] === 1n, out[5], out[6]];
}

/**
 * A buffer handed out to the caller, which owns `handle` (closed if the buffer cannot be made);
 * with `group`, a view that the backend tracks for `close()` ({@linkcode Backend.takeViews}).
 */
function wrap(
  b: Backend,
  address: bigint,
  length: number,
  handle: number,
  identity0: bigint,
  identity1: bigint,
  offset: number,
  whole = false,
  group?: number,
): ArrayBuffer {
  let buffer;
  try {
    buffer = b.wrap(address, length, handle, group);
  } catch (err) {
    b.close(handle);
    throw err;
  }
  owned.set(buffer, { handle, address, whole, released: false, identity0, identity1, offset });
  return buffer;
}

/**
 * What tells the bytes at `byteOffset` of `buffer` (one this library handed out, checked by the
 * caller) from any others in this process, through whichever mapping they are seen: their
 * segment's identity and offset, or where the OS gives no identity, their address.
 */
export function placeOf(buffer: ArrayBuffer, byteOffset: number, address: bigint): string {
  const record = owned.get(buffer);
  return record === undefined || (record.identity0 === 0n && record.identity1 === 0n)
    ? `@${address}`
    : `${record.identity0}:${record.identity1}+${record.offset + byteOffset}`;
}

/**
 * Throws `EBUSY` if a thread of this process holds a `Mutex` inside the `length` bytes
 * at `address`: unmapping them would strand the lock (nobody here could unlock it).
 */
function refuseIfLocked(b: Backend, address: bigint, length: number, action: string): void {
  const held = b.mutexHeldIn(b.address(address), length);
  if (held > 0) {
    throw errorOf(
      "EBUSY",
      `${action}: this process holds ${held} lock${held === 1 ? "" : "s"} inside it; unlock first`,
    );
  }
}

function release(buffer: ArrayBuffer): void {
  const record = owned.get(buffer);
  if (record === undefined || record.released) return;
  record.released = true;
  const b = backend();
  // The buffer is the mapping's only user: its pending waits can never be woken through it.
  if (record.whole) b.cancelWaits(b.address(record.address), bufferByteLength(buffer));
  b.unwrap(buffer, record.handle);
}

/**
 * Whether `buffer` is detached, as the engine says (see `intrinsics.ts`: a `detached` or
 * `byteLength` property the caller defined on the buffer is not read).
 */
export function isDetached(buffer: ArrayBuffer): boolean {
  try {
    return bufferDetached(buffer);
  } catch {
    return false; // not an ArrayBuffer at all (a SharedArrayBuffer, say): not this library's either
  }
}

/**
 * The address of `buffer`'s first byte, for the wait/notify and lock calls.
 *
 * @throws {SharedMemoryError} `EBADF` if the buffer was detached (its segment closed).
 * @throws {TypeError} If the buffer did not come from this library.
 */
export function addressOf(buffer: ArrayBufferLike, caller: string): bigint {
  const record = owned.get(buffer as ArrayBuffer);
  if (record !== undefined && !record.released && !isDetached(buffer as ArrayBuffer)) {
    return record.address;
  }
  if (record?.released || isDetached(buffer as ArrayBuffer)) {
    throw errorOf(
      "EBADF",
      `${caller}: the buffer's segment was closed, or the buffer was detached (transferred or detachSharedBuffer)`,
    );
  }
  throw new TypeError(
    `${caller}: the buffer must be one this library handed out (SharedMemory, createSharedBuffer), not a plain ArrayBuffer, a SharedArrayBuffer, a copy or transfer of one (postMessage, structuredClone), or one of another copy of this library loaded in the same program (a clone's entry and the npm package's, say)`,
  );
}

/** What {@linkcode mappingOf} gives: a buffer's mapping as this library keeps it. */
export interface Mapping {
  /** The address of the buffer's first byte. */
  readonly address: bigint;
  /** Released by `close()` (its buffer detached, or kept by a runtime that refused to detach). */
  readonly released: boolean;
}

/**
 * The live mapping of `buffer`, which the caller may keep and check for `released` later.
 *
 * @throws {SharedMemoryError} `EBADF` if the buffer was detached (its segment closed).
 * @throws {TypeError} If the buffer did not come from this library.
 */
export function mappingOf(buffer: ArrayBufferLike, caller: string): Mapping {
  addressOf(buffer, caller); // throws unless live
  return owned.get(buffer as ArrayBuffer)!;
}

/** Throws the SharedMemoryError for a negative native code. */
export function throwCode(code: number, action: string): never {
  fail(backend(), code, action);
}

/**
 * Throws a RangeError if the runtime cannot make an ArrayBuffer of `length` bytes; `window` says
 * how the caller reaches such a segment instead.
 */
function checkBufferLength(
  b: Backend,
  length: number,
  what: string,
  window = "view(byteOffset, byteLength)",
): void {
  if (length > b.maxBufferBytes) {
    throw new RangeError(
      `${what}: ${length} bytes is more than the largest ArrayBuffer ${b.runtimeName} can make (${b.maxBufferBytes}); use ${window} for a window`,
    );
  }
}

/** `shm.unlink()`, its errors named after `owner`'s (set by the class). */
export let unlinkAs: (shm: SharedMemory, owner: string) => void;

/**
 * A shared-memory segment mapped into this process.
 *
 * Its bytes are visible to every process that maps the same segment. Read and write them through
 * {@linkcode SharedMemory.buffer} or {@linkcode SharedMemory.view}, and use `Atomics` for any
 * value another process may change (plain reads may be hoisted out of loops by the JIT).
 *
 * @example
 * ```ts
 * using shm = SharedMemory.create({ name: "/jobs" }, 4096);
 * const counters = new Int32Array(shm.buffer);
 * Atomics.add(counters, 0, 1);
 * shm.unlink(); // the name goes away; the memory stays until every process has closed it
 * ```
 */
export class SharedMemory implements Disposable {
  // Getters over private fields, not public fields: TypeScript's `readonly` is gone at run time,
  // and a byteLength assigned from outside bounded view() (Bun then made a buffer reaching past
  // the mapping, and its first access beyond was a SIGSEGV).
  #id: SegmentId;
  #length: number;
  #created: boolean;
  #handle: number;
  /** Whether this object's `unlink()` removed its key or name (for the next one's message). */
  #unlinked = false;
  /**
   * What tells this segment apart from another made later under its key or name (see
   * {@linkcode Opened}), for unlink(), before or after close().
   */
  #identity0: bigint;
  #identity1: bigint;
  #address: bigint;
  #buffer: ArrayBuffer | undefined;
  /**
   * The first view made, held as {@linkcode #buffer} is: most users make one view, and tracking
   * it (below) cost as much again as making it (4 of Deno's 21 µs for open + view + close of 4
   * KiB). Later views are tracked without holding them.
   */
  #firstView: ArrayBuffer | undefined;
  /** The views to detach at close(), where the backend does not track them itself (Bun). */
  #views: WeakRef<ArrayBuffer>[] | undefined;
  /** Whether view() made any view that the backend tracks (so close() asks for them). */
  #viewed = false;
  /**
   * Owns #handle (see {@linkcode Backend.anchor}): a private one-byte buffer, or nothing where
   * this object itself does, so that the engine releases the handle when this object is dropped
   * without close(), during garbage collection itself where it can (a FinalizationRegistry
   * callback would wait for the event loop, which a busy synchronous loop never reaches).
   * Dropped by close(): nothing reads it after that.
   */
  #anchor: ArrayBuffer | undefined;

  private constructor(
    token: typeof CONSTRUCT,
    id: SegmentId,
    opened: Opened,
  ) {
    // `private` is TypeScript's word only: a forged handle and address would have made
    // buffers over memory this library never mapped.
    if (token !== CONSTRUCT) {
      throw new TypeError(
        "SharedMemory has no public constructor: use SharedMemory.create, open or openOrCreate",
      );
    }
    const [handle, address, length, created] = opened;
    this.#id = id;
    this.#identity0 = opened[4];
    this.#identity1 = opened[5];
    this.#handle = handle;
    this.#address = address;
    this.#length = length;
    this.#created = created;
    const b = backend();
    try {
      this.#anchor = b.anchor(this, address, handle);
    } catch (err) {
      b.close(handle);
      throw err;
    }
  }

  /**
   * Creates a new segment, zero-filled. Fails with `EEXIST` if it already exists, so two
   * processes can never both think they made it.
   *
   * @param id `{ key }` (1 to 0xffffffff) or `{ name }` (`"/jobs"`; the `/` is optional).
   * @param size The size in bytes.
   * @param options Permissions (default `0o600`), page population, and `replace` to remove a
   *   leftover of a crashed run first.
   * @throws {SharedMemoryError} `EEXIST` if it exists (without `replace`); `ENOSPC` if a named
   *   segment does not fit in `/dev/shm`; with `replace`, `EOWNER` if the leftover is another
   *   user's.
   *
   * @example
   * ```ts
   * const shm = SharedMemory.create({ key: 1024 }, 80, { mode: 0o600 });
   * // ... a keyed segment stays until removed (or the machine restarts):
   * shm.unlink();
   * ```
   */
  static create(
    id: SegmentId,
    size: number,
    options?: CreateNewOptions,
  ): SharedMemory {
    return SharedMemory.#make("SharedMemory.create", id, size, options, CREATE);
  }

  /**
   * Opens an existing segment.
   *
   * @throws {SharedMemoryError} `ENOENT` if it does not exist; `EOWNER` if another user made it
   *   (see {@linkcode Owner}); `EACCES` if its owner did not grant access; `EINVAL` if it is
   *   smaller than `options.size`; `ELOOP`, `EISDIR`, `EFTYPE` or `ENODATA` if the name holds a
   *   symbolic link, a directory, a FIFO/socket/device or a file with other names too (hard
   *   links), or an empty file.
   *
   * @example
   * ```ts
   * const shm = SharedMemory.open({ name: "/jobs" });
   * console.log(shm.byteLength);
   * ```
   */
  static open(id: SegmentId, options?: OpenOptions): SharedMemory {
    const resolved = resolve(id, "id");
    const opts = check.options<OpenOptions>(options, "options", ["owner", "size", "populate"]);
    const size = opts.size === undefined ? 0 : check.size(opts.size, "options.size");
    const populate = flag(opts.populate, "options.populate");
    const owner = ownerArg(opts.owner, "options.owner");
    return new SharedMemory(
      CONSTRUCT,
      resolved.id,
      openSegment("SharedMemory.open", resolved, {
        size,
        how: OPEN,
        populate,
        mode: 0,
        owner,
        replace: false,
      }),
    );
  }

  /**
   * Opens the segment if it exists, else creates it; {@linkcode SharedMemory.created} says which.
   * An existing segment keeps its data and must have exactly `size` bytes.
   *
   * @throws {SharedMemoryError} `EINVAL` if it exists with another size; `EOWNER` if another
   *   user made it (see {@linkcode Owner}).
   *
   * @example
   * ```ts
   * const shm = SharedMemory.openOrCreate({ name: "/jobs" }, 4096);
   * if (shm.created) new Int32Array(shm.buffer)[0] = 1; // first one in sets it up
   * ```
   */
  static openOrCreate(
    id: SegmentId,
    size: number,
    options?: CreateOptions,
  ): SharedMemory {
    return SharedMemory.#make("SharedMemory.openOrCreate", id, size, options, OPEN_OR_CREATE);
  }

  /** Checks the arguments of a creating call and makes the segment. */
  static #make(
    caller: string,
    id: SegmentId,
    size: number,
    options: CreateNewOptions | undefined,
    how: number,
  ): SharedMemory {
    const resolved = resolve(id, "id");
    check.size(size);
    let given: unknown = options;
    if (
      how !== CREATE && typeof options === "object" && options !== null &&
      Object.hasOwn(options, "replace")
    ) {
      // `replace: true` asks for what only create does; false (the options of a create passed
      // on) asks for nothing.
      const { replace, ...rest } = options as CreateNewOptions;
      if (flag(replace, "options.replace")) {
        throw new TypeError(`${caller}: options.replace works with SharedMemory.create only`);
      }
      given = rest;
    }
    const opts = check.options<CreateNewOptions>(
      given,
      "options",
      how === CREATE ? CREATE_OPTIONS : OPEN_OR_CREATE_OPTIONS,
    );
    const mode = createMode(opts.mode);
    const populate = flag(opts.populate, "options.populate");
    const owner = ownerArg(opts.owner, "options.owner");
    const replace = how === CREATE && flag(opts.replace, "options.replace");
    return new SharedMemory(
      CONSTRUCT,
      resolved.id,
      openSegment(caller, resolved, { size, how, populate, mode, owner, replace }),
    );
  }

  /**
   * Removes a segment's key or name. Processes that have it mapped keep using it; it is freed
   * when the last one closes it. A new segment can be created under the same id at once.
   *
   * @throws {SharedMemoryError} `ENOENT` if there is no such segment.
   *
   * @example
   * ```ts
   * SharedMemory.unlink({ name: "/jobs" });
   * ```
   */
  static unlink(id: SegmentId): void {
    unlinkId(id, "SharedMemory");
  }

  /**
   * The segment's key or name, as given when this was opened: a frozen copy, which later changes
   * to the caller's own id object do not reach.
   */
  get id(): SegmentId {
    return this.#id;
  }

  /** The number of bytes mapped. */
  get byteLength(): number {
    return this.#length;
  }

  /** True if this call created the segment, false if it opened an existing one. */
  get created(): boolean {
    return this.#created;
  }

  /** True once {@linkcode SharedMemory.close} has run. */
  get closed(): boolean {
    return this.#handle < 0;
  }

  /**
   * What `console.log` and `util.inspect` show, in every runtime (Deno and Bun take Node's
   * symbol too): the segment's id, length, and whether this handle created it and is closed
   * (its state is private, and showed as `SharedMemory {}`).
   */
  [INSPECT](
    _depth: number,
    options: unknown,
    inspect?: (value: unknown, options: unknown) => string,
  ): string {
    // Not through a Proxy of one, nor on an object made from the prototype: printing never throws.
    if (!(#id in this)) return "SharedMemory {}";
    const state = {
      id: this.#id,
      byteLength: this.#length,
      created: this.#created,
      closed: this.closed,
    };
    return `SharedMemory ${
      typeof inspect === "function" ? inspect(state, options) : JSON.stringify(state)
    }`;
  }

  /**
   * The whole segment as one zero-copy ArrayBuffer: the same object on every call, until
   * {@linkcode detachSharedBuffer} detaches it (the next call then maps a new one).
   *
   * @throws {SharedMemoryError} `EBADF` after close.
   * @throws {RangeError} If the segment is larger than the runtime's largest ArrayBuffer
   *   (4 GiB in Bun): use {@linkcode SharedMemory.view} then.
   */
  get buffer(): ArrayBuffer {
    this.#checkOpen("buffer");
    if (this.#buffer === undefined || isDetached(this.#buffer)) {
      this.#buffer = this.#window(0, this.#length, "buffer");
    }
    return this.#buffer;
  }

  /**
   * A zero-copy ArrayBuffer over `byteLength` bytes from `byteOffset`: a window, and the way to
   * reach segments larger than one ArrayBuffer may be. Detached by {@linkcode close} like
   * {@linkcode buffer}.
   *
   * @param byteOffset Where the window starts: a multiple of 8, as the memory of any
   *   ArrayBuffer is, so that every typed array over it is aligned (for bytes from any offset,
   *   take a `Uint8Array` at an offset of the view). Default 0.
   * @param byteLength How long it is. Default: to the end of the segment.
   * @throws {RangeError} For an offset that is not a multiple of 8 (of a window that is not
   *   empty), or a window past the end.
   *
   * @example
   * ```ts
   * const tail = new Float64Array(shm.view(4096, 8 * 512));
   * ```
   */
  view(byteOffset = 0, byteLength?: number): ArrayBuffer {
    this.#checkOpen("view");
    check.integer(byteOffset, "byteOffset", 0, this.#length);
    const room = this.#length - byteOffset;
    const length = byteLength === undefined ? room : check.integer(
      byteLength,
      // The offset may be what is off: say what bounds the length (the text made only then).
      typeof byteLength === "number" && byteLength > room
        ? `byteLength (from byteOffset ${byteOffset} of the segment's ${this.#length} bytes)`
        : "byteLength",
      0,
      room,
    );
    const skip = byteOffset % VIEW_ALIGNMENT;
    if (length !== 0 && skip !== 0) {
      // Engines assume an ArrayBuffer's memory aligned: an element read across its natural
      // boundary is an alignment fault for an atomic access on arm64 (SIGBUS), a split lock on
      // x86, and Bun's inspection of a Float64Array over one aborts the process. (An empty
      // window is a plain empty ArrayBuffer, over no memory.)
      const start = byteOffset - skip;
      throw new RangeError(
        `SharedMemory.view: byteOffset must be a multiple of ${VIEW_ALIGNMENT}, got ${byteOffset}; for bytes from there: new Uint8Array(shm.view(${start}, ${
          skip + length
        }), ${skip})`,
      );
    }
    if (length === 0) return new ArrayBuffer(0);
    if (this.#firstView === undefined) {
      return this.#firstView = this.#window(byteOffset, length, "view");
    }
    // Tracked natively where the backend can (group: this object's handle), else by a WeakRef.
    const b = backend();
    if (b.takeViews) {
      this.#viewed = true;
      return this.#window(byteOffset, length, "view", this.#handle);
    }
    const view = this.#window(byteOffset, length, "view");
    const views = this.#views ??= [];
    if (views.length >= 64 && (views.length & (views.length - 1)) === 0) {
      this.#views = views.filter((ref) => ref.deref() !== undefined);
    }
    this.#views!.push(new WeakRef(view));
    return view;
  }

  /**
   * Drops this process's hold on the segment now: ends every pending {@linkcode waitAsync} on
   * its memory in this process (each rejects with a `SharedMemoryError` `EBADF`), detaches every
   * buffer and view it handed out that is still in this process (they read as empty afterwards;
   * nothing touches the old memory) and releases their references to the mapping. A buffer that
   * was moved elsewhere (to a Worker, into a stream, by `transfer()`) holds its own reference and
   * keeps working until the engine collects it; the mapping is unmapped when the last reference
   * goes. Idempotent. The segment itself stays until {@linkcode unlink}.
   *
   * @throws {SharedMemoryError} `EBUSY` if a thread of this process holds a `Mutex`
   *   inside the segment (through this object's buffers): unlock it first. Nothing is closed then.
   */
  close(): void {
    if (this.#handle < 0) return;
    const b = backend();
    refuseIfLocked(b, this.#address, this.#length, "SharedMemory.close");
    // Pending waitAsync calls on this mapping end now, rejecting with EBADF.
    b.cancelWaits(b.address(this.#address), this.#length);
    if (this.#buffer) release(this.#buffer);
    if (this.#firstView) release(this.#firstView);
    if (this.#viewed) {
      for (const view of b.takeViews!(this.#handle)) release(view);
    } else if (this.#views) {
      for (const ref of this.#views) {
        const view = ref.deref();
        if (view) release(view);
      }
    }
    this.#buffer = undefined;
    this.#firstView = undefined;
    this.#views = undefined;
    b.dropAnchor(this.#anchor, this.#handle);
    this.#anchor = undefined;
    this.#handle = -1;
  }

  /**
   * Removes this segment's key or name (see {@linkcode SharedMemory.unlink}) if it still names
   * this segment, before or after {@linkcode close}. After another process replaced the segment
   * (`replace: true`), or removed it, this throws `ENOENT` and leaves the key or name alone: a
   * restart's old process, exiting cleanly, does not take its name from the new one.
   *
   * @throws {SharedMemoryError} `ENOENT` if the key or name holds another segment now, or none.
   */
  unlink(): void {
    this.#unlink("SharedMemory");
  }

  /** {@linkcode unlink}, its errors named after `owner`'s (a `Channel` unlinks its segment). */
  #unlink(owner: string): void {
    const b = backend();
    const id = resolve(this.#id, "id");
    const identity = new BigUint64Array(2);
    identity[0] = this.#identity0;
    identity[1] = this.#identity1;
    const code = id.bytes === undefined
      ? b.unlinkKeyOwn(id.key, identity)
      : b.unlinkNameOwn(id.bytes, identity);
    if (code >= 0) {
      this.#unlinked = true;
      return;
    }
    const label = segmentLabel(this.#id);
    if (b.errorName(code) !== "ENOENT") fail(b, code, `${owner}.unlink of ${label}`);
    // Removed already: by this object, or by someone else (who may have made another since).
    const why = this.#unlinked
      ? `this ${owner} removed it already, in an earlier unlink() (whatever holds it now is another segment)`
      : "it no longer names this segment (removed or replaced since this one was opened, by " +
        "another process or another object of this one)";
    throw new SharedMemoryError(
      `${owner}.unlink of ${label}: ${why} (ENOENT)`,
      "ENOENT",
      -code,
    );
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  static {
    unlinkAs = (shm, owner) => shm.#unlink(owner);
  }

  #checkOpen(what: string): void {
    if (this.#handle < 0) {
      throw errorOf(
        "EBADF",
        `SharedMemory.${what} of ${segmentLabel(this.#id)}: this SharedMemory was closed`,
      );
    }
  }

  #window(offset: number, length: number, what: string, group?: number): ArrayBuffer {
    const b = backend();
    // The label is built only for an error: this runs at every `.buffer` and `view()`.
    if (length > b.maxBufferBytes) {
      checkBufferLength(b, length, `SharedMemory.${what} of ${segmentLabel(this.#id)}`);
    }
    const handle = b.dup(this.#handle);
    if (handle < 0) fail(b, handle, `SharedMemory.${what} of ${segmentLabel(this.#id)}`);
    const at = this.#address + BigInt(offset);
    return wrap(b, at, length, handle, this.#identity0, this.#identity1, offset, false, group);
  }
}

/** {@linkcode SharedMemory.unlink} of `id`, its errors named after `owner`'s. */
export function unlinkId(id: SegmentId, owner: string): void {
  const resolved = resolve(id, "id");
  const b = backend();
  const code = unlinkResolved(b, resolved);
  if (code >= 0) return;
  const name = b.errorName(code);
  if (name === "EPERM" || name === "EACCES") {
    // Another user's name in /dev/shm (whose sticky bit lets only its owner and root remove it),
    // or another user's key.
    throw new SharedMemoryError(
      `${owner}.unlink of ${
        labelOf(resolved)
      }: permission denied: this user may not remove it (only its owner, a key's creator or root may) (${name})`,
      name,
      -code,
    );
  }
  fail(b, code, `${owner}.unlink of ${labelOf(resolved)}`);
}

/**
 * Maps the keyed segment `key` and returns it as a zero-copy ArrayBuffer: the seed package's
 * function, kept as a drop-in.
 *
 * Unlike the seed, an existing segment keeps its data when `initialize` is true (the seed zeroed
 * it), new segments are owner-only (`0o600`, not `0o666`), and the result is an `ArrayBuffer`
 * (the seed's was a `SharedArrayBuffer`). The buffer is unmapped by
 * {@linkcode detachSharedBuffer}, or when it is garbage-collected.
 *
 * @param key Any integer from 1 to 0xffffffff naming the segment.
 * @param size The size in bytes. When opening, the segment must have at least this many; when
 *   `initialize` finds it existing, exactly this many.
 * @param initialize If truthy, create the segment when missing; if falsy (default), open an
 *   existing one. Any value is taken, by JavaScript truthiness (`1` and `"false"` create, `0`
 *   and `""` do not), as the seed converted it (V8's `BooleanValue`).
 * @param options `owner`: whose existing segment is accepted (see {@linkcode Owner}); the seed
 *   accepted anyone's, this accepts this user's and root's unless told otherwise. `mode`: the
 *   permission bits of a segment this call creates (default `0o600`; the seed's were `0o666`).
 * @throws {SharedMemoryError} `ENOENT` when opening a missing segment; `EINVAL` on a size
 *   mismatch; `EOWNER` for another user's segment not accepted by `options.owner`; `EACCES` when
 *   its owner did not grant access.
 *
 * @example
 * ```ts
 * const buffer = createSharedBuffer(1024, 80, true);
 * new Float64Array(buffer)[1] = 1;
 * detachSharedBuffer(buffer);
 * SharedMemory.unlink({ key: 1024 }); // a keyed segment stays until removed
 * ```
 */
export function createSharedBuffer(
  key: number,
  size: number,
  initialize?: unknown,
  options?: { owner?: Owner; mode?: number },
): ArrayBuffer {
  // The key is an argument here, not a property of an id: its errors name it so ("key must be").
  const resolved = resolve({ key: check.key(key, "key") }, "id");
  check.size(size);
  // Truthiness, not a boolean check: a drop-in must take the `1` or `"true"` the seed took.
  const create = Boolean(initialize);
  const opts = check.options<{ owner?: Owner; mode?: number }>(options, "options", [
    "owner",
    "mode",
  ]);
  const owner = ownerArg(opts.owner, "options.owner");
  // Only a create applies the mode; an open checks its type alone, so a seed-style call that
  // passes the same options whether it creates or not is not refused for bits it never uses.
  const mode = create
    ? createMode(opts.mode)
    : check.mode(opts.mode === undefined ? 0o600 : opts.mode, "options.mode");
  const b = backend();
  // createSharedBuffer has no view() of its own.
  checkBufferLength(
    b,
    size,
    "createSharedBuffer",
    `${create ? "SharedMemory.openOrCreate" : "SharedMemory.open"}({ key: 0x${key.toString(16)} }${
      create ? `, ${size}` : ""
    }).view(byteOffset, byteLength)`,
  );
  const [handle, address, length, , id0, id1] = openSegment("createSharedBuffer", resolved, {
    size,
    how: create ? OPEN_OR_CREATE : OPEN,
    populate: false,
    mode,
    owner,
    replace: false,
  });
  return wrap(b, address, length, handle, id0, id1, 0, true);
}

/**
 * Detaches and unmaps a buffer from {@linkcode createSharedBuffer} now (or any buffer from
 * {@linkcode SharedMemory}). The buffer and its typed arrays read as empty afterwards.
 *
 * @throws {TypeError} If the buffer did not come from this library, was already detached, or
 *   was moved (its memory went with it, to the buffer it moved to).
 * @throws {SharedMemoryError} `EBUSY` if a thread of this process holds a `Mutex`
 *   inside the buffer: unlock it first.
 *
 * @example
 * ```ts
 * detachSharedBuffer(buffer);
 * buffer.byteLength; // 0
 * ```
 */
export function detachSharedBuffer(buffer: ArrayBuffer): void {
  // Seed users may pass a typed array, or the SharedArrayBuffer the seed returned.
  check.arrayBuffer(buffer, "detachSharedBuffer");
  const record = owned.get(buffer);
  if (record?.released) {
    throw new TypeError(
      "detachSharedBuffer: buffer was already detached (by detachSharedBuffer, or by its SharedMemory's close())",
    );
  }
  if (record === undefined) {
    // SharedMemory.view() of 0 bytes maps nothing: it returns a plain empty ArrayBuffer.
    const empty = bufferByteLength(buffer) === 0 && !isDetached(buffer)
      ? " (a view() of 0 bytes is a plain empty ArrayBuffer, over no segment: nothing to detach)"
      : "";
    throw new TypeError(
      `detachSharedBuffer: buffer was not made by createSharedBuffer or SharedMemory${empty}`,
    );
  }
  if (isDetached(buffer)) {
    // Its memory went with it: the buffer it moved to keeps the mapping until it is collected.
    // Succeeding here would tell the caller the segment was unmapped when it was not.
    throw new TypeError(
      "detachSharedBuffer: buffer was moved (by transfer(), into a stream or to a Worker): the buffer it moved to keeps the segment mapped until it is collected",
    );
  }
  refuseIfLocked(backend(), record.address, bufferByteLength(buffer), "detachSharedBuffer");
  release(buffer);
}

/**
 * The number of native handles this process holds: one per open segment and per live buffer.
 * Useful as a leak check.
 *
 * @example
 * ```ts
 * const before = openHandleCount();
 * SharedMemory.create({ name: "/tmp-check" }, 64).close();
 * SharedMemory.unlink({ name: "/tmp-check" });
 * console.assert(openHandleCount() === before);
 * ```
 */
export function openHandleCount(): number {
  return backend().handleCount();
}
