/**
 * What the examples share: which runtime runs them, the library for it, and how to start a child
 * of each runtime. Deno and Bun run an example's TypeScript; Node.js runs the JavaScript that
 * `make` builds from it into `dist/examples/`.
 *
 * @module
 */

import process from "node:process";
import { fileURLToPath } from "node:url";

/** The runtime running this file. */
export const runtime: "deno" | "bun" | "node" = "Bun" in globalThis
  ? "bun"
  : "Deno" in globalThis
  ? "deno"
  : "node";

/** The library as this runtime's users import it. */
export function library(): Promise<typeof import("../mod.ts")> {
  return import({ bun: "../bun.ts", deno: "../mod.ts", node: "../node.ts" }[runtime]);
}

/**
 * The executable and arguments that run the example at `url` (its `import.meta.url`) in Deno, in
 * Bun and in Node.js, in that order (from DENO_BIN, BUN_BIN, NODE_BIN, else the PATH).
 */
export function childCommands(url: string): [string, string[]][] {
  const self = fileURLToPath(url);
  const source = self.replace(/\/dist\/(examples\/[^/]+)\.js$/, "/$1.ts");
  const built = source.replace(/\/(examples\/[^/]+)\.ts$/, "/dist/$1.js");
  return [
    [process.env.DENO_BIN ?? "deno", ["run", "--allow-ffi", "--allow-read", "--allow-env", source]],
    [process.env.BUN_BIN ?? "bun", [source]],
    [process.env.NODE_BIN ?? "node", [built]],
  ];
}
