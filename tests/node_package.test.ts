/**
 * The package by name in Node.js, as users load it: `require("shared-buffer-ipc")` (the
 * CommonJS build) and `import` (the ES modules) give the same API, and a process that `require`s
 * it shares a segment with this one through the seed's two functions.
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import {
  cleanup,
  lacking,
  lib,
  repoRoot,
  runtime,
  runtimeBin,
  test,
  testUnless,
  uniqueKey,
} from "./harness.ts";
import {
  libraryFileName,
  platformPackageName,
  platformsFor,
  type ProcessLike,
  processPlatform,
} from "../ts/library.ts";
import { PACKAGE_NAME } from "../ts/version.ts";

/** Runs `code` in a Node child whose working folder is the package, and returns its stdout. */
function node(code: string, type: "commonjs" | "module"): string {
  const r = spawnSync(process.execPath, [`--input-type=${type}`, "-e", code], {
    cwd: repoRoot,
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`node exited with ${r.status ?? r.signal}:\n${r.stderr}`);
  return r.stdout.trim();
}

if (runtime === "node") {
  test("require and import of the package by name give the same API", () => {
    const required = node(
      `console.log(Object.keys(require("${PACKAGE_NAME}")).sort().join())`,
      "commonjs",
    );
    const imported = node(
      `const m = await import("${PACKAGE_NAME}"); console.log(Object.keys(m).sort().join())`,
      "module",
    );
    assert.equal(required, imported);
    assert.equal(imported, Object.keys(lib).sort().join());
  });

  test("seed programs that take the module whole (import sb from, require(...).default with esModuleInterop) share a segment", () => {
    const key = uniqueKey();
    try {
      const mine = new Uint8Array(lib.createSharedBuffer(key, 16, true));
      mine[0] = 7;
      const imported = node(
        `import sb from "${PACKAGE_NAME}";
         const bytes = new Uint8Array(sb.createSharedBuffer(${key}, 16));
         bytes[1] = bytes[0] + 1;
         sb.detachSharedBuffer(bytes.buffer);
         console.log(bytes[1] === undefined);`,
        "module",
      );
      // What TypeScript compiles `import sb from` to under CommonJS with esModuleInterop.
      const required = node(
        `const m = require("${PACKAGE_NAME}");
         const sb = m && m.__esModule ? m.default : m;
         const bytes = new Uint8Array(sb.createSharedBuffer(${key}, 16));
         bytes[2] = bytes[1] + 1;
         sb.detachSharedBuffer(bytes.buffer);
         console.log(bytes[2] === undefined);`,
        "commonjs",
      );
      assert.deepEqual([imported, required], ["true", "true"], "detached after detachSharedBuffer");
      assert.deepEqual([...mine.slice(0, 3)], [7, 8, 9]);
    } finally {
      cleanup({ key });
    }
  });

  test("a process that requires the package shares a segment through createSharedBuffer", () => {
    const key = uniqueKey();
    try {
      const mine = new Float64Array(lib.createSharedBuffer(key, 80, true));
      mine[3] = 0.25;
      const seen = node(
        `const { createSharedBuffer, detachSharedBuffer } = require("${PACKAGE_NAME}");
         const buffer = createSharedBuffer(${key}, 80);
         const values = new Float64Array(buffer);
         console.log(values[3]);
         values[4] = 42;
         detachSharedBuffer(buffer);`,
        "commonjs",
      );
      assert.equal(seen, "0.25");
      assert.equal(mine[4], 42);
    } finally {
      cleanup({ key });
    }
  });
}

if (runtime === "node") {
  test("under require, classes and stack frames carry their own names (esbuild --keep-names)", () => {
    // The CommonJS bundle renamed them `_SharedMemory`, `_Mutex`, `_Channel` in `name`,
    // `util.inspect` and stack traces.
    const seen = node(
      `const { Channel, Mutex, SharedMemory, SharedMemoryError } = require("${PACKAGE_NAME}");
       const names = [Channel, Mutex, SharedMemory, SharedMemoryError].map((c) => c.name);
       const shm = SharedMemory.create({ key: ${uniqueKey()} }, 64);
       shm.unlink();
       shm.close();
       let frame = "";
       try { shm.view(); } catch (e) { frame = e.stack.split("\\n").find((l) => /^ *at .*\\.view /.test(l)); }
       console.log(JSON.stringify({ names, inspected: require("node:util").inspect(shm), frame }));`,
      "commonjs",
    );
    const { names, inspected, frame } = JSON.parse(seen);
    assert.deepEqual(names, ["Channel", "Mutex", "SharedMemory", "SharedMemoryError"]);
    assert.match(inspected, /^SharedMemory /);
    // Node 20's V8 names a method's stack frame (and a failed private-member check, in every
    // version) by the class's own binding, which the bundle still calls `_SharedMemory`.
    if (!process.versions.node.startsWith("20.")) assert.match(frame, /at SharedMemory\.view /);
  });
}

/**
 * A user's project in a new folder: the package (this clone, linked) in its `node_modules`, and
 * the platform package with this build's library unless `bare`. Gives the folder, the platform
 * package's name and the library's file name.
 */
function userProject(tag: string, bare = false): { dir: string; prebuilt: string; file: string } {
  const dir = mkdtempSync(`${tmpdir()}/sb-${tag}-`);
  const platform = platformsFor(processPlatform(process as ProcessLike))[0];
  const prebuilt = platformPackageName(platform);
  const file = libraryFileName(process.platform);
  mkdirSync(`${dir}/node_modules`, { recursive: true });
  if (!bare) {
    mkdirSync(`${dir}/node_modules/${prebuilt}`);
    writeFileSync(
      `${dir}/node_modules/${prebuilt}/package.json`,
      JSON.stringify({ name: prebuilt }),
    );
    copyFileSync(`${repoRoot}target/release/${file}`, `${dir}/node_modules/${prebuilt}/${file}`);
  }
  symlinkSync(repoRoot, `${dir}/node_modules/${PACKAGE_NAME}`);
  return { dir, prebuilt, file };
}

/** An ES module app (`app.mjs`) that reads and writes the keyed segment `key` and prints where its library came from. */
function writeApp(dir: string, key: number): void {
  writeFileSync(
    `${dir}/app.mjs`,
    `import { createSharedBuffer, detachSharedBuffer, loadLibrary } from "${PACKAGE_NAME}";
     const values = new Float64Array(createSharedBuffer(${key}, 80));
     console.log(values[3], loadLibrary().replace(${JSON.stringify(dir)}, "<app>"));
     values[4] = 42;
     detachSharedBuffer(values.buffer);`,
  );
}

/** Runs a built bundle from another folder, without SHARED_BUFFER_LIB. */
function runBundle(path: string) {
  const env = { ...process.env };
  delete env.SHARED_BUFFER_LIB;
  return spawnSync(process.execPath, [path], { cwd: tmpdir(), encoding: "utf8", env });
}

/** Bundles `entry` (`app.mjs`) in `dir` with the pinned esbuild; `format` is esbuild's. */
function esbuild(dir: string, format: "cjs" | "esm", outfile: string, entry = "app.mjs"): void {
  const built = spawnSync(
    `${repoRoot}.tools/node_modules/.bin/esbuild`,
    [
      entry,
      "--bundle",
      "--platform=node",
      `--format=${format}`,
      `--outfile=${outfile}`,
      "--log-level=error",
    ],
    { cwd: dir, encoding: "utf8" },
  );
  assert.equal(built.status, 0, built.stderr);
}

/** The app's bundle, run from another folder, shares the keyed segment with this process. */
function bundleShares(
  bundle: string,
  key: number,
  prebuilt: string,
  file: string,
): void {
  const mine = new Float64Array(lib.createSharedBuffer(key, 80, true));
  try {
    mine[3] = 0.25;
    const r = runBundle(bundle);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), `0.25 <app>/node_modules/${prebuilt}/${file}`);
    assert.equal(mine[4], 42);
  } finally {
    lib.detachSharedBuffer(mine.buffer);
  }
}

if (runtime === "node") {
  test("an ES module app that esbuild bundles as CommonJS (its default for Node.js) finds the platform package", () => {
    // `import.meta` is an empty object there: `createRequire(import.meta.url)` threw
    // ERR_INVALID_ARG_VALUE at the first call, naming nothing of the library.
    const { dir, prebuilt, file } = userProject("cjs-bundle");
    const key = uniqueKey();
    try {
      writeApp(dir, key);
      esbuild(dir, "cjs", "out/app.cjs");
      // From another folder: the bundle's own place finds its node_modules.
      bundleShares(`${dir}/out/app.cjs`, key, prebuilt, file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      cleanup({ key });
    }
  });

  test("an ES module app that webpack 5 bundles for Node.js finds the platform package beside the bundle", () => {
    // webpack turned `createRequire(<computed>)` into `undefined`, which threw a TypeError before
    // anything was looked for, and it writes the file the package was bundled from into
    // `import.meta.url` (here the clone, whose folders hold no platform package).
    const { dir, prebuilt, file } = userProject("webpack");
    const key = uniqueKey();
    try {
      writeApp(dir, key);
      const config = {
        mode: "production",
        target: "node",
        context: dir,
        entry: "./app.mjs",
        output: { path: `${dir}/out`, filename: "app.js" },
      };
      const built = spawnSync(process.execPath, [
        "-e",
        `require(${JSON.stringify(`${repoRoot}.tools/node_modules/webpack`)})(${
          JSON.stringify(config)
        }, (err, stats) => {
          if (err || stats.hasErrors()) { console.error(err ?? stats.toString()); process.exit(1); }
        });`,
      ], { encoding: "utf8" });
      assert.equal(built.status, 0, built.stderr);
      bundleShares(`${dir}/out/app.js`, key, prebuilt, file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      cleanup({ key });
    }
  });

  test("a bundle without the platform package says it is a bundle and looks for no local build above it", () => {
    // The adapter took the bundle for its own file, three folders down from a clone, and tried
    // `<bundle>/../../../target/release/...`, any file of that name in a folder above it.
    // A CommonJS app's bundle in a `dist/` folder looked like the package's own `dist/node.cjs`.
    const { dir, prebuilt } = userProject("bare-bundle", true);
    try {
      writeApp(dir, uniqueKey());
      writeFileSync(
        `${dir}/app.cjs`,
        `console.log(require("${PACKAGE_NAME}").loadLibrary());`,
      );
      esbuild(dir, "esm", "out/app.mjs");
      esbuild(dir, "cjs", "dist/app.cjs", "app.cjs");
      for (const bundle of [`${dir}/out/app.mjs`, `${dir}/dist/app.cjs`]) {
        const r = runBundle(bundle);
        assert.notEqual(r.status, 0);
        assert.ok(r.stderr.includes(`runs from a bundle (${bundle})`), r.stderr);
        assert.match(r.stderr, new RegExp(`install ${prebuilt}@\\S+ in a node_modules folder`));
        assert.doesNotMatch(r.stderr, /target\/release|bun build/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

if (runtime === "bun") {
  test("Bun runs an app bundled for Node.js (esbuild, CommonJS and ES modules) on its own FFI, finding the platform package", () => {
    // Through Bun's Node-API, a buffer a Worker moved to another thread lost its mapping once
    // the Worker's original was collected (SIGSEGV): the entry now takes `bun:ffi` in Bun, whose
    // buffers a transfer list moves (Bun refuses its Node-API buffers there).
    const { dir, prebuilt, file } = userProject("bun-bundle");
    const key = uniqueKey();
    try {
      writeApp(dir, key);
      writeFileSync(
        `${dir}/moves.mjs`,
        `import { createSharedBuffer } from "${PACKAGE_NAME}";
         const buffer = createSharedBuffer(${key}, 80);
         const moved = structuredClone(buffer, { transfer: [buffer] });
         console.log(buffer.byteLength, new Float64Array(moved)[3]);`,
      );
      for (const [format, ext] of [["cjs", "cjs"], ["esm", "mjs"]] as const) {
        esbuild(dir, format, `out/app.${ext}`);
        bundleShares(`${dir}/out/app.${ext}`, key, prebuilt, file);
        esbuild(dir, format, `out/moves.${ext}`, "moves.mjs");
        const mine = new Float64Array(lib.createSharedBuffer(key, 80));
        try {
          mine[3] = 0.5;
          const r = runBundle(`${dir}/out/moves.${ext}`);
          assert.equal(r.status, 0, r.stderr);
          assert.equal(r.stdout.trim(), "0 0.5", "moved: the original detached, the new one reads");
        } finally {
          lib.detachSharedBuffer(mine.buffer);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      cleanup({ key });
    }
  });
}

if (runtime === "deno") {
  test("Deno runs the CommonJS build (what require loads) with --allow-ffi alone, sharing a segment through createSharedBuffer", () => {
    const key = uniqueKey();
    const dir = mkdtempSync(`${tmpdir()}/sb-require-`);
    try {
      const mine = new Float64Array(lib.createSharedBuffer(key, 80, true));
      mine[3] = 0.25;
      // It read SHARED_BUFFER_LIB and process.report, which Deno gives only with --allow-env and
      // --allow-sys (NotCapable without them, a prompt in a terminal).
      writeFileSync(
        `${dir}/main.cjs`,
        `const { createSharedBuffer, detachSharedBuffer } = require(${
          JSON.stringify(`${repoRoot}dist/node.cjs`)
        });
         const values = new Float64Array(createSharedBuffer(${key}, 80));
         console.log(values[3]);
         values[4] = 42;
         detachSharedBuffer(values.buffer);`,
      );
      // Without Deno's code cache: Deno 2.9.6 ran an earlier build of `dist/node.cjs` from it
      // after a clone at the same path was built anew (its ABI version of the day before).
      const r = spawnSync(
        runtimeBin("deno"),
        ["run", "--allow-ffi", "--no-code-cache", `${dir}/main.cjs`],
        { encoding: "utf8" },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), "0.25");
      assert.equal(mine[4], 42);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      cleanup({ key });
    }
  });
}

if (runtime === "deno") {
  test("from npm, Deno's bundle keeps the classes' own names", () => {
    // `deno bundle` renamed them `_SharedMemory`, `_Channel`, `_Mutex` (in `name`, in
    // `console.log` and in stack traces) until it was given --keep-names.
    const r = spawnSync(runtimeBin("deno"), [
      "eval",
      `const m = await import(${JSON.stringify(`${repoRoot}dist/deno.js`)});
       console.log([m.Channel, m.Mutex, m.SharedMemory, m.SharedMemoryError].map((c) => c.name).join());`,
    ], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), "Channel,Mutex,SharedMemory,SharedMemoryError");
  });
}

if (runtime === "deno") {
  test("Deno type-checks a program that imports the package from node_modules", () => {
    // The declarations tsc writes import "./ts/api.ts", which Deno does not map to the .d.ts
    // (TS2307); the `deno` condition gives it twins it can follow.
    const dir = mkdtempSync(`${tmpdir()}/sb-deno-types-`);
    try {
      mkdirSync(`${dir}/node_modules`);
      symlinkSync(repoRoot, `${dir}/node_modules/${PACKAGE_NAME}`);
      writeFileSync(
        `${dir}/package.json`,
        JSON.stringify({ dependencies: { [PACKAGE_NAME]: "*" } }),
      );
      writeFileSync(`${dir}/deno.json`, JSON.stringify({ nodeModulesDir: "manual" }));
      writeFileSync(
        `${dir}/main.ts`,
        `import { Channel, createSharedBuffer, SharedMemory } from "${PACKAGE_NAME}";
         const buffer: ArrayBuffer = createSharedBuffer(1, 8, true);
         const shm: SharedMemory | undefined = undefined;
         // @ts-expect-error: a capacity is required
         Channel.create({ name: "/x" }, {});
         console.log(buffer, shm);`,
      );
      const r = spawnSync(runtimeBin("deno"), ["check", "main.ts"], { cwd: dir, encoding: "utf8" });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

if (runtime === "node") {
  const strips = (process.features as { typescript?: unknown }).typescript;
  testUnless(
    !strips && lacking("this Node.js runs no TypeScript (22.18 and newer strip types)"),
    "node.ts imported from a clone where Node.js strips types finds the clone's own build, as dist/node.js does",
    () => {
      const env = { ...process.env };
      delete env.SHARED_BUFFER_LIB;
      const file = libraryFileName(processPlatform(process as unknown as ProcessLike).os);
      for (const entry of ["node.ts", "dist/node.js"]) {
        const r = spawnSync(process.execPath, [
          "--input-type=module",
          "-e",
          `import { loadLibrary } from ${JSON.stringify(`${repoRoot}${entry}`)};\n` +
          "console.log(loadLibrary());",
        ], { cwd: tmpdir(), encoding: "utf8", env });
        assert.equal(r.status, 0, `${entry}: ${r.stderr}`);
        assert.equal(r.stdout.trim(), `${repoRoot}target/release/${file}`, entry);
      }
    },
  );
}

/** The TypeScript compiler `make` installs. */
const tsc = `${repoRoot}.tools/node_modules/.bin/tsc`;

if (runtime === "node") {
  testUnless(
    !existsSync(tsc) && "the TypeScript compiler is not installed (run make)",
    "the package's types serve require in CommonJS files (module node16, where require cannot load an ES module) and import in ES modules",
    () => {
      const dir = mkdtempSync(`${tmpdir()}/sb-types-`);
      try {
        mkdirSync(`${dir}/node_modules`);
        symlinkSync(repoRoot, `${dir}/node_modules/${PACKAGE_NAME}`);
        const use = (how: string) =>
          `${how}\nconst buffer: ArrayBuffer = createSharedBuffer(1, 8, true);\n` +
          `const shm: SharedMemory | undefined = undefined;\nconsole.log(buffer, shm);\n`;
        writeFileSync(
          `${dir}/required.cts`,
          use(`import { createSharedBuffer, SharedMemory } from "${PACKAGE_NAME}";`),
        );
        writeFileSync(
          `${dir}/assigned.cts`,
          `import lib = require("${PACKAGE_NAME}");\nconst b: ArrayBuffer = lib.createSharedBuffer(1, 8);\nconsole.log(b);\n`,
        );
        writeFileSync(
          `${dir}/imported.mts`,
          use(`import { createSharedBuffer, SharedMemory } from "${PACKAGE_NAME}";`),
        );
        for (const module of ["node16", "nodenext"]) {
          writeFileSync(
            `${dir}/tsconfig.json`,
            JSON.stringify({
              compilerOptions: {
                lib: ["es2022", "dom", "esnext.disposable"],
                types: [],
                strict: true,
                module,
                noEmit: true,
              },
              files: ["required.cts", "assigned.cts", "imported.mts"],
            }),
          );
          const r = spawnSync(tsc, ["-p", dir], { encoding: "utf8" });
          assert.equal(r.status, 0, `module ${module}:\n${r.stdout}${r.stderr}`);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
}
