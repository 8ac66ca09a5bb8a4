/**
 * The endpoints this thread holds of each channel, for the checks that keep a synchronous call
 * from waiting for something only its own thread can do (`docs/channel.md`, "Both ends in one
 * thread"), and a receive from writing into a ring. Module state is per thread: a Worker loads
 * its own copy of this module, so what is found here can only run when this thread returns.
 *
 * A ring is found through any of its mappings: a channel opened twice in one thread is two
 * {@linkcode Ring} objects over two mappings of one segment. Two rings count as one when their
 * segments have the same key or name and a word written through one mapping is seen through the
 * other; see {@linkcode sameRegion}.
 *
 * @module
 */

import { backend } from "../backend.ts";
import * as L from "./layout.ts";
import type { Ring } from "./ring.ts";

/**
 * The `Atomics` functions this module calls, taken at load: a script that replaces one later would
 * run in the middle of a send or a receive (between moving `tail` and a commit, say).
 */
const { compareExchange: atomicCompareExchange, load: atomicLoad } = Atomics;

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
  receiver: LocalReceiver | undefined;
  readonly senders: Set<LocalSender>;
}

/** Each ring of this thread (held weakly: a channel dropped without close() may be collected). */
const locals = new WeakMap<Ring, Local>();
/** The ring each of its buffers belongs to (its own, and the one its lent views are made on). */
const byBuffer = new WeakMap<ArrayBuffer, Ring>();
/** A weak reference to a ring; `drop()` once it is no longer kept (see {@linkcode weakly}). */
interface RingRef {
  deref(): Ring | undefined;
  drop(): void;
}

/**
 * A weak reference to `ring` that lets the engine collect it at once: the backend's where it has
 * one. A `WeakRef` keeps its target alive until the end of the job that made it in V8, so in Deno
 * and Node.js a synchronous loop that dropped channels without close() kept every one of them
 * mapped until it yielded (`ENOSPC` at the 15th 1 MiB channel in a 16 MiB `/dev/shm`).
 */
function weakly(ring: Ring): RingRef {
  const weak = backend().weak;
  if (weak === undefined) {
    const ref = new WeakRef(ring);
    return { deref: () => ref.deref(), drop() {} };
  }
  const id = weak.ref(ring);
  return { deref: () => weak.deref(id) as Ring | undefined, drop: () => weak.drop(id) };
}

/** The rings of this thread by their segment's key or name ({@linkcode Ring.label}). */
const byLabel = new Map<string, RingRef[]>();
/**
 * Drops the entry of a ring collected without its channel's close() (a channel dropped), which
 * would otherwise stay in {@linkcode byLabel} for good when no ring of its label is looked up
 * again (a name used once).
 */
const collected = new FinalizationRegistry<string>((label) => void live(label));

/** Registers a ring this thread opened. */
export function addRing(ring: Ring): void {
  const label = ring.label;
  locals.set(ring, { receiver: undefined, senders: new Set() });
  byBuffer.set(ring.buffer, ring);
  const list = byLabel.get(label);
  if (list === undefined) byLabel.set(label, [weakly(ring)]);
  else list.push(weakly(ring));
  collected.register(ring, label);
}

/** How many keys and names this thread's registry holds rings of (for tests). */
export function labelCount(): number {
  return byLabel.size;
}

/** Forgets a ring whose channel closed. */
export function removeRing(ring: Ring): void {
  const local = locals.get(ring);
  if (local === undefined) return;
  locals.delete(ring);
  live(ring.label);
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
  const kept: RingRef[] = [];
  for (const ref of list) {
    const ring = ref.deref();
    if (ring !== undefined && locals.has(ring)) {
      rings.push(ring);
      kept.push(ref);
    } else ref.drop();
  }
  if (kept.length === 0) byLabel.delete(label);
  else byLabel.set(label, kept);
  return rings;
}

/**
 * The header word (`reserved0[0]`, zero at rest) through which {@linkcode sameRegion} tells two
 * mappings apart: a token written through one mapping and read through the other.
 */
const PROBE = (L.OFF_MAX_PRODUCERS + 4) >> 2;

/**
 * Whether rings `a` and `b`, of the same key or name, are one segment. Header words cannot
 * tell: a segment unlinked and made again under the name, with the same capacity, both ends in
 * this process (one in a Worker, same pid) and nothing received yet, agrees with the first on
 * every one of them. So a random token is written through `a` into a word nothing else uses and
 * read back through `b`, then taken away (compare-and-exchange both ways: another thread or
 * process may be doing the same; its token seen through both mappings answers as well). A word
 * a peer keeps nonzero makes the two count as different, so the send or receive waits as usual.
 */
function sameRegion(a: Ring, b: Ring): boolean {
  if (a === b) return true;
  if (a.capacity !== b.capacity || a.mode !== b.mode) return false;
  for (let round = 0; round < 16; round++) {
    const token = (Math.random() * 0x1_0000_0000) | 0 || 1;
    const held = atomicCompareExchange(a.i32, PROBE, 0, token);
    if (held === 0) {
      const seen = atomicLoad(b.i32, PROBE);
      atomicCompareExchange(a.i32, PROBE, token, 0);
      return seen === token;
    }
    if (atomicLoad(b.i32, PROBE) === held && atomicLoad(a.i32, PROBE) === held) return true;
  }
  return false;
}

/** The receiver this thread holds on the segment of `ring`, through any of its mappings. */
export function receiverHere(ring: Ring): LocalReceiver | undefined {
  const own = locals.get(ring);
  if (own === undefined) return undefined;
  if (own.receiver !== undefined) return own.receiver;
  for (const other of live(ring.label)) {
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
  for (const other of live(ring.label)) {
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
