/**
 * How `mod.ts` loads its adapter: the library found as a Deno program finds it (an explicit path,
 * `SHARED_BUFFER_LIB`, the platform package by module resolution, or a clone's or the package's
 * own build), asking for no permission it was not given.
 *
 * @module
 */

import * as fs from "node:fs";
import type { Backend } from "../backend.ts";
import {
  fileHead,
  LIBRARY_ENV,
  type Platform,
  platformPackageName,
  wrongEntry,
} from "../library.ts";
import { denoBackend } from "./backend.ts";

/** An environment variable, or undefined where it may not be read without a prompt. */
function readEnv(name: string): string | undefined {
  return envReadable(name) ? Deno.env.get(name) : undefined;
}

/** Whether `name` may be read without a prompt (`--allow-env` for it). */
function envReadable(name: string): boolean {
  try {
    return Deno.permissions.querySync({ name: "env", variable: name }).state === "granted";
  } catch {
    return false;
  }
}

/**
 * The folder of a clone or of the installed package, when this file runs from its sources or
 * from the package's own bundle (`dist/deno.js`, which `import "shared-buffer-ipc"` resolves to,
 * in a clone too): not from a user's bundle, nor over https. Its builds are looked for there, as
 * the Node.js and Bun entries look in theirs.
 */
function cloneRoot(): string | undefined {
  const here = new URL(import.meta.url);
  if (here.protocol !== "file:") return undefined;
  const up = here.pathname.endsWith("/ts/deno/load.ts")
    ? "../../"
    : here.pathname.endsWith("/dist/deno.js")
    ? "../"
    : undefined;
  return up === undefined
    ? undefined
    : decodeURIComponent(new URL(up, here).pathname).replace(/\/$/, "");
}

/**
 * The file of a user's bundle (`deno bundle`) this code runs inside, for the error: neither the
 * sources nor the package's own bundle of them (`dist/deno.js`).
 */
function bundleFile(): string | undefined {
  const here = new URL(import.meta.url);
  if (here.protocol !== "file:") return undefined;
  const path = decodeURIComponent(here.pathname);
  return path.endsWith("/ts/deno/load.ts") || path.endsWith("/dist/deno.js") ? undefined : path;
}

/** The path of an installed platform package's library, by module resolution from here. */
function resolvePackage(name: string, file: string): string | undefined {
  // Through a reference, since the specifier is computed: JSR's analyzer warns about a direct
  // `import.meta.resolve` call it cannot follow, and this one is meant to fail when absent.
  const meta = import.meta;
  const url = new URL(meta.resolve(`${name}/${file}`));
  return url.protocol === "file:" ? decodeURIComponent(url.pathname) : undefined;
}

function thisPlatform(): Platform {
  const { os, arch, target } = Deno.build;
  return {
    os,
    arch,
    libc: os === "linux" ? (target.endsWith("musl") ? "musl" : "gnu") : undefined,
  };
}

/** Opens the native library and returns the Deno backend. */
export function loadDeno(explicit?: string): Backend {
  if (!("Deno" in globalThis)) throw wrongEntry("mod.ts");
  return denoBackend({
    explicit,
    fromEnv: readEnv(LIBRARY_ENV),
    envUnreadable: !envReadable(LIBRARY_ENV),
    // Only with --allow-read for it: a look without would prompt in a terminal.
    readHead: (path) =>
      Deno.permissions.querySync({ name: "read", path }).state === "granted"
        ? fileHead(fs, path)
        : undefined,
    platform: thisPlatform(),
    resolvePackage: (platform, file) => resolvePackage(platformPackageName(platform), file),
    root: cloneRoot(),
    bundle: bundleFile(),
  });
}
