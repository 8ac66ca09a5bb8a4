/**
 * Helpers shared by the cross-process tests and their `xp_*` child scripts: a seeded byte pattern,
 * a checksum, and segment ids passed on a command line. No runtime-specific APIs.
 *
 * @module
 */

/** A segment id as the library takes it. */
export type Id = { key: number } | { name: string };

/** `["key", "1234"]` or `["name", "/x"]` to an id. */
export function parseId(kind: string, value: string): Id {
  if (kind === "key") {
    const key = Number(value);
    if (!Number.isInteger(key)) throw new Error(`bad key ${value}`);
    return { key };
  }
  if (kind === "name") return { name: value };
  throw new Error(`bad id kind ${kind}`);
}

/** An id as two command-line arguments (the inverse of {@linkcode parseId}). */
export function idArgs(id: Id): [string, string] {
  return "key" in id ? ["key", String(id.key)] : ["name", id.name];
}

/** Fills `bytes` with a pseudo-random pattern (xorshift32) determined by `seed`. */
export function fillPattern(bytes: Uint8Array, seed: number): void {
  let x = (seed >>> 0) || 0x9e3779b9;
  const words = bytes.length >>> 2;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < words; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    view.setUint32(i * 4, x, true);
  }
  for (let i = words * 4; i < bytes.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[i] = x & 0xff;
  }
}

/** FNV-1a (32-bit) of `bytes`, as 8 hex digits. */
export function fnv1a(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

/** The checksum a segment of `size` bytes filled by {@linkcode fillPattern} with `seed` has. */
export function expectedChecksum(size: number, seed: number): string {
  const bytes = new Uint8Array(size);
  fillPattern(bytes, seed);
  return fnv1a(bytes);
}
