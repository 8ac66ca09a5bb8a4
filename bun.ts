/**
 * shared-buffer for Bun: cross-process shared memory as zero-copy ArrayBuffers.
 *
 * Run it with `bun`; no flags are needed.
 *
 * @example
 * ```ts
 * import { SharedMemory } from "./bun.ts";
 * using shm = SharedMemory.openOrCreate({ name: "/jobs" }, 4096);
 * Atomics.add(new Int32Array(shm.buffer), 0, 1);
 * ```
 *
 * @module
 */

import { installBackend } from "./ts/backend.ts";
import { loadBun } from "./ts/bun/backend.ts";

installBackend(loadBun);

export * from "./ts/api.ts";
