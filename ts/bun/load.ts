/**
 * How `bun.ts` loads its adapter: `bun:ffi`, and the library found as a Bun program finds it (a
 * clone's build, the platform package, or what `bun build --compile` embedded).
 *
 * @module
 */

import * as ffi from "bun:ffi";
import * as fs from "node:fs";
import process from "node:process";
import type { Backend } from "../backend.ts";
import {
  fileHead,
  LIBRARY_ENV,
  type ProcessLike,
  processPlatform,
  wrongEntry,
} from "../library.ts";
import { bunBackend, type BunFfi } from "./backend.ts";
import { PLATFORM_LIBRARIES } from "./platforms.ts";

/** Opens the native library and returns the Bun backend. */
export function loadBun(explicit?: string): Backend {
  if (!("Bun" in globalThis)) throw wrongEntry("bun.ts");
  // A clone's or the package's own sources; elsewhere a user's bundle or compiled program.
  const sources = import.meta.dir.endsWith("/ts/bun");
  return bunBackend(ffi as unknown as BunFfi, {
    explicit,
    fromEnv: process.env[LIBRARY_ENV],
    platform: processPlatform(process as ProcessLike),
    readHead: (path) => fileHead(fs, path),
    resolvePackage: (platform) => PLATFORM_LIBRARIES[platform](),
    root: sources ? import.meta.dir.slice(0, -"/ts/bun".length) : undefined,
    bundle: sources ? undefined : import.meta.path,
    compileEmbeds: true,
  });
}
