/**
 * Library lookup and its error: the lookup order, which platform packages fit a machine, the
 * one error that lists every place tried, the advice for an ABI mismatch, the wording of a
 * runtime's open error, and one version everywhere it is written down.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { readFileSync } from "node:fs";
import { lib, repoRoot as root, runtime, test } from "./harness.ts";
import {
  askingOnce,
  fileHead,
  loadNativeLibrary,
  openFailure,
  platformsFor,
  PREBUILT_PLATFORMS,
  wrongEntry,
} from "../ts/library.ts";
import { ABI_VERSION } from "../ts/ffi.ts";
import { PACKAGE_NAME, VERSION } from "../ts/version.ts";

/** A fake runtime: `open` succeeds for paths in `versions`, reporting that ABI version. */
function attempt(
  sources: Parameters<typeof loadNativeLibrary>[0],
  versions: Record<string, number>,
) {
  const opened: string[] = [];
  const closed: string[] = [];
  try {
    const loaded = loadNativeLibrary<string>(
      sources,
      (path) => {
        opened.push(path);
        if (!(path in versions)) {
          throw new Error(`Could not open library: Could not open library: ${path}: no such file`);
        }
        return path;
      },
      (path) => versions[path],
      (path) => void closed.push(path),
    );
    return { loaded: loaded.path, opened, closed, error: undefined };
  } catch (error) {
    return {
      loaded: undefined,
      opened,
      closed,
      error: error as InstanceType<typeof lib.SharedMemoryError>,
    };
  }
}

const linux = { os: "linux", arch: "x86_64", libc: "gnu" as const };

test("the lookup order: the platform packages, then a local build", () => {
  const r = attempt({
    platform: linux,
    resolvePackage: (p) => (p === "linux-x64-musl" ? "/pkg/musl.so" : undefined),
    root: "/clone",
  }, { "/clone/target/debug/libshared_buffer_native.so": ABI_VERSION });
  assert.deepEqual(r.opened, [
    "/pkg/musl.so",
    "/clone/target/release/libshared_buffer_native.so",
    "/clone/target/debug/libshared_buffer_native.so",
  ]);
  assert.equal(r.loaded, "/clone/target/debug/libshared_buffer_native.so");
});

test("SHARED_BUFFER_LIB, when set, is the only path tried, and the error says so", () => {
  const sources = {
    fromEnv: "/env/lib.so",
    platform: linux,
    resolvePackage: () => "/pkg/lib.so",
    root: "/clone",
  };
  const loaded = attempt(sources, { "/env/lib.so": ABI_VERSION, "/pkg/lib.so": ABI_VERSION });
  assert.deepEqual([loaded.opened, loaded.loaded], [["/env/lib.so"], "/env/lib.so"]);
  // Missing, or of another release: an error, not the package's library.
  const missing: Record<string, number> = {};
  for (const libraries of [missing, { "/env/lib.so": ABI_VERSION + 1 }]) {
    const r = attempt(sources, { ...libraries, "/pkg/lib.so": ABI_VERSION });
    assert.deepEqual(r.opened, ["/env/lib.so"]);
    assert.equal(r.error?.code, "ELIBACC");
    assert.match(r.error!.message, /\n {2}\/env\/lib\.so: /);
    assert.match(r.error!.message, /When SHARED_BUFFER_LIB is set, only the library it names/);
    assert.doesNotMatch(r.error!.message, /optional dependency/);
  }
});

test("an explicit path is the only one tried", () => {
  const r = attempt({
    explicit: "/x.so",
    fromEnv: "/env/lib.so",
    platform: linux,
    resolvePackage: () => "/pkg/lib.so",
    root: "/clone",
  }, { "/pkg/lib.so": ABI_VERSION });
  assert.deepEqual(r.opened, ["/x.so"]);
  assert.equal(r.error?.code, "ELIBACC");
  assert.match(r.error!.message, /`loadLibrary\(path\)` tries only the path it is given/);
  assert.doesNotMatch(r.error!.message, /optional dependency/);
});

test("the error lists every place tried, once each, and names the package that fits", () => {
  const r = attempt({ platform: linux, resolvePackage: () => undefined, root: "/c" }, {});
  const message = r.error!.message;
  assert.ok(r.error instanceof lib.SharedMemoryError);
  assert.equal(message.match(/Could not open library/g), null, message);
  assert.match(
    message,
    /shared-buffer-ipc-linux-x64-gnu\/libshared_buffer_native\.so: not installed/,
  );
  assert.match(message, /\n {2}\/c\/target\/release\/libshared_buffer_native\.so: no such file\n/);
  assert.match(message, /comes in shared-buffer-ipc-linux-x64-gnu, an optional dependency/);
  assert.match(message, /SHARED_BUFFER_LIB/);
});

// A compiled Bun program embeds the library only through `bun.ts`'s literal `require`s of the
// platform packages: through the Node.js entry it never does, and the error said it would have,
// also to bundles that no `bun build --compile` made.
test("a bundle's error speaks of `bun build --compile` only where it applies, and as it applies to the entry", () => {
  const advice = (bundle: string, compileEmbeds?: boolean) =>
    attempt({ platform: linux, resolvePackage: () => undefined, bundle, compileEmbeds }, {})
      .error!.message;
  assert.match(
    advice("/app/out.js", true),
    /embeds the library only if that package was installed/,
  );
  assert.match(
    advice("/$bunfs/root/app", false),
    /embeds the library only through shared-buffer-ipc's own entry for Bun/,
  );
  for (const message of [advice("/app/out.js", false), advice("/$bunfs/root/app")]) {
    assert.doesNotMatch(message, /bun build/);
    assert.match(message, /this program runs from a bundle/);
  }
});

test("out of file descriptors, the error says so instead of advising a reinstall", () => {
  const load = () =>
    loadNativeLibrary<string>(
      { platform: linux, resolvePackage: () => "/pkg/lib.so", root: "/c" },
      (path) => {
        throw new Error(`Could not open library: ${path}: Too many open files`);
      },
      () => ABI_VERSION,
      () => {},
    );
  assert.throws(load, (e: unknown) =>
    e instanceof lib.SharedMemoryError && e.code === "ELIBACC" &&
    /no file descriptor left to open it with \(EMFILE\)/.test(e.message) &&
    !/optional dependency/.test(e.message));
});

test("a runtime that asks before it opens a path (Deno in a terminal) is asked once: after a refusal, only paths already granted are opened", () => {
  const asked: string[] = [];
  const granted = new Set(["/clone/target/debug/libshared_buffer_native.so"]);
  const open = askingOnce((path) => {
    asked.push(path);
    if (!granted.has(path)) {
      throw new Error(`Requires ffi access to "${path}", run again with the --allow-ffi flag`);
    }
    return path;
  }, (path) => (granted.has(path) ? "granted" : "prompt"));
  const r = loadNativeLibrary<string>(
    { platform: linux, resolvePackage: () => "/pkg/lib.so", root: "/clone" },
    open,
    () => ABI_VERSION,
    () => {},
  );
  assert.deepEqual(asked, ["/pkg/lib.so", "/clone/target/debug/libshared_buffer_native.so"]);
  assert.equal(r.path, "/clone/target/debug/libshared_buffer_native.so");
  // Nothing granted: one refusal, and every place listed as needing the permission.
  granted.clear();
  asked.length = 0;
  assert.throws(
    () =>
      loadNativeLibrary<string>(
        { platform: linux, resolvePackage: () => "/pkg/lib.so", root: "/clone" },
        open,
        () => ABI_VERSION,
        () => {},
      ),
    (e: unknown) =>
      e instanceof lib.SharedMemoryError && /only with `--allow-ffi`/.test(e.message) &&
      /target\/release\/libshared_buffer_native\.so: Requires ffi access .*not asked again/.test(
        e.message,
      ),
  );
  assert.equal(asked.length, 0, "asked again after a refusal");
});

test("without --allow-ffi (Deno), the error says to add it, and that SHARED_BUFFER_LIB was not read without --allow-env", () => {
  const refuse = (path: string) => {
    throw new Error(
      `Requires ffi access to "${path}", run again with the --allow-ffi flag`,
    );
  };
  const load = (resolved: string | undefined) =>
    loadNativeLibrary<string>(
      { platform: linux, resolvePackage: () => resolved, root: "/c", envUnreadable: true },
      refuse,
      () => ABI_VERSION,
      () => {},
    );
  for (const resolved of ["/pkg/lib.so", undefined]) {
    assert.throws(() => load(resolved), (e: unknown) => {
      assert.ok(e instanceof lib.SharedMemoryError && e.code === "ELIBACC");
      const lines = e.message.split("\n");
      assert.equal(
        lines[1],
        "  SHARED_BUFFER_LIB: not read (Deno lets it be read with --allow-env=SHARED_BUFFER_LIB)",
      );
      assert.match(lines.at(-1)!, /^Deno opens a native library only with `--allow-ffi`/);
      // The package to install only where none was found.
      assert.equal(/optional dependency/.test(e.message), resolved === undefined, e.message);
      // One name per machine: Deno's x86_64 is x64, as Node.js and Bun say.
      if (resolved === undefined) assert.match(e.message, /On linux x64 \(gnu\)/);
      return true;
    });
  }
});

test("a library built for another machine says so, where the loader says the file is missing", () => {
  /** A 20-byte header: ELF (little-endian, `e_machine` at 18) or 64-bit Mach-O (`cputype` at 4). */
  const elf = (machine: number) => {
    const head = new Uint8Array(20);
    head.set([0x7f, 0x45, 0x4c, 0x46, 2, 1]);
    head[18] = machine & 0xff;
    head[19] = machine >> 8;
    return head;
  };
  const macho = (cpu: number) => {
    const head = new Uint8Array(20);
    new DataView(head.buffer).setUint32(0, 0xfeedfacf, true);
    new DataView(head.buffer).setUint32(4, cpu, true);
    return head;
  };
  const heads: Record<string, Uint8Array> = {
    "/arm64.so": elf(183),
    "/x64.so": elf(62),
    "/odd.so": elf(9999),
    "/mac.dylib": macho(0x0100000c),
    "/short.so": new Uint8Array(4),
  };
  const lineOf = (
    path: string,
    readHead: (path: string) => Uint8Array | undefined,
    platform: { os: string; arch: string; libc?: "gnu" | "musl" } = linux,
  ) => {
    try {
      loadNativeLibrary<string>(
        { explicit: path, platform, resolvePackage: () => undefined, readHead },
        (p) => {
          // glibc's words for a library of another machine, in Bun's wrapping.
          throw new Error(
            `Failed to open library "${p}": ${p}: cannot open shared object file: No such file or directory`,
          );
        },
        () => ABI_VERSION,
        () => {},
      );
    } catch (e) {
      return (e as Error).message.split("\n")[1];
    }
    throw new Error("loaded");
  };
  const read = (p: string) => heads[p];
  const missing = "cannot open shared object file: No such file or directory";
  assert.equal(
    lineOf("/arm64.so", read),
    `  /arm64.so: a library built for arm64 (ELF), not this machine's x64 (linux) (${missing})`,
  );
  assert.equal(lineOf("/x64.so", read), `  /x64.so: ${missing}`, "this machine's: another cause");
  assert.match(lineOf("/odd.so", read), /built for machine 9999 \(ELF\)/);
  assert.match(lineOf("/mac.dylib", read), /built for arm64 \(Mach-O\), not this machine's x64/);
  assert.equal(lineOf("/short.so", read), `  /short.so: ${missing}`);
  assert.equal(lineOf("/none.so", () => undefined), `  /none.so: ${missing}`);
  assert.equal(
    lineOf("/arm64.so", () => {
      throw new Error("EACCES");
    }),
    `  /arm64.so: ${missing}`,
  );
  // Machines other than the prebuilt ones: a library of their own fits, another does not, and
  // one not known here is not judged.
  const on = (arch: string) => ({ os: "linux", arch, libc: "gnu" as const });
  const mine = (n: number) => () => elf(n);
  assert.equal(lineOf("/arm.so", mine(40), on("arm")), `  /arm.so: ${missing}`);
  assert.equal(lineOf("/x86.so", mine(3), on("ia32")), `  /x86.so: ${missing}`);
  assert.equal(lineOf("/ppc.so", mine(21), on("ppc64")), `  /ppc.so: ${missing}`);
  assert.match(
    lineOf("/x64.so", mine(62), on("ia32")),
    /built for x64 \(ELF\), not this machine's x86 \(32-bit\)/,
  );
  assert.equal(lineOf("/x64.so", mine(62), on("mips")), `  /x64.so: ${missing}`);
  // Big-endian: e_machine 21 (ppc64) as bytes 0, 21.
  const big = elf(0);
  big[5] = 2;
  big[19] = 21;
  assert.equal(lineOf("/be.so", () => big, on("ppc64")), `  /be.so: ${missing}`);
  assert.match(lineOf("/be.so", () => big), /built for ppc64 \(ELF\), not this machine's x64/);
  // The real thing: this machine's library reads as this machine's.
  const head = fileHead(fs, `${root}target/release/libshared_buffer_native.so`);
  assert.equal(head.length, 20);
  assert.deepEqual([...head.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]);
});

test("an ABI mismatch is closed and says what to do for where it came from", () => {
  const env = attempt(
    { fromEnv: "/env/lib.so", platform: linux, resolvePackage: () => undefined },
    {
      "/env/lib.so": ABI_VERSION - 1,
    },
  );
  assert.deepEqual(env.closed, ["/env/lib.so"]);
  assert.match(
    env.error!.message,
    new RegExp(
      `/env/lib.so: ABI version ${
        ABI_VERSION - 1
      }, but ${PACKAGE_NAME} ${VERSION} needs ${ABI_VERSION}: use the library of the same release`,
    ),
  );
  const r = attempt({
    platform: linux,
    resolvePackage: (p) => (p === "linux-x64-gnu" ? "/pkg/lib.so" : undefined),
    root: "/c",
  }, {
    "/pkg/lib.so": ABI_VERSION + 1,
    "/c/target/release/libshared_buffer_native.so": ABI_VERSION + 2,
  });
  assert.deepEqual(r.closed, ["/pkg/lib.so", "/c/target/release/libshared_buffer_native.so"]);
  const m = r.error!.message;
  assert.match(
    m,
    new RegExp(
      `/pkg/lib.so: ABI version ${ABI_VERSION + 1}.*npm install ${PACKAGE_NAME}@${VERSION}`,
    ),
  );
  assert.match(m, /release\/libshared_buffer_native\.so: ABI version \d+.*cargo build --release/);
});

test("platform packages for each machine, and none where nothing is prebuilt", () => {
  assert.deepEqual(platformsFor({ os: "linux", arch: "x64", libc: "musl" }), [
    "linux-x64-musl",
    "linux-x64-gnu",
  ]);
  assert.deepEqual(platformsFor({ os: "linux", arch: "aarch64" }), [
    "linux-arm64-gnu",
    "linux-arm64-musl",
  ]);
  assert.deepEqual(platformsFor({ os: "darwin", arch: "arm64" }), ["darwin-arm64"]);
  assert.deepEqual(platformsFor({ os: "windows", arch: "x86_64" }), []);
  for (const os of ["linux", "darwin"]) {
    for (const arch of ["x64", "arm64"]) {
      for (const p of platformsFor({ os, arch })) assert.ok(PREBUILT_PLATFORMS.includes(p));
    }
  }
  const r = attempt(
    { platform: { os: "freebsd", arch: "x64" }, resolvePackage: () => undefined },
    {},
  );
  assert.match(r.error!.message, /No prebuilt library is published for freebsd x64/);
});

test("a runtime's open error loses its repeated prefix and the path said twice", () => {
  const err = new Error(
    "Could not open library: Could not open library: /a.so: invalid ELF header",
  );
  assert.equal(openFailure(err, "/a.so"), "invalid ELF header");
  assert.equal(
    openFailure(new Error("Expected at least one symbol"), "/a.so"),
    "Expected at least one symbol",
  );
});

test("an entry loaded by another runtime names the one that fits", () => {
  const fits = { deno: "mod.ts", bun: "bun.ts", node: "dist/node.js" }[runtime];
  const other = runtime === "deno" ? "bun.ts" : "mod.ts";
  const err = wrongEntry(other);
  assert.equal(err.code, "ELIBACC");
  assert.match(err.message, new RegExp(`${other} is the entry for .*: import ${fits} instead`));
});

test("one version everywhere, and the platform packages pinned to it", () => {
  const pkg = JSON.parse(readFileSync(`${root}package.json`, "utf8"));
  const jsr = JSON.parse(readFileSync(`${root}deno.json`, "utf8"));
  const cargo = readFileSync(`${root}Cargo.toml`, "utf8").match(/^version = "(.+)"$/m)?.[1];
  const changelog = readFileSync(`${root}CHANGELOG.md`, "utf8").match(/^## (\d\S*)/m)?.[1];
  assert.deepEqual([pkg.version, jsr.version, cargo, changelog], [
    VERSION,
    VERSION,
    VERSION,
    VERSION,
  ]);
  assert.equal(pkg.name, PACKAGE_NAME);
  assert.deepEqual(
    pkg.optionalDependencies,
    Object.fromEntries(PREBUILT_PLATFORMS.map((p) => [`${PACKAGE_NAME}-${p}`, VERSION])),
  );
  const bunTable = readFileSync(`${root}ts/bun/platforms.ts`, "utf8");
  for (const p of PREBUILT_PLATFORMS) {
    assert.ok(
      bunTable.includes(`"${p}": () => {`) && bunTable.includes(`require("${PACKAGE_NAME}-${p}")`),
      p,
    );
  }
});
