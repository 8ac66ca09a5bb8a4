/**
 * Loads the native library through the package entry point `<entry>` (`mod.ts` or `bun.ts` of a
 * copy of the package, or of this one), with `loadLibrary(<explicit>)` when an explicit path is
 * given, and prints `result {"path": ...}` or `result {"error": message}`. The search order it
 * exercises reads `SHARED_BUFFER_LIB` from the environment the parent passes.
 *
 * Usage: `library/load.ts <entry> [explicit]`
 *
 * @module
 */

const argv: string[] = (globalThis as unknown as { process: { argv: string[] } }).process.argv
  .slice(2);
const [entry, explicit] = argv;
const lib: typeof import("../../../mod.ts") = await import(entry);
try {
  console.log(`result ${JSON.stringify({ path: lib.loadLibrary(explicit) })}`);
} catch (err) {
  console.log(`result ${JSON.stringify({ error: (err as Error).message })}`);
}
