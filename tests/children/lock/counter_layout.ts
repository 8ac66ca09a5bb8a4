/**
 * Where `count_under_lock.ts` and its parent test keep things in their segment. No imports, so
 * the test can use it without loading a child script.
 *
 * - bytes 0..64: the Mutex (`Mutex.init` by the parent)
 * - bytes 64..72: the plain Float64 counter
 * - the Int32 words below
 *
 * @module
 */

/** Byte offset of the Float64 counter. */
export const COUNTER_BYTE = 64;
/** Int32 index: how many children are ready. */
export const READY = 18;
/** Int32 index: the start flag (the parent stores 1 and notifies). */
export const GO = 19;
/** Int32 index: how many children are inside the read-delay-write section right now. */
export const INSIDE = 20;
/** Int32 index: how many times a child entered that section while another was inside. */
export const OVERLAPS = 21;
