/**
 * shared-buffer for Node.js 20 and newer: cross-process shared memory as zero-copy
 * ArrayBuffers. Node runs the JavaScript that `make` builds from this file: `dist/node.js`
 * (`import`) and `dist/node.cjs` (`require`), with types in `dist/node.d.ts`.
 *
 * No flags are needed (under `--permission`: `--allow-addons`, and `--allow-fs-read` for the
 * package's folder).
 *
 * @example
 * ```ts
 * // From a clone: "./dist/node.js" after `make` (Node.js 22.18 and newer also take "./node.ts").
 * import { SharedMemory } from "./dist/node.js";
 * const shm = SharedMemory.openOrCreate({ name: "/jobs" }, 4096);
 * Atomics.add(new Int32Array(shm.buffer), 0, 1);
 * shm.close();
 * ```
 *
 * @module
 */

/// <reference lib="esnext.disposable" preserve="true" />

import { installBackend } from "./ts/backend.ts";
import { loadNode } from "./ts/node/backend.ts";

installBackend(loadNode);

import * as api from "./ts/api.ts";

export * from "./ts/api.ts";
/**
 * Every export above as one object, for programs written for the seed's CommonJS module, which
 * import it whole: `import sharedBuffer from "shared-buffer-ipc"`, then
 * `sharedBuffer.createSharedBuffer(key, size)`.
 */
export default api;
