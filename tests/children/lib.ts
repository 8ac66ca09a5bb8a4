/**
 * What child scripts import: the library for whichever runtime runs them.
 *
 * @module
 */

export const runtime: "deno" | "bun" = "Bun" in globalThis ? "bun" : "deno";
const entry = runtime === "bun" ? "../../bun.ts" : "../../mod.ts";
/** The library as this runtime's users import it. */
export const lib: typeof import("../../mod.ts") = await import(entry);

/** The script's arguments. */
export const args: string[] = runtime === "bun"
  ? (globalThis as unknown as { process: { argv: string[] } }).process.argv.slice(2)
  : Deno.args;

/** Prints one line to stdout. */
export function say(line: string): void {
  console.log(line);
}
