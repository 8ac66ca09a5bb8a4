/**
 * The engine's own accessors of typed arrays and ArrayBuffers, taken once at load.
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

const typedArray = Object.getPrototypeOf(Uint8Array.prototype);
const getter = (proto: object, name: string) => Object.getOwnPropertyDescriptor(proto, name)?.get;
const bufferOf = getter(typedArray, "buffer")!;
const byteOffsetOf = getter(typedArray, "byteOffset")!;
const byteLengthOf = getter(typedArray, "byteLength")!;
const lengthOf = getter(typedArray, "length")!;
const bufferByteLengthOf = getter(ArrayBuffer.prototype, "byteLength")!;
/** Node 20 has no `ArrayBuffer.prototype.detached`. */
const detachedOf = getter(ArrayBuffer.prototype, "detached");

/** The ArrayBuffer a typed array views. */
export function viewBuffer(view: ArrayBufferView): ArrayBufferLike {
  return bufferOf.call(view);
}

/** Where a typed array starts in its buffer, in bytes. */
export function viewByteOffset(view: ArrayBufferView): number {
  return byteOffsetOf.call(view);
}

/** How many bytes a typed array spans (0 once its buffer is detached). */
export function viewByteLength(view: ArrayBufferView): number {
  return byteLengthOf.call(view);
}

/** How many elements a typed array holds (0 once its buffer is detached). */
export function viewLength(view: ArrayBufferView): number {
  return lengthOf.call(view);
}

/** How many bytes an ArrayBuffer holds (0 once detached). */
export function bufferByteLength(buffer: ArrayBuffer): number {
  return bufferByteLengthOf.call(buffer);
}

/**
 * Whether an ArrayBuffer is detached. Where the engine has no `detached` accessor (Node 20) a
 * detached buffer has length 0, and this library never wraps an empty one.
 */
export function bufferDetached(buffer: ArrayBuffer): boolean {
  return detachedOf === undefined ? bufferByteLengthOf.call(buffer) === 0 : detachedOf.call(buffer);
}
