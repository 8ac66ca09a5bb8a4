/**
 * Argument checks shared by every entry point. Each throws a `TypeError` (wrong type) or a
 * `RangeError` (right type, wrong value) whose message names the argument.
 *
 * @module
 */

import { isArray, isBuffer, isSharedBuffer, isTypedArray, isView } from "./intrinsics.ts";

/** Largest System V key (keys are unsigned 32-bit). */
export const MAX_KEY = 0xffff_ffff;
/** Longest segment name in UTF-8 bytes, after the leading `/`. */
export const MAX_NAME_BYTES = 255;

/** What a revoked Proxy is called in error messages (every look at it throws). */
const REVOKED = "a revoked Proxy";

/**
 * The name of `value`'s constructor, else its type, for an error message; never throws (a
 * revoked Proxy, or one whose traps throw, answers no question about itself).
 */
export function kindOf(value: unknown): string {
  try {
    return (value as object)?.constructor?.name ?? typeof value;
  } catch {
    return "a revoked Proxy (or one whose traps throw)";
  }
}

/** A bad value as error messages show it. */
export function describe(value: unknown): string {
  if (typeof value === "bigint") return `bigint ${value}n`;
  if (typeof value === "string") return `string ${JSON.stringify(value)}`;
  if (typeof value === "number") return String(value);
  if (value === null) return "null";
  const what = lookalike(value);
  if (what !== undefined) return what;
  try {
    if (isArray(value)) return "an array";
  } catch {
    return REVOKED; // Array.isArray throws for a revoked Proxy only
  }
  if (isSharedBuffer(value)) return "a SharedArrayBuffer";
  return typeof value;
}

const TypedArray = Object.getPrototypeOf(Uint8Array);

/**
 * What `value` is for an error message when it passes `instanceof` for a typed array or an
 * ArrayBuffer without being one (a Proxy of one, a `DataView` or another object given its
 * prototype), which the engine's own accessors refuse with a message that names nothing of the
 * call; else undefined.
 */
export function lookalike(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  try {
    if (value instanceof TypedArray) {
      if (isTypedArray(value)) return undefined;
      return isView(value)
        ? "a DataView given a typed array's prototype"
        : "an object that only looks like a typed array (a Proxy of one, or an object given its prototype)";
    }
    if (value instanceof ArrayBuffer && !isBuffer(value)) {
      return "an object that only looks like an ArrayBuffer (a Proxy of one, or an object given its prototype)";
    }
  } catch {
    // a Proxy whose getPrototypeOf throws
  }
  return undefined;
}

/**
 * What to throw for `error`, which an engine's accessor threw for `value`: a `TypeError` saying
 * `must` (the argument and what it must be) and what `value` only looks like, when it is a
 * lookalike of a typed array or an ArrayBuffer ({@linkcode lookalike}); else `error` itself (a
 * getter of the caller's that threw).
 */
export function lookalikeError(error: unknown, value: unknown, must: string): unknown {
  const what = lookalike(value);
  return what === undefined ? error : new TypeError(`${must}, got ${what}`, { cause: error });
}

/**
 * Checks that `value` is an integer number within `[min, max]`; `expected` is what the message
 * of a wrong type says it must be (with the other values the caller takes, if any).
 */
export function integer(
  value: unknown,
  what: string,
  min: number,
  max: number,
  expected = "a number",
): number {
  if (typeof value !== "number") {
    throw new TypeError(`${what} must be ${expected}, got ${describe(value)}`);
  }
  if (!Number.isInteger(value)) {
    throw new RangeError(`${what} must be an integer, got ${describe(value)}`);
  }
  if (value < min || value > max) {
    throw new RangeError(
      `${what} must be between ${min} and ${max}, got ${value}`,
    );
  }
  // -0 as 0: Deno's FFI refuses -0 for an unsigned parameter.
  return value + 0;
}

/**
 * Checks a timeout in milliseconds: 0 or more, fractions included. `undefined` and anything above
 * `Number.MAX_SAFE_INTEGER` (Infinity too) mean none and come back as Infinity. NaN is refused,
 * where `Atomics.wait` would take it for none: it is more often a miscalculation than a choice.
 */
export function timeoutMs(value: unknown, what = "timeoutMs"): number {
  if (value === undefined) return Infinity;
  if (typeof value !== "number") {
    throw new TypeError(`${what} must be a number, got ${describe(value)}`);
  }
  if (value >= 0) return value > Number.MAX_SAFE_INTEGER ? Infinity : value + 0; // -0 as 0
  throw new RangeError(
    `${what} must be a number of milliseconds from 0 (Infinity or undefined for none), got ${value}`,
  );
}

/** Checks a System V key: an integer in 1..=0xffffffff (0 is IPC_PRIVATE). */
export function key(value: unknown, what = "key"): number {
  if (value === 0) {
    throw new RangeError(
      `${what} must not be 0: key 0 is IPC_PRIVATE, which no other process can open`,
    );
  }
  return integer(value, what, 1, MAX_KEY);
}

/** Checks a segment size in bytes: a positive safe integer. */
export function size(value: unknown, what = "size"): number {
  return integer(value, what, 1, Number.MAX_SAFE_INTEGER);
}

/** Checks permission bits: an integer in 0..=0o777. */
export function mode(value: unknown, what = "mode"): number {
  // In octal both ways, as modes are written (a negative one as given).
  if (typeof value === "number" && Number.isInteger(value) && (value < 0 || value > 0o777)) {
    const got = value < 0 ? String(value) : `0o${value.toString(8)}`;
    throw new RangeError(`${what} must be between 0o0 and 0o777, got ${got}`);
  }
  return integer(value, what, 0, 0o777);
}

/**
 * Checks a segment name and returns its canonical form with one leading `/`, plus its UTF-8
 * bytes.
 */
export function name(value: unknown, what = "name"): [string, Uint8Array] {
  if (typeof value !== "string") {
    throw new TypeError(`${what} must be a string, got ${describe(value)}`);
  }
  const bare = value.startsWith("/") ? value.slice(1) : value;
  if (bare.length === 0) throw new RangeError(`${what} must not be empty`);
  if (bare === "." || bare === "..") {
    // They name the segments' folder (`/dev/shm`) or its parent, never a segment: a create
    // failed with an EEXIST that suggested `replace: true`.
    throw new RangeError(
      `${what} must not be "." or "..", which name a folder, not a segment, got ${
        JSON.stringify(value)
      }`,
    );
  }
  if (bare.includes("/")) {
    throw new RangeError(
      `${what} must not contain '/' after its first character, got ${JSON.stringify(value)}`,
    );
  }
  if (bare.includes("\0")) {
    throw new RangeError(`${what} must not contain a NUL character`);
  }
  // UTF-8 has no encoding for half a surrogate pair: TextEncoder writes U+FFFD in its place, so
  // "/a\ud800" and "/a\udc00" would both open the segment "/a\ufffd".
  if (/\p{Cs}/u.test(bare)) {
    throw new RangeError(`${what} must not contain a lone surrogate (half a UTF-16 pair)`);
  }
  const bytes = new TextEncoder().encode("/" + bare);
  if (bytes.length - 1 > MAX_NAME_BYTES) {
    throw new RangeError(
      `${what} must be at most ${MAX_NAME_BYTES} bytes in UTF-8 after the '/', got ${
        bytes.length - 1
      }`,
    );
  }
  return ["/" + bare, bytes];
}

/**
 * Checks an options argument (undefined or a plain object) and returns its own options, each read
 * once, in an object without a prototype. An option the object only inherits is refused: one on
 * `Object.prototype` (which a prototype-polluting bug elsewhere in the program may have set, say
 * `mode` or `owner`) would otherwise widen a new segment's mode, accept another user's segment or
 * replace one, and one on a prototype of the caller's own would be ignored without a word.
 */
export function options<T extends object>(
  value: unknown,
  what: string,
  known?: readonly (keyof T & string)[],
): T {
  const own = Object.create(null) as Record<string, unknown>;
  if (value === undefined) return own as T;
  if (typeof value !== "object" || value === null || isArray(value)) {
    const kind = describe(value);
    throw new TypeError(`${what} must be an object, got ${kind}`);
  }
  // A misspelt option (`mdoe`) would silently leave the default, owner-only mode or not.
  if (known !== undefined) {
    for (const key of Object.keys(value)) {
      if (!(known as readonly string[]).includes(key)) {
        throw new TypeError(
          `${what} has no option ${JSON.stringify(key)}; the options are ${known.join(", ")}`,
        );
      }
    }
  }
  for (const key of known ?? Object.keys(value)) {
    if (Object.hasOwn(value, key)) own[key] = (value as Record<string, unknown>)[key];
    else if (key in value) {
      throw new TypeError(
        `${what}.${key} is inherited, not the object's own property: set it on the options object itself (an option on Object.prototype, or on a prototype of yours, is not taken)`,
      );
    }
  }
  return own as T;
}

/**
 * Throws a `TypeError` naming `caller` unless `value` is an ArrayBuffer, of this realm or another
 * (as the engine's own accessor tells: a Proxy of one, or an object given its prototype, is not),
 * saying what it is instead and, for a typed array or a `DataView`, to pass its `.buffer`.
 */
export function arrayBuffer(
  value: unknown,
  caller: string,
  must = "an ArrayBuffer",
): asserts value is ArrayBuffer {
  if (isBuffer(value)) return;
  let kind = lookalike(value);
  if (kind === undefined && typeof value === "object" && value !== null) {
    try {
      // `[object SharedArrayBuffer]`, `[object Int32Array]`: the seed returned the first, and its
      // users may pass either. A Proxy's trap may throw (a revoked one does).
      const tag = Object.prototype.toString.call(value).slice(8, -1);
      kind = `${/^[AEIO]/.test(tag) ? "an" : "a"} ${tag}`; // a Uint8Array, an Int32Array
    } catch {
      kind = "an object";
    }
  }
  const hint = isView(value) ? "; pass its .buffer" : "";
  throw new TypeError(`${caller}: buffer must be ${must}, got ${kind ?? describe(value)}${hint}`);
}

/**
 * For an error message: what to do with an array of the right kind made in another realm (a
 * `node:vm` context, an iframe), which `instanceof` does not take; else "".
 */
export function otherRealm(value: unknown, kind: string): string {
  return ArrayBuffer.isView(value) && Object.prototype.toString.call(value) === `[object ${kind}]`
    ? ` of another realm (node:vm?): make one in this realm over the same buffer (new ${kind}(its .buffer))`
    : "";
}
