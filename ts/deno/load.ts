/**
 * How `mod.ts` loads its adapter: the library found as a Deno program finds it (an explicit path,
 * `SHARED_BUFFER_LIB`, the platform package by module resolution, or a clone's or the package's
 * own build), asking for no permission it was not given.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { platformPackageName, wrongEntry } from "../library.ts";
import { denoBackend, denoSources } from "./backend.ts";

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

/** Opens the native library and returns the Deno backend. */
export function loadDeno(explicit?: string): Backend {
  if (!("Deno" in globalThis)) throw wrongEntry("mod.ts");
  return denoBackend({
    ...denoSources(explicit),
    resolvePackage: (platform, file) => resolvePackage(platformPackageName(platform), file),
    root: cloneRoot(),
    bundle: bundleFile(),
  });
}
