/**
 * shared-buffer for Deno: cross-process shared memory as zero-copy ArrayBuffers.
 *
 * Needs `--allow-ffi` (and `--allow-env=SHARED_BUFFER_LIB` to honour that variable).
 *
 * @example
 * ```ts
 * import { SharedMemory } from "./mod.ts";
 * using shm = SharedMemory.openOrCreate({ name: "/jobs" }, 4096);
 * Atomics.add(new Int32Array(shm.buffer), 0, 1);
 * ```
 *
 * @module
 */

import { installBackend } from "./ts/backend.ts";
import { loadDeno } from "./ts/deno/load.ts";

installBackend(loadDeno);

import * as api from "./ts/api.ts";

export * from "./ts/api.ts";
/**
 * Every export above as one object, for programs written for the seed's CommonJS module, which
 * import it whole: `import sharedBuffer from "shared-buffer-ipc"`, then
 * `sharedBuffer.createSharedBuffer(key, size)`.
 */
export default api;
