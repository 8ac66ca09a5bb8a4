/**
 * The seed package itself (npm `shared-buffer`, a node-gyp addon), run by the Node.js it was
 * built for: `create` makes keyed segment `key` with `createSharedBuffer(key, size, true)` and
 * fills its Float64 elements with `1 / i`; `read` attaches with `createSharedBuffer(key, size)`.
 * Both print what they then see as `values <JSON array of String(value)>`.
 *
 * Usage: `seed/addon.js create|read <key> <elements>`, with `SEED_PACKAGE` the package's folder.
 *
 * @module
 */

import { createRequire } from "node:module";
import process from "node:process";

const [mode, key, elements] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const folder = process.env.SEED_PACKAGE;
if (!folder) throw new Error("SEED_PACKAGE is not set");
const seed = createRequire(import.meta.url)(folder) as {
  createSharedBuffer(key: number, size: number, initialize?: boolean): ArrayBufferLike;
  detachSharedBuffer(buffer: ArrayBufferLike): void;
};
const buffer = seed.createSharedBuffer(key, elements * 8, mode === "create");
const values = new Float64Array(buffer);
if (mode === "create") { for (let i = 0; i < elements; i++) values[i] = 1 / i; }
console.log(`values ${JSON.stringify(Array.from(values, String))}`);
seed.detachSharedBuffer(buffer);
