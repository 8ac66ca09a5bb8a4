/**
 * The endpoints this thread holds of each channel, for the checks that keep a synchronous call
 * from waiting for something only its own thread can do (`docs/channel.md`, "Both ends in one
 * thread"), and a receive from writing into a ring. Module state is per thread: a Worker loads
 * its own copy of this module, so what is found here can only run when this thread returns.
 *
 * A ring is found through any of its mappings: a channel opened twice in one thread is two
 * {@linkcode Ring} objects over two mappings of one segment. Two rings count as one when their
 * segments have the same key or name and their headers agree on everything only their receiver
 * or an attaching endpoint writes (capacity, mode, the published `head`, the receiver's and the
 * senders' pids); see {@linkcode sameRegion}.
 *
 * @module
 */

import * as L from "./layout.ts";
import type { Ring } from "./ring.ts";

/** A receiver of this thread, as this thread's senders see it. */
export interface LocalReceiver {
  /** Inside one of its synchronous calls: a recvMany callback, or a listener while a receive waits. */
  inCall(): boolean;
  /**
   * Hands back to the senders the records it consumed before the one a callback is working on
   * (a recvMany batch defers that, see `Consumer.consume`).
   */
  handBack(): void;
}

/** A sender of this thread, as this thread's receiver sees it. */
export interface LocalSender {
  /** Inside a sendMany run: records reserved, not all written (an element's getter runs). */
  inRun(): boolean;
  /** The data index of the record its `reserve()` holds, not committed yet, or -1. */
  reserved(): number;
}

interface Local {
  label: string;
  receiver: LocalReceiver | undefined;
  readonly senders: Set<LocalSender>;
}

/** Each ring of this thread (held weakly: a channel dropped without close() may be collected). */
const locals = new WeakMap<Ring, Local>();
/** The ring each of its buffers belongs to (its own, and the one its lent views are made on). */
const byBuffer = new WeakMap<ArrayBuffer, Ring>();
/** The rings of this thread by their segment's key or name. */
const byLabel = new Map<string, WeakRef<Ring>[]>();

/**
 * The label of a channel's segment id (validated by the open): the same for every opening of
 * the same key or name (`"jobs"` and `"/jobs"` are one name).
 */
export function labelOf(id: { readonly key: number } | { readonly name: string }): string {
  if ("key" in id) return `key ${id.key}`;
  return id.name.startsWith("/") ? `name ${id.name}` : `name /${id.name}`;
}

/** Registers a ring this thread opened. */
export function addRing(ring: Ring, label: string): void {
  locals.set(ring, { label, receiver: undefined, senders: new Set() });
  byBuffer.set(ring.buffer, ring);
  const list = byLabel.get(label);
  if (list === undefined) byLabel.set(label, [new WeakRef(ring)]);
  else list.push(new WeakRef(ring));
}

/** Forgets a ring whose channel closed. */
export function removeRing(ring: Ring): void {
  const local = locals.get(ring);
  if (local === undefined) return;
  locals.delete(ring);
  live(local.label);
}

/** Registers (or, with `undefined`, forgets) the receiver of this thread on `ring`. */
export function setReceiver(ring: Ring, receiver: LocalReceiver | undefined): void {
  const local = locals.get(ring);
  if (local !== undefined) local.receiver = receiver;
}

/** Registers a sender of this thread on `ring`. */
export function addSender(ring: Ring, sender: LocalSender): void {
  locals.get(ring)?.senders.add(sender);
}

/** Forgets a sender of this thread on `ring`. */
export function removeSender(ring: Ring, sender: LocalSender): void {
  locals.get(ring)?.senders.delete(sender);
}

/** The live rings of `label`, the entries of collected or closed ones dropped. */
function live(label: string): Ring[] {
  const list = byLabel.get(label);
  if (list === undefined) return [];
  const rings: Ring[] = [];
  const kept: WeakRef<Ring>[] = [];
  for (const ref of list) {
    const ring = ref.deref();
    if (ring !== undefined && locals.has(ring)) {
      rings.push(ring);
      kept.push(ref);
    }
  }
  if (kept.length === 0) byLabel.delete(label);
  else byLabel.set(label, kept);
  return rings;
}

/**
 * Whether rings `a` and `b`, of the same key or name, are one segment: the words only the
 * receiver and attaching endpoints write agree. Called when `a` or `b` has its receiver in this
 * thread, inside one of its calls or not running at all, so `head` stands still; the pids
 * change only when endpoints attach or leave. A different segment under the same name (the
 * first unlinked and made again) agrees on all of them only by chance.
 */
function sameRegion(a: Ring, b: Ring): boolean {
  if (a === b) return true;
  if (a.capacity !== b.capacity || a.mode !== b.mode) return false;
  for (const word of [L.OFF_HEAD, L.OFF_CONSUMER_PID, L.OFF_FLAGS]) {
    if (Atomics.load(a.i32, word >> 2) !== Atomics.load(b.i32, word >> 2)) return false;
  }
  const slots = a.mode === L.MODE_MPSC ? L.MAX_PRODUCERS : 1;
  for (let slot = 0; slot < slots; slot++) {
    if (a.producerPid(slot) !== b.producerPid(slot)) return false;
  }
  return true;
}

/** The receiver this thread holds on the segment of `ring`, through any of its mappings. */
export function receiverHere(ring: Ring): LocalReceiver | undefined {
  const own = locals.get(ring);
  if (own === undefined) return undefined;
  if (own.receiver !== undefined) return own.receiver;
  for (const other of live(own.label)) {
    const receiver = locals.get(other)!.receiver;
    if (receiver !== undefined && sameRegion(ring, other)) return receiver;
  }
  return undefined;
}

/** The senders this thread holds on the segment of `ring`, through any of its mappings. */
export function sendersHere(ring: Ring): LocalSender[] {
  const own = locals.get(ring);
  if (own === undefined) return [];
  const found: LocalSender[] = [];
  for (const other of live(own.label)) {
    const senders = locals.get(other)!.senders;
    if (senders.size !== 0 && sameRegion(ring, other)) found.push(...senders);
  }
  return found;
}

/** Registers another buffer over the mapping of `ring` (the one its lent views are made on). */
export function addBuffer(ring: Ring, buffer: ArrayBuffer): void {
  byBuffer.set(buffer, ring);
}

/**
 * The open ring of this thread whose mapping `buffer` is (the buffer its channel views), or
 * undefined: a receive never writes into a ring.
 */
export function ringAt(buffer: unknown): Ring | undefined {
  const ring = byBuffer.get(buffer as ArrayBuffer);
  return ring !== undefined && locals.has(ring) ? ring : undefined;
}
