/**
 * The Node.js adapter. Node 20 has no FFI, so every call goes through the library's Node-API
 * module (the same library file, loaded with `process.dlopen`): besides the engine-owned buffers
 * that Deno and Bun also take from it, the module exports one JavaScript function per call of
 * the flat C ABI (`crates/native/src/napi/calls.rs`), each calling the same native code.
 *
 * `waitAsync` parks the wait on the native library's own thread pool and resolves its Promise
 * through a Node-API thread-safe function, so a pending wait never blocks the event loop nor
 * occupies one of the four threads Node keeps for file I/O and DNS.
 *
 * Buffers are Node-API external ArrayBuffers: each owns one reference to its mapping, released by
 * the engine when the buffer's memory is freed. Node never moves them unsafely (measured: Node 20
 * copies them for `postMessage` and `structuredClone` even when listed for transfer; Node 21 and
 * newer refuse that with a `DataCloneError`, while `transfer()` and byte streams move the memory
 * and the reference with it). See `docs/node.md`, which also says why `markAsUntransferable` must
 * not be used on them.
 *
 * @module
 */

import process from "node:process";
import { constants as bufferConstants } from "node:buffer";
import * as fs from "node:fs";
// A namespace, not `createRequire` by name: webpack rewrites a named call whose argument it
// cannot compute into `undefined`.
import * as nodeModule from "node:module";
import { isAbsolute, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isMainThread } from "node:worker_threads";
import { type Backend, channelStates, settleHandles } from "../backend.ts";
import {
  fileHead,
  LIBRARY_ENV,
  type LibrarySources,
  loadNativeLibrary,
  platformPackageName,
  type ProcessLike,
  processPlatform,
} from "../library.ts";
import { bufferByteLength, canTransfer, detachBuffer } from "../intrinsics.ts";
import { loadNodeApi, type NodeApiModule, noteMainThread } from "../napi.ts";
import { bunBackend, type BunFfi } from "../bun/backend.ts";
import { denoBackend, denoSources } from "../deno/backend.ts";

/**
 * What the Node-API module exports for Node.js on top of {@linkcode NodeApiModule}: each is the
 * `sb_*` function of the same name (see `ts/ffi.ts`), taking what the {@linkcode Backend} call of
 * that name takes (addresses as numbers or BigInts), except as noted.
 */
export interface NodeCalls extends
  NodeApiModule,
  Pick<
    Backend,
    | "openKey"
    | "openName"
    | "userName"
    | "dup"
    | "close"
    | "handleCount"
    | "errorName"
    | "errorMessage"
    | "wait"
    | "cancelWaits"
    | "notify"
    | "mutexInit"
    | "mutexOpen"
    | "mutexHeldIn"
    | "mutexLock"
    | "mutexTryLock"
    | "mutexUnlock"
    | "errno"
  > {
  /** `sb_mutex_size()`. */
  mutexSize(): number;
  /** `sb_process_alive(pid)`: 1 alive, 0 dead, or a negative code. */
  processAlive(pid: number): number;
  /** `sb_pid_namespace()`, as an int32 bit for bit. */
  pidNamespace(): number;
  /** Detaches a buffer (Node 20 has no `ArrayBuffer.prototype.transfer`). */
  detach(buffer: ArrayBuffer): void;
  /** `sb_channel_scan_run`, its lengths bounded by the arrays' own. */
  channelScanRun(
    region: number,
    state: Int32Array,
    out: Uint8Array,
    lens: Int32Array,
    max: number,
    small: number,
  ): number;
  /** `sb_channel_commit_run`, its count bounded by the array's own length. */
  channelCommitRun(
    region: number,
    state: Int32Array,
    idx: number,
    lens: Int32Array,
    count: number,
  ): number;
}

/** Whether this Node.js build runs in Deno (for `require`, an import by path, a bundle). */
const deno = "Deno" in globalThis;

/**
 * This module's URL, or undefined inside a user's CommonJS bundle of the ES module build (what
 * esbuild makes of `import` with `--bundle --platform=node` by default): `import.meta` is an
 * empty object there.
 */
const moduleUrl: string | undefined = typeof import.meta.url === "string"
  ? import.meta.url
  : undefined;

/**
 * Whether this module is the package's own file (looked at when the library is first loaded):
 * built JavaScript, `dist/ts/node/backend.js`
 * (the CommonJS bundle `dist/node.cjs` is given that `import.meta.url` by the build), or a
 * clone's TypeScript source, `ts/node/backend.ts` (`node.ts` imported where Node.js strips
 * types), which is there. Otherwise it runs inside a user's bundle, whose `import.meta.url` is
 * the bundle's own (esbuild's ES modules), missing (its CommonJS), the file on the machine that
 * built it (webpack), or, for a bundle of `dist/node.cjs`, a file beside the bundle that is not
 * there. Deno, which runs the CommonJS build for `require`, is not asked to look (it would ask
 * for --allow-read).
 */
function isOwnFile(): boolean {
  return moduleUrl !== undefined &&
    (moduleUrl.endsWith("/dist/ts/node/backend.js") ||
      moduleUrl.endsWith("/ts/node/backend.ts")) &&
    (deno || existsHere(moduleUrl));
}

/** Whether the file at a `file:` URL exists. */
function existsHere(url: string): boolean {
  try {
    return url.startsWith("file:") && fs.existsSync(fileURLToPath(url));
  } catch {
    return false;
  }
}

/**
 * The package's folder, where a clone's `target/` is: three folders up from the built
 * JavaScript, two from the source. Undefined inside a user's bundle, which is no file of a
 * clone (a bundle looks for no local build in the folders above it).
 */
function packageRoot(ownFile: boolean): string | undefined {
  if (!ownFile) return undefined;
  const up = moduleUrl!.endsWith("/ts/node/backend.ts") ? "../../" : "../../../";
  return fileURLToPath(new URL(up, moduleUrl)).replace(/\/$/, "");
}

/**
 * The script Node.js was started with (a user's bundle, usually, when this code is inside one),
 * by its real path, as Node.js resolves from it; a file in the working folder when there is none.
 */
function mainScript(): string {
  const script = process.argv[1];
  if (typeof script !== "string" || !isAbsolute(script)) return join(process.cwd(), "noop.js");
  // Not in Deno, where the look could prompt for --allow-read in a terminal.
  if (deno) return script;
  try {
    return fs.realpathSync(script);
  } catch {
    return script;
  }
}

/**
 * Where module resolution starts for the platform packages, in turn: this module, which finds
 * the `node_modules` it is installed in; then the main script, which finds the `node_modules`
 * beside or above a bundle, as the bundle's own `require` would (a bundler may have kept the
 * path of the machine that built it in `import.meta.url`). A bundle loaded by another main
 * script (a test runner's) resolves from that script's place: give the library's path in
 * `SHARED_BUFFER_LIB` there.
 */
function resolveOrigins(): string[] {
  const main = mainScript();
  return moduleUrl === undefined || moduleUrl === pathToFileURL(main).href
    ? [main]
    : [moduleUrl, main];
}

/**
 * The file of a user's bundle this code runs inside, for the error: its own URL when that is
 * a file that is there, else the main script; `""` when neither is known; undefined when not
 * bundled.
 */
function bundleFile(ownFile: boolean): string | undefined {
  if (ownFile) return undefined;
  // Deno is not asked to look (it would ask for --allow-read in a terminal): a `file:` URL it
  // takes as it is.
  if (
    moduleUrl !== undefined &&
    (deno ? moduleUrl.startsWith("file:") : existsHere(moduleUrl))
  ) {
    return fileURLToPath(moduleUrl);
  }
  const script = process.argv[1];
  return typeof script === "string" && isAbsolute(script) ? script : "";
}

/** The path of `id` as `require` would find it from the first origin that has it. */
function resolveFirst(origins: string[], id: string): string {
  let failure: unknown;
  for (const origin of origins) {
    try {
      return nodeModule.createRequire(origin).resolve(id);
    } catch (err) {
      failure = err;
    }
  }
  throw failure;
}

const decoder = new TextDecoder();

/**
 * Where this build looks for the library, as Node.js would find it: the platform package by
 * Node's module resolution, and the package's own folder. In Deno, what Deno tells of the rest
 * (its permissions decide what may be read without a prompt).
 */
function librarySources(explicit: string | undefined): LibrarySources {
  let origins: string[] | undefined;
  const ownFile = isOwnFile();
  return {
    ...(deno ? denoSources(explicit) : {
      explicit,
      fromEnv: process.env[LIBRARY_ENV],
      readHead: (path: string) => fileHead(fs, path),
      platform: processPlatform(process as ProcessLike),
    }),
    resolvePackage: (platform, file) =>
      resolveFirst(origins ??= resolveOrigins(), `${platformPackageName(platform)}/${file}`),
    root: packageRoot(ownFile),
    bundle: bundleFile(ownFile),
  };
}

/**
 * Opens the native library and returns the backend: in Deno and Bun, their own (`Deno.dlopen`, as
 * `mod.ts` has it, and `bun:ffi`, as `bun.ts`), found as Node.js finds it; in Node.js, the Node.js
 * one, through Node-API.
 *
 * Deno runs this entry for a program that `require`s the package, Deno and Bun when a program
 * imports it by path or runs a bundle made for Node.js. Their Node-API buffers and objects do not
 * behave as Node's: Bun runs the finalizer of a buffer when it collects the object, though
 * `transfer()` or a byte stream moved its memory to another buffer, which may have gone to another
 * thread (a `SIGSEGV` there once the mapping went); Bun never runs the finalizers of what a Worker
 * dropped, nor Deno those of objects at a Worker's end, which kept those mappings until the process
 * exited. Their own adapters, whose buffers carry their mapping's release with their memory and
 * release it during the collection, are also the faster (docs/node.md).
 */
export function loadNode(explicit?: string): Backend {
  if (deno) return denoBackend(librarySources(explicit));
  if (process.versions.bun !== undefined) {
    // Sync, and not a static import, which Node.js would refuse (it has no `bun:` modules); a
    // bundler leaves the `require` that `createRequire` made alone.
    const ffi = nodeModule.createRequire(process.execPath)("bun:ffi") as BunFfi;
    return bunBackend(ffi, { ...librarySources(explicit), compileEmbeds: false });
  }
  const { lib: n, path } = loadNativeLibrary<NodeCalls>(
    librarySources(explicit),
    (path) => loadNodeApi(path, process.dlopen) as NodeCalls,
    (m) => m.abiVersion,
    // Node cannot unload an addon; one that loaded with the right version is kept.
    () => {},
  );
  // The relief closes the handles of what its collection collected through these references.
  n.trackAll();
  if (isMainThread) noteMainThread(n, true);
  else {
    // A Worker's end finalizes every buffer made in it, also one whose memory moved
    // (`transfer()`, a byte stream) to a buffer that then went to another thread: its mapping
    // must stay. Native code looks at the start of the teardown, which `worker.terminate()`
    // reaches too without running JavaScript (docs/node.md).
    n.keepMovedAtEnd();
  }
  return {
    runtimeName: `Node.js ${process.versions.node}`,
    mainThread: isMainThread,
    // Node.js's limit for one external buffer: 4 GiB in Node.js 20, whose Node-API makes it as a
    // `Buffer` (a longer one was refused there, and the refusal used to abort the process).
    maxBufferBytes: bufferConstants.MAX_LENGTH,
    mappingLimit: mappingLimit(),
    libraryPath: path,
    openKey: n.openKey,
    openName: n.openName,
    userName: n.userName,
    unlinkKey: n.unlinkKey,
    unlinkName: (name) => n.unlinkName(decoder.decode(name)),
    unlinkKeyOwn: n.unlinkKeyOwn,
    claimEndpoint: n.claimEndpoint,
    unclaimEndpoint: n.unclaimEndpoint,
    unlinkNameOwn: (name, identity) => n.unlinkNameOwn(decoder.decode(name), identity),
    dup: n.dup,
    close: n.close,
    handleCount: n.handleCount,
    errorName: n.errorName,
    errorMessage: n.errorMessage,
    // Addresses below 2^53 are exact as numbers, which Node-API converts faster than a BigInt.
    address: (address) => Number(address),
    channelCalls(region) {
      // A Node-API call costs more than a receive or a send of the TypeScript path (see
      // `bench/README.md`), but less than what one replaces in a run of messages: the look at
      // each message received, or the commit of each record sent.
      const [takeState, putState] = channelStates();
      return {
        scanRun: (out, lens, max, small) =>
          n.channelScanRun(region as number, takeState, out, lens, max, small),
        commitRun: (idx, lens, count) =>
          n.channelCommitRun(region as number, putState, idx, lens, count),
        // Only for runs that pay for the call: a Node-API call with two typed arrays costs about
        // what 10-15 of Node's commit stores do (the hotpath scenario's `batch_of_B` parts, and
        // how the thresholds were chosen: `bench/README.md`).
        commitRunMin: 16,
        scanRunMin: 1024,
        takeState,
        putState,
      };
    },
    wait: n.wait,
    waitAsync: n.waitAsync,
    cancelWaits: n.cancelWaits,
    notify: n.notify,
    mutexInit: n.mutexInit,
    mutexOpen: n.mutexOpen,
    mutexHeldIn: n.mutexHeldIn,
    mutexLock: n.mutexLock,
    mutexTryLock: n.mutexTryLock,
    mutexUnlock: n.mutexUnlock,
    mutexSize: n.mutexSize(),
    errno: n.errno,
    processAlive: (pid) => n.processAlive(pid) === 1,
    pidNamespace: n.pidNamespace() >>> 0,
    wrap: (address, length, handle, group) => n.wrap(handle, address, length, group),
    takeViews: (group) => n.takeViews(group),
    weak: {
      ref: (target) => n.weakRef(target),
      deref: (id) => n.derefWeak(id),
      drop: (id) => n.dropWeak(id),
    },
    // Node runs a buffer's finalizer on a later turn of the event loop, as it does one on an
    // object: the SharedMemory itself owns its handle, at a third of a buffer's cost.
    anchor(owner, _address, handle) {
      n.addFinalizer(owner, handle);
      return undefined;
    },
    unwrap(buffer, handle) {
      // Moved or detached: its finalizer owns the handle. Still here: detach it (the engine then
      // frees its memory, and the finalizer finds the handle closed) and drop its reference now,
      // keeping the mapping's addresses until the buffer is collected (`retire`): Node's thread
      // pool writes through a pointer it took before the detach (SIGSEGV once unmapped).
      // The engine's own accessors and transfer (see ../intrinsics.ts): closing the handle of
      // a buffer that a `transfer` defined on it left attached unmapped memory it still reached.
      if (bufferByteLength(buffer) === 0) return;
      if (canTransfer) {
        // Refused: marked untransferable by its user (a V8 detach key, Node 21+), it cannot be
        // detached nor moved, so it keeps its reference until it is collected.
        if (!detachBuffer(buffer)) return;
      } else {
        n.detach(buffer); // Node 20
        if (bufferByteLength(buffer) !== 0) return;
      }
      n.retire(buffer, handle);
    },
    // The finalizer closes only the handle it was given, by serial number.
    dropAnchor: (_anchor, handle) => n.close(handle),
    relieve() {
      const before = n.handleCount();
      n.forgetDetached();
      n.relieve();
      return settleHandles(() => n.handleCount(), before);
    },
  };
}

/**
 * How many mappings a process may have (`vm.max_map_count` on Linux); the kernel's default where
 * it cannot be read (another system, or a permission model without read access to `/proc`).
 */
function mappingLimit(): number {
  try {
    const limit = Number(fs.readFileSync("/proc/sys/vm/max_map_count", "latin1"));
    if (Number.isSafeInteger(limit) && limit > 0) return limit;
  } catch {
    // The default below.
  }
  return 65530;
}
