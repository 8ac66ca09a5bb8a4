/**
 * The seed package's README example, across runtimes: a parent fills a keyed segment with 1/i,
 * then a Deno child and a Bun child attach to the same segment and print what they see.
 *
 *     make demo
 *     # or: deno run --allow-ffi --allow-read --allow-env --allow-run examples/seed_demo.ts
 *
 * Runs under either runtime as the parent (`bun examples/seed_demo.ts` works too).
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import process from "node:process";

const runtime = "Bun" in globalThis ? "bun" : "deno";
const { createSharedBuffer, detachSharedBuffer, SharedMemory }: typeof import("../mod.ts") =
  await import(runtime === "bun" ? "../bun.ts" : "../mod.ts");

const SEGMENT_ELEMENTS = 10;
const SEGMENT_SIZE = SEGMENT_ELEMENTS * Float64Array.BYTES_PER_ELEMENT + 8; // + a check-in counter
const version = runtime === "bun" ? process.versions.bun : Deno.version.deno;

if (process.argv.includes("--child")) {
  const key = Number(process.argv[process.argv.length - 1]);
  const sharedBuffer = createSharedBuffer(key, SEGMENT_SIZE);
  const sharedArray = new Float64Array(sharedBuffer, 0, SEGMENT_ELEMENTS);
  console.log(`  ${runtime} ${version} (pid ${process.pid}) saw:`, sharedArray);
  Atomics.add(new Int32Array(sharedBuffer, SEGMENT_ELEMENTS * 8, 1), 0, 1);
  detachSharedBuffer(sharedBuffer); // optional: garbage collection would unmap it too
} else {
  const key = 0x5eed_0000 + (process.pid & 0xffff);
  const sharedBuffer = createSharedBuffer(key, SEGMENT_SIZE, true);
  try {
    const sharedArray = new Float64Array(sharedBuffer, 0, SEGMENT_ELEMENTS);
    for (let i = 0; i < SEGMENT_ELEMENTS; i++) sharedArray[i] = 1 / i;
    console.log(
      `${runtime} ${version} (pid ${process.pid}) wrote 1/i into keyed segment 0x${
        key.toString(16)
      }`,
    );
    const self = new URL(import.meta.url).pathname;
    const children: [string, string[]][] = [
      [process.env.DENO_BIN ?? "deno", ["run", "--allow-ffi", "--allow-read", "--allow-env"]],
      [process.env.BUN_BIN ?? "bun", []],
    ];
    for (const [bin, flags] of children) {
      const child = spawnSync(bin, [...flags, self, "--child", String(key)], { stdio: "inherit" });
      if (child.status !== 0) {
        throw new Error(`${bin} child failed (${child.status ?? child.signal})`);
      }
    }
    const checkedIn = Atomics.load(new Int32Array(sharedBuffer, SEGMENT_ELEMENTS * 8, 1), 0);
    console.log(`${checkedIn} child processes checked in through the same memory`);
    if (checkedIn !== children.length) process.exit(1);
  } finally {
    detachSharedBuffer(sharedBuffer);
    SharedMemory.unlink({ key });
  }
}
