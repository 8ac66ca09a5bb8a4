/**
 * The seed package itself and this library, in separate processes, on one keyed segment: the
 * seed addon (in the Node.js it was built for) creates a segment that this process opens, and
 * this process creates one that the seed addon opens. Runs in every runtime, so a Node, a Deno
 * and a Bun process each meet the real seed.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  cleanup,
  lib,
  runtime,
  seedCommand,
  seedPackage,
  start,
  testUnless,
  uniqueKey,
} from "./harness.ts";

const { createSharedBuffer, detachSharedBuffer, SharedMemory } = lib;
const ELEMENTS = 10;
const missing = seedPackage === undefined && "the seed package is not installed (run make)";

/** Runs the seed addon and returns the values it printed. */
async function seed(mode: "create" | "read", key: number): Promise<string[]> {
  const r = await start(seedCommand([mode, String(key), String(ELEMENTS)])).done;
  if (r.code !== 0) {
    throw new Error(`seed addon ${mode} exited with ${r.code ?? r.signal}:\n${r.stderr}`);
  }
  const line = r.stdout.split("\n").find((l) => l.startsWith("values "));
  if (line === undefined) throw new Error(`the seed addon printed no values:\n${r.stdout}`);
  return JSON.parse(line.slice("values ".length));
}

const oneOverI = Array.from({ length: ELEMENTS }, (_, i) => String(1 / i));

testUnless(
  missing,
  `a segment the seed addon created opens in this ${runtime} process, and the seed sees what this process wrote`,
  async () => {
    const key = uniqueKey();
    try {
      assert.deepEqual(await seed("create", key), oneOverI);
      const buffer = createSharedBuffer(key, ELEMENTS * 8);
      const values = new Float64Array(buffer);
      assert.deepEqual(Array.from(values, String), oneOverI);
      values[0] = -1;
      values[9] = 42.5;
      detachSharedBuffer(buffer);
      using shm = SharedMemory.open({ key });
      assert.equal(shm.byteLength, ELEMENTS * 8);
      assert.equal(shm.created, false);
      const seen = await seed("read", key);
      assert.deepEqual(seen, ["-1", ...oneOverI.slice(1, 9), "42.5"]);
    } finally {
      cleanup({ key });
    }
  },
);

testUnless(
  missing,
  `a segment this ${runtime} process created opens in the seed addon, with the same bytes`,
  async () => {
    const key = uniqueKey();
    try {
      const buffer = createSharedBuffer(key, ELEMENTS * 8, true);
      const values = new Float64Array(buffer);
      for (let i = 0; i < ELEMENTS; i++) values[i] = i * 1.5;
      assert.deepEqual(await seed("read", key), Array.from(values, String));
      // The seed attaches without initializing, so nothing it did changed the data.
      assert.equal(values[3], 4.5);
      detachSharedBuffer(buffer);
    } finally {
      cleanup({ key });
    }
  },
);
