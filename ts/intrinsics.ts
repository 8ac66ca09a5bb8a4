/**
 * The engine's own accessors of typed arrays and ArrayBuffers, taken once at load (and the few
 * built-ins that run beside them: `ArrayBuffer.isView`, `Uint8Array`), so that a script that
 * replaces them later runs nothing in the middle of a call.
 *
 * A caller can redefine `length`, `byteOffset`, `byteLength`, `buffer` or `detached` on an array
 * or a buffer it hands in (a subclass's getter, or an own property defined on the object). Where
 * such a value becomes an address or a bound that the native library reads or writes through, it
 * must come from the engine: a lie there is a read or write outside the mapping, which ends the
 * process. These getters read the engine's internal slots, which no script can change, and throw
 * a `TypeError` for an object that is not what they read (a Proxy, an object made with the
 * prototype only).
 *
 * @module
 */

const reflectGet = Reflect.get;
const reflectApply = Reflect.apply;
const defineProperty = Object.defineProperty;
const createObject = Object.create;
/** JavaScriptCore (Bun), where a bound function costs what Reflect.get does not. */
const jsc = "Bun" in globalThis;

/**
 * The engine's getter `get` as a function of the object it reads, which looks nothing up when it
 * is called. `get.call(object)` looks up `Function.prototype.call` at every call, and a script
 * that replaced it after load could make the getter answer anything: a false length that went on
 * to native code read past a message's buffer. V8 calls a function bound at load
 * (`call.bind(get)`) as fast as `get.call`; JavaScriptCore takes about 3x as long, but reads a
 * getter of an object no script can reach with the engine's `Reflect.get`, taken at load, as fast
 * (`docs/safety.md`).
 */
function reader<T>(get: (this: unknown) => T): (object: unknown) => T {
  if (jsc) {
    const holder = createObject(null);
    defineProperty(holder, "value", { get });
    return (object) => reflectGet(holder, "value", object);
  }
  return Function.prototype.call.bind(get) as (object: unknown) => T;
}

const typedArray = Object.getPrototypeOf(Uint8Array.prototype);
const getter = <T>(proto: object, name: string | symbol) =>
  Object.getOwnPropertyDescriptor(proto, name)?.get as ((this: unknown) => T) | undefined;
const bufferOf = reader(getter<ArrayBufferLike>(typedArray, "buffer")!);
const byteOffsetOf = reader(getter<number>(typedArray, "byteOffset")!);
const byteLengthOf = reader(getter<number>(typedArray, "byteLength")!);
const lengthOf = reader(getter<number>(typedArray, "length")!);
const tagOf = reader(getter<string | undefined>(typedArray, Symbol.toStringTag)!);
const mapSizeOf = reader(getter<number>(Map.prototype, "size")!);
const bufferByteLengthOf = reader(getter<number>(ArrayBuffer.prototype, "byteLength")!);
const dataViewBufferOf = reader(getter<ArrayBufferLike>(DataView.prototype, "buffer")!);
const dataViewByteOffsetOf = reader(getter<number>(DataView.prototype, "byteOffset")!);
const dataViewByteLengthOf = reader(getter<number>(DataView.prototype, "byteLength")!);
const isViewOf = ArrayBuffer.isView;
const prototypeOf = Object.getPrototypeOf;
const bufferPrototype = ArrayBuffer.prototype;
/** Undefined where the engine has no growable `SharedArrayBuffer` (nor any that could grow). */
const sharedGrowable = typeof SharedArrayBuffer === "function"
  ? getter<boolean>(SharedArrayBuffer.prototype, "growable")
  : undefined;
const sharedGrowableOf = sharedGrowable && reader(sharedGrowable);
const sharedByteLength = typeof SharedArrayBuffer === "function"
  ? getter<number>(SharedArrayBuffer.prototype, "byteLength")
  : undefined;
const sharedByteLengthOf = sharedByteLength && reader(sharedByteLength);
const isArrayOf = Array.isArray;
const Bytes = Uint8Array;
const Words = Int32Array;
/** Node 20 has no `ArrayBuffer.prototype.detached`. */
const detached = getter<boolean>(ArrayBuffer.prototype, "detached");
const detachedOf = detached && reader(detached);
/** Node 20 has no `ArrayBuffer.prototype.transfer` either. */
const transfer = (ArrayBuffer.prototype as { transfer?: (length?: number) => ArrayBuffer })
  .transfer;
/** `transfer` of `buffer`, called without a look at `Function.prototype.call`. */
const transferOf = transfer &&
  ((buffer: ArrayBuffer, length: number) => reflectApply(transfer, buffer, [length]));

/** Whether the engine can detach a buffer with `transfer` (Node 20 cannot). */
export const canTransfer: boolean = transferOf !== undefined;

/**
 * Whether `value` really is a typed array or a `DataView` (a Proxy of one, or an object given
 * its prototype, passes `instanceof`, and every accessor refuses it).
 */
export function isView(value: unknown): value is ArrayBufferView {
  return isViewOf(value);
}

/**
 * Whether `value` really is a typed array, as the engine's own tag getter tells, without a throw
 * (a `DataView` given a typed array's prototype is a view but not one; a Proxy is neither).
 */
export function isTypedArray(value: unknown): boolean {
  return tagOf(value) !== undefined;
}

/**
 * Whether `value` really is a `Uint8Array`, of `Uint8Array` itself or of a subclass (Node.js's
 * `Buffer`), as the engine's own tag tells: its elements are its bytes. Runs no code of the
 * caller's (for a Proxy, whose traps the tag never calls, it is false).
 */
export function isUint8Array(value: unknown): value is Uint8Array {
  return tagOf(value) === "Uint8Array";
}

/**
 * The name of the type a typed array was made as (`"Uint8Array"` for a `Buffer` too), from the
 * engine's own `Symbol.toStringTag` getter: undefined for anything else (a `DataView`, a Proxy).
 * Runs no code of the caller's and never throws.
 */
export const typedArrayName: (value: unknown) => string | undefined = tagOf;

/**
 * How many entries a `Map` holds, from the engine's own `size` getter: a getter a script put on
 * `Map.prototype` would run its code in the middle of a receive (after a target's room is
 * counted, before native code writes it).
 */
export function mapSize(map: Map<unknown, unknown>): number {
  return mapSizeOf(map);
}

/**
 * How many bytes a `DataView` spans, from the engine's own getter.
 *
 * @throws {TypeError} If its buffer is detached, or it is out of the bounds of a resizable buffer.
 */
export function dataViewByteLength(view: DataView): number {
  return dataViewByteLengthOf(view);
}

/**
 * A view of the `length` 32-bit words of `buffer` from byte `offset` on, made by the engine's
 * `Int32Array`: one a script put in its place could hand back a Proxy, whose traps would then
 * run in the middle of a send or a receive that copies through the view.
 */
export function wordsView(buffer: ArrayBufferLike, offset: number, length: number): Int32Array {
  return new Words(buffer, offset, length);
}

/**
 * A `Uint8Array` over the `length` bytes of `buffer` from byte `offset` on, made by the engine's
 * `Uint8Array` (see {@linkcode wordsView}).
 */
export function bytesView(buffer: ArrayBufferLike, offset: number, length: number): Uint8Array {
  return new Bytes(buffer, offset, length);
}

/** A new `Uint8Array` of `length` zero bytes, made by the engine's `Uint8Array`. */
export function newBytes(length: number): Uint8Array {
  return new Bytes(length);
}

/** The ArrayBuffer a typed array views. */
export const viewBuffer: (view: ArrayBufferView) => ArrayBufferLike = bufferOf;

/**
 * Whether the bytes of the typed array `view` may grow under a reader: its buffer is a growable
 * `SharedArrayBuffer`, which another thread may grow at any moment, and a view that tracks its
 * length grows with it (views of fixed length over one count too: this does not tell them
 * apart). A copy that counts its source again, as `set` does, may then copy more than was
 * counted before. Costs a read of the engine's `buffer`, which an array the engine keeps inline
 * (a small `new Uint8Array(n)`) makes at its first read: 0.15-0.3 µs, once per array.
 *
 * An `ArrayBuffer` is told by its prototype, without a throw; a buffer of another realm (or one
 * given another prototype) by the engine's `growable` getter, which refuses an `ArrayBuffer`.
 */
export function mayGrow(view: ArrayBufferView): boolean {
  if (sharedGrowableOf === undefined) return false;
  const buffer = bufferOf(view);
  // Told by the engine's accessor too: a SharedArrayBuffer may have been given that prototype.
  if (prototypeOf(buffer) === bufferPrototype && isBuffer(buffer)) return false;
  try {
    return sharedGrowableOf(buffer) === true;
  } catch {
    return false; // an ArrayBuffer of another realm
  }
}

/**
 * Whether a buffer, or the buffer of a typed array or a `DataView`, is detached: its 0 bytes are
 * not an empty message but a moved one. Of any realm; false for a `SharedArrayBuffer`.
 */
export function viewDetached(message: ArrayBufferView | ArrayBuffer): boolean {
  try {
    let buffer: ArrayBufferLike = message as ArrayBuffer;
    if (isViewOf(message)) {
      // Not a typed array (no tag): a DataView.
      buffer = (tagOf(message) === undefined ? dataViewBufferOf : bufferOf)(message);
    }
    return bufferDetached(buffer as ArrayBuffer);
  } catch {
    return false; // a SharedArrayBuffer, which cannot be detached
  }
}

/** Where a typed array starts in its buffer, in bytes. */
export const viewByteOffset: (view: ArrayBufferView) => number = byteOffsetOf;

/** How many bytes a typed array spans (0 once its buffer is detached). */
export const viewByteLength: (view: ArrayBufferView) => number = byteLengthOf;

/** How many elements a typed array holds (0 once its buffer is detached). */
export const viewLength: (view: ArrayBufferView) => number = lengthOf;

/**
 * A `Uint8Array` over the bytes a typed array or a `DataView` spans, as the engine has them (the
 * object's own `buffer`, `byteOffset` and `byteLength` may say otherwise); empty once its buffer
 * is detached, or while the view is out of the bounds of a resizable buffer. Throws a
 * `TypeError` for anything else.
 */
export function viewBytes(view: ArrayBufferView): Uint8Array {
  // A typed array has a tag. A view without one is a DataView (or the getter below refuses it),
  // told apart without a throw: an exception costs microseconds, at every send of a DataView.
  if (tagOf(view) === undefined) {
    // A DataView, whose byteLength throws once its buffer is detached, or while it is out of
    // the bounds of a resizable buffer that shrank: it has no bytes then, as a typed array has
    // none (the caller tells a detached one apart).
    const buffer: ArrayBufferLike = dataViewBufferOf(view);
    let length: number;
    try {
      length = dataViewByteLengthOf(view);
    } catch {
      return new Uint8Array(0);
    }
    return new Uint8Array(buffer, dataViewByteOffsetOf(view), length);
  }
  const buffer: ArrayBufferLike = bufferOf(view);
  const length = byteLengthOf(view); // 0 once detached (or out of bounds)
  return length === 0 ? new Uint8Array(0) : new Uint8Array(buffer, byteOffsetOf(view), length);
}

/** How many bytes an ArrayBuffer holds (0 once detached). */
export function bufferByteLength(buffer: ArrayBuffer): number {
  return bufferByteLengthOf(buffer);
}

/**
 * Whether `value` really is an ArrayBuffer, as the engine's own accessor tells (a Proxy of one,
 * or an object given its prototype, passes `instanceof` and is refused by every accessor).
 */
export function isBuffer(value: unknown): value is ArrayBuffer {
  return reads(bufferByteLengthOf, value);
}

/** Whether `value` really is a `SharedArrayBuffer`, as the engine's own accessor tells. */
export function isSharedBuffer(value: unknown): boolean {
  return sharedByteLengthOf !== undefined && reads(sharedByteLengthOf, value);
}

/** Whether the engine's accessor `read` takes `value` (it throws for what it does not read). */
function reads(read: (object: unknown) => unknown, value: unknown): boolean {
  try {
    read(value);
    return true;
  } catch {
    return false;
  }
}

/** `Array.isArray`, false where it throws (a revoked Proxy). */
export function isArray(value: unknown): boolean {
  try {
    return isArrayOf(value);
  } catch {
    return false;
  }
}

/**
 * Whether an ArrayBuffer is detached. Where the engine has no `detached` accessor (Node 20) a
 * detached buffer has length 0, and one of length 0 is detached if no view of it can be made.
 */
export function bufferDetached(buffer: ArrayBuffer): boolean {
  if (detachedOf !== undefined) return detachedOf(buffer);
  if (bufferByteLengthOf(buffer) !== 0) return false;
  // Node 20: empty or detached. A view of a detached buffer cannot be made, and making one runs
  // no code of the caller's (unlike `slice`, which looks up a species constructor).
  try {
    new Bytes(buffer);
    return false;
  } catch {
    return true;
  }
}

/**
 * Detaches `buffer` through the engine's own `transfer(0)`, taken at load: a `transfer` defined
 * on the buffer (or put on the prototype later) is not called, and the result is read through
 * the engine's own getters. Returns whether `buffer` is detached afterwards: false where the
 * engine has no `transfer` (Node 20) or refuses (a buffer given a detach key, Node 21+).
 *
 * Close paths release a mapping's reference right after this; had a no-op `transfer` defined on
 * the buffer been called instead, the buffer would have stayed attached to unmapped memory.
 */
export function detachBuffer(buffer: ArrayBuffer): boolean {
  if (transferOf === undefined) return false;
  try {
    transferOf(buffer, 0);
  } catch {
    return false;
  }
  return bufferDetached(buffer);
}
