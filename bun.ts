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
import { loadBun } from "./ts/bun/load.ts";

installBackend(loadBun);

import * as api from "./ts/api.ts";

export * from "./ts/api.ts";
/**
 * Every export above as one object, for programs written for the seed's CommonJS module, which
 * import it whole: `import sharedBuffer from "shared-buffer-ipc"`, then
 * `sharedBuffer.createSharedBuffer(key, size)`.
 */
export default api;
