/**
 * The seed package's README example, across runtimes: a parent fills a keyed segment with 1/i,
 * then a Deno, a Bun and a Node.js child attach to the same segment and print what they see, and,
 * when it is installed (`make` puts it in .tools/, one build per Node version), so does the seed
 * package itself in Node.
 *
 *     make demo
 *     # or: deno run --allow-ffi --allow-read --allow-env --allow-run examples/seed_demo.ts
 *
 * Runs under any of the runtimes as the parent (`bun examples/seed_demo.ts`, or
 * `node dist/examples/seed_demo.js` after `make`).
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import process from "node:process";

import { childCommands, library, runtime } from "./runtimes.ts";

const seedPackage = process.argv.includes("--seed") ? process.env.SEED_PACKAGE : undefined;
const { createSharedBuffer, detachSharedBuffer, SharedMemory }: typeof import("../mod.ts") =
  seedPackage
    ? createRequire(import.meta.url)(seedPackage) // the seed itself
    : await library();

const SEGMENT_ELEMENTS = 10;
const SEGMENT_SIZE = SEGMENT_ELEMENTS * Float64Array.BYTES_PER_ELEMENT + 8; // + a check-in counter
const who = seedPackage
  ? `the seed package in node ${process.versions.node}`
  : `${runtime} ${process.versions[runtime]}`;

if (process.argv.includes("--child")) {
  const key = Number(process.argv[process.argv.length - 1]);
  const sharedBuffer = createSharedBuffer(key, SEGMENT_SIZE);
  const sharedArray = new Float64Array(sharedBuffer, 0, SEGMENT_ELEMENTS);
  console.log(`  ${who} (pid ${process.pid}) saw: [${sharedArray.join(", ")}]`);
  Atomics.add(new Int32Array(sharedBuffer, SEGMENT_ELEMENTS * 8, 1), 0, 1);
  detachSharedBuffer(sharedBuffer); // optional: garbage collection would unmap it too
} else {
  const key = 0x5eed_0000 + (process.pid & 0xffff);
  const sharedBuffer = createSharedBuffer(key, SEGMENT_SIZE, true);
  try {
    const sharedArray = new Float64Array(sharedBuffer, 0, SEGMENT_ELEMENTS);
    for (let i = 0; i < SEGMENT_ELEMENTS; i++) sharedArray[i] = 1 / i;
    console.log(
      `${who} (pid ${process.pid}) wrote 1/i into keyed segment 0x${key.toString(16)}`,
    );
    const children = childCommands(import.meta.url);
    const [node, [built]] = children[2];
    // The seed addon runs in the Node it was built for.
    const seed = process.env.SEED_PACKAGE;
    if (seed && existsSync(`${seed}/build/Release/shared-buffer.node`)) {
      children.push([process.env.SEED_NODE ?? node, [built, "--seed"]]);
    }
    for (const [bin, args] of children) {
      const child = spawnSync(bin, [...args, "--child", String(key)], { stdio: "inherit" });
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
