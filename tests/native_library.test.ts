/**
 * The native library as the runtimes load it: its exports are exactly the generated table in
 * `ts/ffi.ts` (whose types the Rust compiler checks, see `crates/native/src/abi.rs`), the search
 * order (an explicit path or `SHARED_BUFFER_LIB` alone, else next to the package), the one error
 * that lists every path tried, refusing a library of another ABI version, and error numbers taken
 * from the library.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { copyFileSync, cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import {
  childrenTest,
  cleanup,
  type Done,
  lib,
  repoRoot,
  resultOf,
  runtime,
  runtimeBin,
  scriptCommand,
  start,
  test,
  testUnless,
  uniqueName,
} from "./harness.ts";
import { ABI_VERSION, symbols } from "../ts/ffi.ts";
import { backend } from "../ts/backend.ts";
import { LIBRARY_ENV, libraryFileName } from "../ts/library.ts";
import { PACKAGE_NAME, VERSION } from "../ts/version.ts";

const root = repoRoot.replace(/\/$/, "");
const FILE = libraryFileName(process.platform);
const BUILT = `${root}/target/release/${FILE}`;

function assertEquals(actual: unknown, expected: unknown, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}:\n  expected ${e}\n  got      ${a}`);
}

function assertIncludes(text: string, part: string, what: string): void {
  if (!text.includes(part)) throw new Error(`${what}: ${JSON.stringify(part)} not in:\n${text}`);
}

/** Why a tool cannot run here, or false. */
function whyNo(tool: string, args: string[]): string | false {
  const probe = spawnSync(tool, args, { encoding: "utf8" });
  return probe.error ? `${tool} is not available: ${probe.error.message}` : false;
}

/** The native symbol of each table entry (Deno's nonblocking variant names its symbol). */
const tableSymbols = [
  ...new Set(
    Object.entries(symbols as unknown as Record<string, { name?: string }>)
      .map(([key, entry]) => entry.name ?? key),
  ),
].sort();

testUnless(
  whyNo("nm", ["--version"]),
  "the built library exports exactly the sb_* symbols of the generated table",
  () => {
    const macos = process.platform === "darwin";
    const nm = spawnSync("nm", macos ? ["-gU", BUILT] : ["-D", "--defined-only", BUILT], {
      encoding: "utf8",
    });
    if (nm.status !== 0) throw new Error(`nm failed on ${BUILT}: ${nm.stderr}`);
    const exported = nm.stdout.split("\n")
      .map((line) => line.trim().split(/\s+/).at(-1)!.replace(macos ? /^_/ : /^$/, ""))
      .filter((name) => name.startsWith("sb_"))
      .sort();
    assertEquals(
      exported,
      tableSymbols,
      `the exports of ${BUILT} vs ts/ffi.ts (an export missing from crates/native/src/abi.rs, or a stale build)`,
    );
  },
);

test("error numbers come from the native library, named as it names them", () => {
  const b = backend();
  for (const name of ["EBADF", "EAGAIN", "EBUSY", "EINVAL", "ENOENT", "ETIMEDOUT", "EPIPE"]) {
    const errno = b.errno(name);
    if (!(errno > 0)) throw new Error(`${name}: no number (${errno})`);
    assertEquals(b.errorName(-errno), name, `the name of -${errno}`);
  }
  assertEquals(b.errno("ENOT_A_CODE"), 0, "an unknown name");
  // The library's own number for a closed segment reaches the error object.
  const shm = lib.SharedMemory.create({ name: `/sbtest-errno-${runtime}-${process.pid}` }, 64);
  shm.unlink();
  shm.close();
  try {
    void shm.buffer;
    throw new Error("buffer after close did not throw");
  } catch (err) {
    if (!(err instanceof lib.SharedMemoryError)) throw err;
    assertEquals([err.code, err.errno], ["EBADF", b.errno("EBADF")], "code and errno");
  }
});

/**
 * A copy of the package's TypeScript (no native library next to it) in a fresh folder, with the
 * JavaScript Node runs (`dist/`).
 */
function packageCopy(): string {
  const dir = mkdtempSync(`${tmpdir()}/sb-package-`);
  for (const file of ["mod.ts", "bun.ts"]) copyFileSync(`${root}/${file}`, `${dir}/${file}`);
  cpSync(`${root}/ts`, `${dir}/ts`, { recursive: true });
  cpSync(`${root}/dist/ts`, `${dir}/dist/ts`, { recursive: true });
  copyFileSync(`${root}/dist/node.js`, `${dir}/dist/node.js`);
  return dir;
}

/** The package's entry point for this runtime, under `dir`. */
const entryOf = (dir: string) =>
  `${dir}/${{ bun: "bun.ts", deno: "mod.ts", node: "dist/node.js" }[runtime]}`;

/** Runs `library/load.ts` against `entryDir`'s entry point and returns what it printed. */
async function load(
  entryDir: string,
  env: Record<string, string>,
  explicit?: string,
): Promise<{ path?: string; error?: string }> {
  const entry = entryOf(entryDir);
  const args = explicit === undefined ? [entry] : [entry, explicit];
  const r: Done = await start(scriptCommand(runtime, "library/load.ts", args), env).done;
  if (r.code !== 0) throw new Error(`library/load.ts exited with ${r.code}:\n${r.stderr}`);
  return resultOf(r, "library/load.ts");
}

test("search order: an explicit path or SHARED_BUFFER_LIB alone, else next to the package", async () => {
  const dir = mkdtempSync(`${tmpdir()}/sb-lib-`);
  try {
    const copy = `${dir}/${FILE}`;
    copyFileSync(BUILT, copy);
    // The variable wins over the build next to the package.
    assertEquals(await load(root, { [LIBRARY_ENV]: copy }), { path: copy }, "from the variable");
    // An explicit path wins over the variable.
    assertEquals(
      await load(root, { [LIBRARY_ENV]: copy }, BUILT),
      { path: BUILT },
      "explicit over the variable",
    );
    // A variable naming nothing is an error, not the build next to the package.
    const missing = `${dir}/missing/${FILE}`;
    const wrong = await load(root, { [LIBRARY_ENV]: missing });
    assertEquals(wrong.path, undefined, "loaded another library than the variable's");
    assertIncludes(wrong.error!, `  ${missing}: `, "the path the variable names");
    assertIncludes(wrong.error!, `When ${LIBRARY_ENV} is set, only the library it names`, "why");
    // Without the variable: next to the package.
    assertEquals(await load(root, { [LIBRARY_ENV]: "" }), { path: BUILT }, "no variable");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Bun's FFI finds a bare file name in the working folder, `process.dlopen` (the library's Node-API
// half, which every runtime loads) does not: Bun threw the runtime's own ERR_DLOPEN_FAILED, not the
// list of places tried.
test("SHARED_BUFFER_LIB as a bare file name in the working folder: the error lists it as tried", () => {
  const [bin, ...rest] = scriptCommand(runtime, "library/load.ts", [entryOf(root)]);
  const r = spawnSync(bin, rest, {
    cwd: BUILT.slice(0, BUILT.lastIndexOf("/")),
    env: { ...process.env, [LIBRARY_ENV]: FILE },
    encoding: "utf8",
  });
  assertEquals(r.status, 0, r.stderr);
  const { path, error } = resultOf<{ path?: string; error?: string }>(
    { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr },
    "library/load.ts",
  );
  assertEquals(path, undefined, "loaded");
  assertIncludes(
    error!,
    `could not load the native library. Tried:\n  ${FILE}: `,
    "the name tried",
  );
  assertIncludes(error!, `When ${LIBRARY_ENV} is set, only the library it names`, "why");
});

if (runtime === "deno") {
  test("the package's bundle, which the package's name resolves to in Deno, finds a clone's build too", async () => {
    // `import "shared-buffer-ipc"` in a clone resolves through package.json to `dist/deno.js`,
    // which looked for the platform packages only, where the Node.js and Bun entries also find
    // the clone's `target/`.
    const r: Done = await start(
      scriptCommand("deno", "library/load.ts", [`${root}/dist/deno.js`]),
      { [LIBRARY_ENV]: "" },
    ).done;
    if (r.code !== 0) throw new Error(`library/load.ts exited with ${r.code}:\n${r.stderr}`);
    assertEquals(resultOf(r, "library/load.ts"), { path: BUILT }, "from dist/deno.js");
  });
}

test("when nothing loads, one error lists every path tried and names SHARED_BUFFER_LIB", async () => {
  const pkg = packageCopy();
  try {
    const { path, error } = await load(pkg, { [LIBRARY_ENV]: "" });
    assertEquals(path, undefined, "a path");
    for (
      const tried of [
        `${pkg}/target/release/${FILE}`,
        `${pkg}/target/debug/${FILE}`,
        `${pkg}/${FILE}`,
      ]
    ) {
      assertIncludes(error!, `  ${tried}: `, "every candidate, in order");
    }
    const order = [`${pkg}/target/release/`, `${pkg}/target/debug/`, `${pkg}/${FILE}`].map((p) =>
      error!.indexOf(p)
    );
    assertEquals(order, [...order].sort((a, b) => a - b), "the order tried");
    assertIncludes(error!, LIBRARY_ENV, "the variable's name");
  } finally {
    rmSync(pkg, { recursive: true, force: true });
  }
});

testUnless(
  whyNo("cc", ["--version"]),
  "a library of another ABI version is refused, given by path or by SHARED_BUFFER_LIB",
  async () => {
    const dir = mkdtempSync(`${tmpdir()}/sb-stale-`);
    try {
      // A stub that exports every symbol of the table (so that dlopen binds them all), and
      // reports another ABI version.
      const stale = ABI_VERSION + 100;
      const body = tableSymbols
        .filter((name) => name !== "sb_abi_version")
        .map((name) => `long ${name}(void) { return 0; }`)
        .join("\n");
      writeFileSync(
        `${dir}/stub.c`,
        `unsigned sb_abi_version(void) { return ${stale}; }\n${body}\n`,
      );
      const stub = `${dir}/${FILE}`;
      const cc = spawnSync("cc", ["-shared", "-fPIC", "-o", stub, `${dir}/stub.c`], {
        encoding: "utf8",
      });
      if (cc.status !== 0) throw new Error(`cc failed: ${cc.stderr}`);
      const explicit = await load(root, {}, stub);
      assertEquals(explicit.path, undefined, "loaded the stale library");
      assertIncludes(
        explicit.error!,
        // Node loads the library as a Node-API module, which the stub is not.
        runtime === "node"
          ? `${stub}: `
          : `${stub}: ABI version ${stale}, but ${PACKAGE_NAME} ${VERSION} needs ${ABI_VERSION}`,
        "the refusal",
      );
      // Through the variable too: refused, not passed over for the build next to the package.
      const named = await load(root, { [LIBRARY_ENV]: stub });
      assertEquals(named.path, undefined, "loaded another library than the variable's");
      assertIncludes(named.error!, `${stub}: `, "the refusal");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

childrenTest(
  ["node"],
  "Node.js that loads no add-on (--no-addons, or --permission without --allow-addons): the error says to allow them, not to install a package",
  async () => {
    const [bin, ...rest] = scriptCommand("node", "library/load.ts", [`${root}/dist/node.js`]);
    const r = await start([bin, "--no-addons", ...rest]).done;
    if (r.code !== 0) throw new Error(`library/load.ts exited with ${r.code}:\n${r.stderr}`);
    const { error } = resultOf<{ error?: string }>(r, "library/load.ts");
    assertIncludes(error!, `${BUILT}: Cannot load native addon`, "why the build did not load");
    assertIncludes(error!, "Node.js loads no native add-on in this process", "the advice");
    assertIncludes(error!, "add `--allow-addons`", "the advice");
    assertEquals(error!.includes("--omit=optional"), false, "advice that would not help");
  },
);

childrenTest(
  ["deno"],
  "Deno with --allow-ffi scoped to the library: everything works, the async waits too",
  async () => {
    // The README's scoped permission once failed on first use with an uncaught "NotCapable:
    // Requires ffi access": the async waits' callback, which needs unscoped --allow-ffi, was made
    // when the library loaded. Then the async waits failed with NotCapable; Node-API wakes them
    // now, and needs nothing more.
    const [name, channel] = [uniqueName("scoped-ffi"), uniqueName("scoped-ffi-ch")];
    try {
      const script = `${root}/tests/children/library/scoped_ffi.ts`;
      const r = await start([
        runtimeBin("deno"),
        "run",
        `--allow-ffi=${BUILT}`,
        script,
        name,
        channel,
      ])
        .done;
      if (r.code !== 0) {
        throw new Error(`library/scoped_ffi.ts exited with ${r.code}:\n${r.stderr}`);
      }
      const result = resultOf<Record<string, unknown>>(r, "scoped_ffi");
      assertEquals(
        result,
        { sync: "ok", async: "ok", errors: "ok" },
        "the blocking and the async calls, and the codes of refused ones",
      );
      // In a terminal (`script` gives it one), where Deno asks before a call that the scoped
      // permission does not cover: nothing asks (the channel's addresses came from
      // `Deno.UnsafePointer`, which asked for unscoped --allow-ffi at every Channel.create).
      const shell = [runtimeBin("deno"), "run", `--allow-ffi=${BUILT}`, script, name, channel]
        .map((word) => `'${word.replaceAll("'", `'\\''`)}'`).join(" ");
      // A prompt waits for an answer: 30 s at most.
      const tty = await start(["timeout", "30", "script", "-qec", shell, "/dev/null"]).done;
      if (tty.code !== 0 || !tty.stdout.includes('"errors":"ok"') || /requests/.test(tty.stdout)) {
        throw new Error(`in a terminal (${tty.code ?? tty.signal}):\n${tty.stdout}${tty.stderr}`);
      }
    } finally {
      cleanup({ name });
      cleanup({ name: channel });
    }
  },
);
