/**
 * A clone anywhere: `make demo`'s examples and the Makefile itself from a folder whose path has a
 * space in it (make splits such a path into several targets; a script's URL path spells the space
 * `%20`). The clone is copied, its library included, into such a folder.
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { childrenTest, repoRoot, runtimeBin, runtimes } from "./harness.ts";

/** What the examples and the Makefile read, copied into `<tmp>/a clone/`. */
const COPIED = [
  "Makefile",
  "Cargo.toml",
  "Cargo.lock",
  "crates",
  "package.json",
  "deno.json",
  "tsconfig.node.json",
  "mod.ts",
  "bun.ts",
  "node.ts",
  "ts",
  "examples",
  "dist/node.js",
  "dist/examples",
  "dist/ts",
  "target/release/libshared_buffer_native.so",
];

/** Runs `body` with a copy of the clone in a folder whose path has spaces, then removes it. */
function inSpacedCopy(body: (copy: string) => void): void {
  const tmp = mkdtempSync(join(tmpdir(), "sb clone "));
  try {
    const copy = join(tmp, "a clone");
    for (const path of COPIED) {
      mkdirSync(join(copy, path, ".."), { recursive: true });
      cpSync(join(repoRoot, path), join(copy, path), { recursive: true });
    }
    body(copy);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** This process's environment without what a parent make or a library path would pass down. */
function plainEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined || /^(MAKE|MFLAGS|SHARED_BUFFER_LIB$)/.test(name)) continue;
    env[name] = value;
  }
  return { ...env, ...extra };
}

childrenTest(runtimes, "the demo's examples run from a folder whose path has a space", () => {
  inSpacedCopy((copy) => {
    const deno = runtimeBin("deno");
    const env = plainEnv({
      DENO_BIN: deno,
      BUN_BIN: runtimeBin("bun"),
      NODE_BIN: runtimeBin("node"),
    });
    const run = (args: string[]) => {
      const r = spawnSync(deno, [
        "run",
        "--allow-ffi",
        "--allow-read",
        "--allow-env",
        "--allow-run",
        ...args,
      ], {
        cwd: copy,
        env,
        encoding: "utf8",
        timeout: 120_000,
      });
      assert.equal(
        r.status,
        0,
        `deno run ${args.join(" ")}: ${r.error ?? ""}\n${r.stdout}\n${r.stderr}`,
      );
      return r.stdout;
    };
    const seen = run(["examples/seed_demo.ts"]);
    for (const who of ["deno", "bun", "node"]) {
      assert.match(
        seen,
        new RegExp(`^  ${who} \\S+ \\(pid \\d+\\) saw: \\[Infinity, 1, 0\\.5,`, "m"),
      );
    }
    const pool = run(["examples/worker_pool.ts", "3"]);
    assert.match(
      pool,
      /^400 jobs over 3 worker processes .*: (\d+) primes below \d+ \(expected \1\)$/m,
    );
  });
});

childrenTest(runtimes, "the Makefile takes a clone whose path has a space", () => {
  inSpacedCopy((copy) => {
    // As on a fresh machine: Deno and Bun fetched into the clone's .tools/.
    const tools = join(copy, ".tools/node_modules/.bin");
    const r = spawnSync("make", ["-n", "--no-print-directory", "demo", "test"], {
      cwd: copy,
      env: plainEnv({ DENO: join(tools, "deno"), BUN: join(tools, "bun") }),
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(r.status, 0, `make -n: ${r.error ?? ""}\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /warning|more than once|not found|No rule/i);
    assert.match(
      r.stdout,
      /^npm install --prefix \.tools [^]*?\tdeno@/m,
      "Deno and Bun are fetched",
    );
    assert.ok(
      r.stdout.includes(
        `"${tools}/deno" run --allow-ffi --allow-read --allow-env --allow-run examples/seed_demo.ts`,
      ),
      `the demo runs the fetched Deno, quoted:\n${r.stdout}`,
    );
    assert.ok(r.stdout.includes(`cd tests && "${tools}/bun" test`), "the Bun suite, quoted");
  });
});
