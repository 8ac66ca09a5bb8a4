/**
 * Where the native library is looked for, in a fixed order:
 *
 * 1. the path given to `loadLibrary(path)`;
 * 2. the environment variable `SHARED_BUFFER_LIB` (read only where permitted);
 * 3. next to the module: `target/release/`, then `target/debug/`, then the module's own folder.
 *
 * When every candidate fails, one error lists each path tried with its reason and names the
 * variable.
 *
 * @module
 */

import { ABI_VERSION } from "./ffi.ts";

/**
 * The environment variable that overrides where the native library is found.
 *
 * @example
 * ```sh
 * SHARED_BUFFER_LIB=/opt/lib/libshared_buffer_native.so deno run --allow-ffi --allow-env=SHARED_BUFFER_LIB main.ts
 * ```
 */
export const LIBRARY_ENV = "SHARED_BUFFER_LIB";

/** The library's file name on `os` (a `Deno.build.os` / `process.platform` value). */
export function libraryFileName(os: string): string {
  if (os === "darwin") return "libshared_buffer_native.dylib";
  if (os === "windows" || os === "win32") return "shared_buffer_native.dll";
  return "libshared_buffer_native.so";
}

/** The candidate paths, most specific first. `root` is the package's folder. */
export function libraryCandidates(
  explicit: string | undefined,
  fromEnv: string | undefined,
  root: string,
  os: string,
): string[] {
  if (explicit !== undefined) return [explicit];
  const file = libraryFileName(os);
  const found = fromEnv ? [fromEnv] : [];
  found.push(
    `${root}/target/release/${file}`,
    `${root}/target/debug/${file}`,
    `${root}/${file}`,
  );
  return found;
}

/**
 * Opens the first candidate that loads and has the right ABI version.
 *
 * @param open Opens one path; throws on failure.
 * @param version Reads the loaded library's ABI version.
 */
export function openFirst<T>(
  candidates: string[],
  open: (path: string) => T,
  version: (lib: T) => number,
  close: (lib: T) => void,
): [T, string] {
  const failures: string[] = [];
  for (const path of candidates) {
    let lib: T;
    try {
      lib = open(path);
    } catch (err) {
      failures.push(`  ${path}: ${(err as Error).message.split("\n")[0]}`);
      continue;
    }
    const found = version(lib);
    if (found === ABI_VERSION) return [lib, path];
    close(lib);
    failures.push(
      `  ${path}: ABI version ${found}, these bindings need ${ABI_VERSION} (rebuild with \`cargo build --release\`)`,
    );
  }
  throw new Error(
    `shared-buffer: could not load the native library. Tried:\n${
      failures.join("\n")
    }\nBuild it with \`cargo build --release\`, or set ${LIBRARY_ENV} to its path.`,
  );
}
