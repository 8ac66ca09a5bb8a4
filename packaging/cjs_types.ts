/**
 * Writes the declarations for `require`: a CommonJS twin (`.d.cts`) of `dist/node.d.ts` and of
 * every declaration file it reaches, with each relative import pointing at the twin.
 *
 * The package is `"type": "module"`, so TypeScript reads `dist/node.d.ts` as an ES module, and a
 * CommonJS file that `require`s the package (`.cts`, or `.ts` in a CommonJS project) under
 * `module: node16` was refused (TS1479), as under `nodenext` before TypeScript 5.8. A twin that
 * re-exports the ES declarations is refused the same way: each file needs one.
 *
 * Usage: `deno run --allow-read=dist --allow-write=dist packaging/cjs_types.ts` (`make` runs it).
 *
 * @module
 */

import { dirname, join } from "node:path";
import { readFileSync, writeFileSync } from "node:fs";

/** A relative module specifier in a statement, as tsc writes them in declarations (`"./x.ts"`). */
const RELATIVE = /(\bfrom\s+|^\s*import\s+)"(\.{1,2}\/[^"]+)\.(ts|js)"/;

/** Whether a line of a declaration file is inside a comment (tsc starts those lines so). */
const inComment = (line: string) => /^\s*(\*|\/\*|\/\/)/.test(line);

const seen = new Set<string>();
const pending = ["dist/node.d.ts"];
while (pending.length > 0) {
  const file = pending.pop()!;
  if (seen.has(file)) continue;
  seen.add(file);
  const twin = readFileSync(file, "utf8").split("\n").map((line) =>
    inComment(line) ? line : line.replace(RELATIVE, (_all, lead: string, path: string) => {
      pending.push(join(dirname(file), `${path}.d.ts`));
      return `${lead}"${path}.cts"`;
    })
  ).join("\n");
  writeFileSync(file.replace(/\.d\.ts$/, ".d.cts"), twin);
}
console.log(`wrote ${seen.size} .d.cts declaration files`);
