/**
 * Writes twins of the declarations tsc writes for Node.js (`dist/node.d.ts` and every declaration
 * file it reaches), for the consumers that cannot read them as they are. Each twin imports twins.
 *
 * - `.d.cts`, for `require`. The package is `"type": "module"`, so TypeScript reads the `.d.ts`
 *   as ES modules, and a CommonJS file that `require`s the package (`.cts`, or `.ts` in a
 *   CommonJS project) was refused under `module: node16`, as under `nodenext` before TypeScript
 *   5.8 (TS1479). A twin that re-exports the ES declarations is refused the same way: each file
 *   needs one.
 * - `.d.mts`, for Deno (the `deno` condition). tsc keeps the sources' `.ts` in relative imports,
 *   which TypeScript maps to the `.d.ts` and Deno does not (TS2307: a program importing the
 *   package from npm failed its type check); with `.js`, Deno reads the JavaScript instead. The
 *   twins import each other by their own file names, which Deno takes and TypeScript refuses.
 *
 * Usage: `deno run --allow-read=dist --allow-write=dist packaging/declarations.ts` (`make` runs
 * it after tsc).
 *
 * @module
 */

import { dirname, join } from "node:path";
import { readFileSync, writeFileSync } from "node:fs";

/** A relative module specifier in a statement, as tsc writes them in declarations (`"./x.ts"`). */
const RELATIVE = /(\bfrom\s+|^\s*import\s+)"(\.{1,2}\/[^"]+)\.(ts|js)"/;

/** Whether a line of a declaration file is inside a comment (tsc starts those lines so). */
const inComment = (line: string) => /^\s*(\*|\/\*|\/\/)/.test(line);

/** `text` with each relative specifier outside comments ending in `ext`; `found` sees each. */
function rewrite(text: string, ext: string, found: (path: string) => void = () => {}): string {
  return text.split("\n").map((line) =>
    inComment(line) ? line : line.replace(RELATIVE, (_all, lead: string, path: string) => {
      found(path);
      return `${lead}"${path}${ext}"`;
    })
  ).join("\n");
}

const seen = new Set<string>();
const pending = ["dist/node.d.ts"];
while (pending.length > 0) {
  const file = pending.pop()!;
  if (seen.has(file)) continue;
  seen.add(file);
  const text = readFileSync(file, "utf8");
  const twin = (ext: string) => file.replace(/\.d\.ts$/, ext);
  writeFileSync(
    twin(".d.cts"),
    rewrite(text, ".cts", (path) => pending.push(join(dirname(file), `${path}.d.ts`))),
  );
  writeFileSync(twin(".d.mts"), rewrite(text, ".d.mts"));
}
