/**
 * Attach: `open` + a view + `close()` of a 4 KiB and a 1 GiB segment that already exist and are
 * populated, so that only the attach path is timed; against the same system calls from Rust
 * (`native_segment`) and the seed package (npm `shared-buffer@1.4.0`) in Node.
 *
 * @module
 */

import { existsSync } from "node:fs";
import process from "node:process";
import {
  childCommand,
  createKeyed,
  each,
  leftovers,
  lib,
  median,
  nativeBinary,
  ratios,
  root,
  round,
  type Row,
  runJson,
  type Runtime,
  type Scenario,
  timeOps,
  uniqueName,
  wheres,
} from "../harness.ts";
import { backend } from "../../ts/backend.ts";
import { OPEN, OWNER_TRUSTED } from "../../ts/ffi.ts";

const SIZES = { small: 4096, large: 1 << 30 } as const;
const BLOCKS = 8;
const BLOCK_MS = 10;

/** The segments under test: a key and a name of each size. */
interface Ids {
  keys: [number, number];
  names: [string, string];
}

/** Per-variant blocks of ns per call, as every attach child (and the Rust one) prints them. */
type Blocks = Record<string, Record<"small" | "large", { ns_per_op: number[] }>>;

/** A full collection where the runtime offers one (Deno and Node run with `--expose-gc`). */
function collect(): void {
  const g = globalThis as { gc?: () => void; Bun?: { gc(force: boolean): void } };
  if (g.Bun) g.Bun.gc(true);
  else g.gc?.();
}

/** Times each variant on both sizes in alternating blocks of the same number of calls. */
async function attachChild(ids: Ids): Promise<{ variants: Blocks }> {
  const { SharedMemory, createSharedBuffer, detachSharedBuffer } = lib;
  const b = backend();
  const opened = new BigUint64Array(7);
  let sink = 0;
  const pairOf = (op: (i: 0 | 1) => void): [() => void, () => void] => [() => op(0), () => op(1)];
  const variants: Record<string, [() => void, () => void]> = {
    key: pairOf((i) => {
      const shm = SharedMemory.open({ key: ids.keys[i] });
      sink += shm.buffer.byteLength;
      shm.close();
    }),
    key_view: pairOf((i) => {
      const shm = SharedMemory.open({ key: ids.keys[i] });
      sink += shm.view(0, SIZES.small).byteLength;
      shm.close();
    }),
    name: pairOf((i) => {
      const shm = SharedMemory.open({ name: ids.names[i] });
      sink += shm.buffer.byteLength;
      shm.close();
    }),
    // The floor under the others: the library's own open and close of the key, one call each
    // through this runtime's binding (FFI in Deno and Bun, Node-API in Node), in this runtime's
    // process; no SharedMemory, no buffer.
    call_key: pairOf((i) => {
      const rc = b.openKey(ids.keys[i], 0n, OPEN, 0, 0, BigInt(OWNER_TRUSTED), opened);
      if (rc !== 0) throw new Error(`open: ${b.errorName(rc)}`);
      sink += Number(opened[2]);
      b.close(Number(opened[0]));
    }),
    seed_api: pairOf((i) => {
      const buffer = createSharedBuffer(ids.keys[i], i ? SIZES.large : SIZES.small);
      sink += buffer.byteLength;
      detachSharedBuffer(buffer);
    }),
  };
  // One iteration count for both sizes of a variant, so that GC spreads alike; but the sizes in
  // phases of their own, all 4 KiB blocks first: the collections that 1 GiB buffers bring on
  // run some time after the attaches that caused them, and blocks of both sizes interleaved
  // made the 4 KiB ones pay for the 1 GiB ones (up to 10x in Node, one block in two).
  const counts: Record<string, number> = {};
  const phase = (size: "small" | "large") =>
    timeOps(
      Object.fromEntries(
        Object.entries(variants).map(([name, pair]) => [name, pair[size === "small" ? 0 : 1]]),
      ),
      { blocks: BLOCKS, blockMs: BLOCK_MS, warmup: 500, counts },
    );
  const small = phase("small");
  const large = phase("large");
  const out: Blocks = Object.fromEntries(
    Object.keys(variants).map((name) => [name, {
      small: { ns_per_op: small[name] },
      large: { ns_per_op: large[name] },
    }]),
  );
  // A buffer or view the collector took before its close() is closed by its finalizer, which
  // Node.js runs on a later turn of the event loop: let them run before counting what is left.
  for (let turn = 0; turn < 50 && lib.openHandleCount() !== 0; turn++) {
    collect();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  if (sink === 0 || lib.openHandleCount() !== 0) throw new Error("handles left open");
  return { variants: out };
}

/**
 * The seed's attach script, with the seed package from `SEED_PACKAGE` (`make tools` builds it),
 * run by the Node it was built for (`SEED_NODE`, else `node` from the PATH).
 */
function seedScript(): string {
  const addon = `${process.env.SEED_PACKAGE}/build/Release/shared-buffer.node`;
  if (!existsSync(addon)) throw new Error(`no ${addon}: set SEED_PACKAGE (make bench does)`);
  return `${root}/bench/seed/attach.mjs`;
}

/** Creates the populated segments, runs `fn`, removes them. */
async function withSegments<T>(fn: (ids: Ids) => Promise<T>): Promise<T> {
  const made: ({ key: number } | { name: string })[] = [];
  const tag = uniqueName("attach");
  const create = (id: { key: number } | { name: string }, size: number) => {
    leftovers("add", ["key" in id ? `key:${id.key}` : id.name]);
    lib.SharedMemory.create(id, size, { populate: true }).close();
    made.push(id);
  };
  const freshKey = (size: number): number => {
    const { key, shm } = createKeyed(size); // listed as a leftover
    shm.close();
    made.push({ key });
    return key;
  };
  try {
    // The first System V segment of an IPC namespace (a machine just booted) has id 0, which the
    // seed's detachSharedBuffer takes for "detached" and refuses (docs/seed.md): a segment of
    // our own first, held until the end, so that the timed ones never get it.
    freshKey(1);
    const names: [string, string] = [`/${tag}-small`, `/${tag}-large`];
    create({ name: names[0] }, SIZES.small);
    create({ name: names[1] }, SIZES.large);
    return await fn({ keys: [freshKey(SIZES.small), freshKey(SIZES.large)], names });
  } finally {
    for (const id of made) lib.SharedMemory.unlink(id);
    leftovers("remove", made.map((id) => "key" in id ? `key:${id.key}` : id.name));
  }
}

const env = (ids: Ids) => ({
  SB_BENCH_KEY_SMALL: String(ids.keys[0]),
  SB_BENCH_KEY_LARGE: String(ids.keys[1]),
  SB_BENCH_NAME_SMALL: ids.names[0],
  SB_BENCH_NAME_LARGE: ids.names[1],
  SB_BENCH_BLOCKS: String(BLOCKS),
  SB_BENCH_BLOCK_MS: String(BLOCK_MS),
});

/** Rows of one child's blocks: median µs per call of each size, and the size ratio. */
function toRows(who: string, blocks: Blocks): Row[] {
  return Object.entries(blocks).flatMap(([what, { small, large }]) => {
    const us = (b: number[]) => round(median(b) / 1e3, 3);
    const pairs = small.ns_per_op.map((ns, i) => large.ns_per_op[i] / ns);
    return [
      { runtime: who, what, size: SIZES.small, metric: "us", value: us(small.ns_per_op) },
      { runtime: who, what, size: SIZES.large, metric: "us", value: us(large.ns_per_op) },
      { runtime: who, what, metric: "1GiB/4KiB", value: round(median(pairs), 3) },
    ];
  });
}

/** Each variant against libc's same calls, per size (see {@linkcode ratios}). */
const RATIOS = ["key", "key_view", "name", "seed_api", "call_key", "seed_key", "seed_key_gc"].map(
  (what) =>
    `us ${what} / native.raw_${what === "name" ? "name" : "key"} = attach ${what}: time / libc's`,
);
/**
 * The same split in two: what the binding's own open and close calls cost in the runtime's
 * process over libc's calls from a small Rust program (`call_key` above), and what the
 * `SharedMemory` and its buffer add over those calls.
 */
const OVER_CALL = ["key", "key_view", "seed_api"].map((what) =>
  `us ${what} / call_key = attach ${what}: time / the library's own open + close call`
);

/** The scenario. */
export const attach: Scenario = {
  name: "attach",
  method: "open + view + close() of an existing, populated 4 KiB and 1 GiB segment, no page " +
    "touched; each process times blocks of the same number of calls for both sizes, " +
    "variants alternating, all 4 KiB blocks first, then the 1 GiB ones (Deno, Bun, Node: " +
    "interleaved, the collections that 1 GiB buffers bring on landed in 4 KiB blocks); figures are medians over blocks (us per call). Variants: key / name = " +
    "SharedMemory.open({ key } / { name }) + .buffer + close(); key_view = .view(0, 4096) " +
    "instead of .buffer; seed_api = createSharedBuffer + detachSharedBuffer; call_key = the " +
    "library's own sb_open_key + sb_close through the runtime's binding (FFI in Deno and Bun, " +
    "Node-API in Node), no SharedMemory and no buffer. native: libc " +
    "shmget + shmctl(IPC_STAT) + shmat + shmdt (raw_key), shm_open + fstat + mmap + munmap " +
    "(raw_name), and shared_buffer::Segment (segment_key, segment_name). seed: npm " +
    "shared-buffer@1.4.0 in Node; its detach does not unmap (GC does), so seed_key leaves the " +
    "forced GC out of the timing and seed_key_gc times it.",
  async run(ctx, skipped) {
    return await withSegments(async (ids) => {
      const command = async (who: string) =>
        who === "native"
          ? [await nativeBinary("native_segment")]
          : who === "seed"
          ? [process.env.SEED_NODE ?? "node", "--expose-gc", seedScript()]
          : childCommand(who as Runtime, "attach", "attach", ids);
      return await each(ctx, skipped, ["native", ...ctx.runtimes, "seed"], async (who) => {
        const got = await runJson<{ variants: Blocks }>(await command(who), { env: env(ids) });
        return toRows(who, got.variants);
      });
    });
  },
  compare: (ctx) => {
    const whos = wheres([...ctx.runtimes, "seed"], Object.values(SIZES));
    // How the cost grows from 4 KiB to 1 GiB, over how libc's grows.
    const growth = RATIOS.map((l) =>
      l.replace(/^us/, "1GiB/4KiB").replace(
        ": time / libc's",
        ": 1 GiB / 4 KiB cost ratio over libc's",
      )
    );
    return [
      ...ratios(RATIOS, whos),
      ...ratios(OVER_CALL, wheres(ctx.runtimes, Object.values(SIZES))),
      ...ratios(growth, wheres([...ctx.runtimes, "seed"])),
    ];
  },
  children: { attach: (ids: Ids) => attachChild(ids) },
};
