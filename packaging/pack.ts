/**
 * `make package`: cross-builds the native library for every prebuilt platform, checks each file
 * (format and architecture, the exported `sb_*` symbols against `ts/ffi.ts`, the ABI version,
 * and a native smoke test wherever it can run here: natively, under the musl loader, or under
 * qemu-user), writes one npm package per platform and packs them with the main package into
 * `target/npm/`. Prints the size of every tarball and library.
 *
 * Needs the cross tools that `make cross-tools` installs: cargo-zigbuild and zig, the Rust
 * targets, llvm-nm and llvm-objdump, qemu-user with the arm64 C library, and musl.
 *
 * usage: deno run -A packaging/pack.ts [--skip-build]
 *
 * @module
 */

import { ABI_VERSION, symbols } from "../ts/ffi.ts";
import {
  libraryFileName,
  platformPackageName,
  PREBUILT_PLATFORMS,
  type PrebuiltPlatform,
} from "../ts/library.ts";
import { PACKAGE_NAME, VERSION } from "../ts/version.ts";

const root = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
const out = `${root}/target/npm`;

interface Target {
  /** The Rust target, as cargo-zigbuild takes it (a glibc version after a dot). */
  zig: string;
  os: "linux" | "darwin";
  cpu: "x64" | "arm64";
  libc?: "glibc" | "musl";
  /** The file format and machine, as {@linkcode fileFormat} names it. */
  format: string;
  /** How the smoke test runs here, if it can. */
  run?: string[];
  /** The zig target the smoke test is compiled for. */
  smoke?: string;
}

/** Each prebuilt platform's build. glibc 2.17 (2012) keeps the Linux builds widely loadable. */
const TARGETS: Record<PrebuiltPlatform, Target> = {
  "linux-x64-gnu": {
    zig: "x86_64-unknown-linux-gnu.2.17",
    os: "linux",
    cpu: "x64",
    libc: "glibc",
    format: "ELF x86-64 shared library",
    run: [],
    smoke: "x86_64-linux-gnu.2.17",
  },
  "linux-arm64-gnu": {
    zig: "aarch64-unknown-linux-gnu.2.17",
    os: "linux",
    cpu: "arm64",
    libc: "glibc",
    format: "ELF arm64 shared library",
    run: ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"],
    smoke: "aarch64-linux-gnu.2.17",
  },
  "linux-x64-musl": {
    zig: "x86_64-unknown-linux-musl",
    os: "linux",
    cpu: "x64",
    libc: "musl",
    format: "ELF x86-64 shared library",
    run: [],
    smoke: "x86_64-linux-musl",
  },
  "linux-arm64-musl": {
    zig: "aarch64-unknown-linux-musl",
    os: "linux",
    cpu: "arm64",
    libc: "musl",
    format: "ELF arm64 shared library",
  },
  "darwin-x64": {
    zig: "x86_64-apple-darwin",
    os: "darwin",
    cpu: "x64",
    format: "Mach-O x86-64 shared library",
  },
  "darwin-arm64": {
    zig: "aarch64-apple-darwin",
    os: "darwin",
    cpu: "arm64",
    format: "Mach-O arm64 shared library",
  },
};

function fail(message: string): never {
  console.error(`pack: ${message}`);
  Deno.exit(1);
}

/** Runs a command; returns its stdout, or fails with its stderr. */
function run(cmd: string[], options: { cwd?: string; env?: Record<string, string> } = {}): string {
  const result = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: options.cwd ?? root,
    env: options.env,
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const text = new TextDecoder();
  if (!result.success) {
    fail(`${cmd.join(" ")} failed:\n${text.decode(result.stderr)}${text.decode(result.stdout)}`);
  }
  return text.decode(result.stdout);
}

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(Deno.readTextFileSync(path));
}

/** The release's version must be the same everywhere it is written. */
function checkVersions(): void {
  const pkg = readJson(`${root}/package.json`);
  const jsr = readJson(`${root}/deno.json`);
  const cargo = Deno.readTextFileSync(`${root}/Cargo.toml`).match(/^version = "(.+)"$/m)?.[1];
  const changelog = Deno.readTextFileSync(`${root}/CHANGELOG.md`).match(/^## \[?(\d[^\]\s]*)/m)
    ?.[1];
  const found = {
    "package.json": pkg.version,
    "deno.json": jsr.version,
    "Cargo.toml": cargo,
    "CHANGELOG.md": changelog,
  };
  for (const [file, version] of Object.entries(found)) {
    if (version !== VERSION) fail(`${file} says ${version}, ts/version.ts says ${VERSION}`);
  }
  if (pkg.name !== PACKAGE_NAME) fail(`package.json is named ${pkg.name}, not ${PACKAGE_NAME}`);
  const optional = pkg.optionalDependencies as Record<string, string>;
  const expected = Object.fromEntries(
    PREBUILT_PLATFORMS.map((p) => [platformPackageName(p), VERSION]),
  );
  if (JSON.stringify(optional) !== JSON.stringify(expected)) {
    fail(`package.json's optionalDependencies must be exactly ${JSON.stringify(expected)}`);
  }
}

/** The native names of the symbol table (Deno's `nonblocking` twins share one). */
const EXPORTS = [
  ...new Set(Object.entries(symbols).map(([k, v]) => (v as { name?: string }).name ?? k)),
]
  .sort();

/** What a file is, from its header: a 64-bit little-endian ELF or Mach-O shared library. */
function fileFormat(head: Uint8Array): string {
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length >= 20 && view.getUint32(0) === 0x7f454c46 && head[4] === 2 && head[5] === 1) {
    const type = view.getUint16(16, true) === 3 ? "shared library" : "non-library";
    const machine = { 0x3e: "x86-64", 0xb7: "arm64" }[view.getUint16(18, true)] ?? "unknown";
    return `ELF ${machine} ${type}`;
  }
  if (head.length >= 16 && view.getUint32(0, true) === 0xfeedfacf) {
    const type = view.getUint32(12, true) === 6 ? "shared library" : "non-library";
    const cpu = { 0x01000007: "x86-64", 0x0100000c: "arm64" }[view.getUint32(4, true)] ?? "unknown";
    return `Mach-O ${cpu} ${type}`;
  }
  return "file of unknown format";
}

/**
 * The macOS specifics: what the library links to (libSystem only), its install name, its
 * minimum macOS version, the ad hoc signature arm64 Macs require, and no exports besides the
 * C ABI and the Node-API entry.
 */
function checkMachO(lib: string, target: Target): string {
  const used = run(["llvm-objdump", "--macho", "--dylibs-used", lib]).split("\n").slice(1)
    .map((l) => l.trim().split(" ")[0]).filter(Boolean);
  const expected = ["@rpath/libshared_buffer_native.dylib", "/usr/lib/libSystem.B.dylib"];
  if (JSON.stringify(used) !== JSON.stringify(expected)) {
    fail(`${lib}: links ${used.join(", ")}; expected ${expected.join(", ")}`);
  }
  const others = run(["llvm-nm", "-gU", lib]).split("\n").map((l) => l.trim().split(/\s+/).pop())
    .filter((s) => s && !s.startsWith("_sb_") && s !== "_napi_register_module_v1");
  if (others.length) fail(`${lib}: exports more than the C ABI: ${others.slice(0, 5).join(", ")}`);
  const headers = run(["llvm-objdump", "--macho", "--private-headers", lib]);
  const minimum = headers.match(/\bminos ([\d.]+)/)?.[1] ??
    headers.match(/LC_VERSION_MIN_MACOSX[\s\S]*?version ([\d.]+)/)?.[1];
  if (!minimum) fail(`${lib}: no minimum macOS version recorded`);
  const signed = headers.includes("LC_CODE_SIGNATURE");
  if (target.cpu === "arm64" && !signed) fail(`${lib}: arm64 macOS needs an ad hoc signature`);
  return `links libSystem only, macOS ${minimum}+${signed ? ", ad hoc signed" : ""}`;
}

/** Checks one built library; returns what was checked, for the log. */
function checkLibrary(platform: PrebuiltPlatform, target: Target, lib: string): string {
  const format = fileFormat(Deno.readFileSync(lib).subarray(0, 20));
  if (format !== target.format) fail(`${lib}: expected a ${target.format}, found a ${format}`);
  const prefix = target.os === "darwin" ? "_" : "";
  const nm = target.os === "darwin"
    ? ["llvm-nm", "-gU", lib]
    : ["llvm-nm", "-D", "--defined-only", lib];
  const symbols = run(nm).split("\n").map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length === 3 && f[2].startsWith(`${prefix}sb_`))
    .map(([address, , name]) => ({ address, name: name.slice(prefix.length) }));
  const exported = symbols.map((s) => s.name).sort();
  if (JSON.stringify(exported) !== JSON.stringify(EXPORTS)) {
    const missing = EXPORTS.filter((s) => !exported.includes(s));
    const extra = exported.filter((s) => !EXPORTS.includes(s));
    fail(
      `${lib}: exports drifted from ts/ffi.ts: missing ${missing.join(", ") || "-"}, extra ${
        extra.join(", ") || "-"
      }`,
    );
  }
  // The ABI version is a constant returned by sb_abi_version: read it from the machine code at its
  // address (by address, not by name: the compiler merges functions with the same body, and
  // sb_mutex_align also returns 8, so the code there may carry the other name).
  const start = parseInt(symbols.find((s) => s.name === "sb_abi_version")!.address, 16);
  const code = run([
    "llvm-objdump",
    "-d",
    `--start-address=0x${start.toString(16)}`,
    `--stop-address=0x${(start + 16).toString(16)}`,
    lib,
  ]);
  const abi = code.match(/mov\s+w0, #(0x)?([0-9a-f]+)/) ??
    code.match(/movl?\s+\$(0x)?([0-9a-f]+), %eax/);
  const version = abi ? parseInt(abi[2], abi[1] ? 16 : 10) : NaN;
  if (version !== ABI_VERSION) {
    fail(`${lib}: sb_abi_version returns ${version}, expected ${ABI_VERSION}`);
  }
  let checked = `${target.format}, ${exported.length} sb_* exports, ABI ${version}`;
  if (target.os === "darwin") checked += `; ${checkMachO(lib, target)}`;
  if (target.run && target.smoke) {
    const exe = `${out}/smoke-${platform}`;
    run([
      zigPath(),
      "cc",
      "-target",
      target.smoke,
      "-dynamic",
      "-O2",
      "-o",
      exe,
      `${root}/packaging/smoke.c`,
    ]);
    const line = run([...target.run, exe, lib, String(ABI_VERSION)]).trim();
    checked += `; smoke test ran${target.run.length ? ` under ${target.run[0]}` : ""}: ${
      line.split(": ").pop()
    }`;
  } else {
    checked += "; cannot run here";
  }
  return checked;
}

function zigPath(): string {
  return Deno.env.get("CARGO_ZIGBUILD_ZIG_PATH") ?? "zig";
}

/**
 * A platform package's `bun` entry. A bundle without `--compile` copies the library beside itself
 * and gives its path relative to the bundle's folder, which dlopen would take from the working
 * folder: the entry makes it absolute from the bundle's folder (`import.meta.dir` in an ES module
 * bundle; in a CommonJS one that is the folder the bundle was built from, so the main script's
 * folder comes next).
 */
function bunEntry(file: string): string {
  return `import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import path from "./${file}" with { type: "file" };

function located(file) {
  if (!file.startsWith(".")) return file;
  for (const dir of [import.meta.dir, dirname(Bun.main)]) {
    const full = resolve(dir, file);
    if (existsSync(full)) return full;
  }
  return file;
}

/** The library's path. */
export default located(path);
`;
}

/** Writes one platform package into `dir`. */
function stagePlatform(platform: PrebuiltPlatform, target: Target, lib: string, dir: string): void {
  const file = libraryFileName(target.os);
  Deno.mkdirSync(dir, { recursive: true });
  Deno.copyFileSync(lib, `${dir}/${file}`);
  const name = platformPackageName(platform);
  const pkg = {
    name,
    version: VERSION,
    description: `The ${PACKAGE_NAME} native library for ${platform}; installed by ${PACKAGE_NAME}`,
    license: "MIT",
    os: [target.os],
    cpu: [target.cpu],
    ...(target.libc ? { libc: [target.libc] } : {}),
    type: "module",
    files: [file, "bun.js", "index.cjs"],
    exports: {
      ".": { bun: "./bun.js", default: "./index.cjs" },
      [`./${file}`]: `./${file}`,
      "./package.json": "./package.json",
    },
  };
  Deno.writeTextFileSync(`${dir}/package.json`, JSON.stringify(pkg, null, 2) + "\n");
  // Bun: a file import, so that `bun build --compile` embeds the library.
  Deno.writeTextFileSync(`${dir}/bun.js`, bunEntry(file));
  Deno.writeTextFileSync(
    `${dir}/index.cjs`,
    `/** The library's path. */\nmodule.exports = { default: require("node:path").join(__dirname, "${file}") };\n`,
  );
  Deno.writeTextFileSync(
    `${dir}/README.md`,
    `# ${name}\n\nThe prebuilt native library of [${PACKAGE_NAME}](https://www.npmjs.com/package/${PACKAGE_NAME}) ` +
      `for ${platform}. Install \`${PACKAGE_NAME}\`, not this package: it depends on the one that fits.\n`,
  );
}

const NATIVE = ["-p", "shared-buffer-native", "--profile", "dist", "--quiet"];

/**
 * Builds one target. Linux: `cargo zigbuild` (zig links, against the glibc version named in the
 * target). macOS: `cargo build` with LLVM's Mach-O linker (see `packaging/ld64-cc.sh`) against
 * zig's macOS stubs, because zig's own Mach-O linker ignores rustc's exported-symbols list (every
 * Rust symbol would be exported, tripling the file) and marks the file for macOS 15 and newer.
 */
function build(target: Target, triple: string): void {
  if (target.os !== "darwin") {
    run(["cargo", "zigbuild", ...NATIVE, "--target", target.zig]);
    return;
  }
  const sdk = macosSdk();
  const host = run(["rustc", "-vV"]).match(/^host: (.+)$/m)![1];
  const sysroot = run(["rustc", "--print", "sysroot"]).trim();
  const linkerVar = `CARGO_TARGET_${triple.toUpperCase().replaceAll("-", "_")}_LINKER`;
  run(["cargo", "build", ...NATIVE, "--target", triple], {
    env: {
      [linkerVar]: `${root}/packaging/ld64-cc.sh`,
      RUST_LLD: `${sysroot}/lib/rustlib/${host}/bin/rust-lld`,
      MACOS_SDK: sdk,
      SDKROOT: sdk,
    },
  });
}

/**
 * A minimal macOS SDK for linking: zig's `libSystem.tbd`, with zig's private architecture names
 * removed (LLVM's linker rejects them) and plain arm64 listed next to arm64e.
 */
function macosSdk(): string {
  const zig = Deno.realPathSync(
    Deno.env.get("CARGO_ZIGBUILD_ZIG_PATH") ?? run(["sh", "-c", "command -v zig"]).trim(),
  );
  const tbd = Deno.readTextFileSync(`${zig.replace(/\/[^/]*$/, "")}/lib/libc/darwin/libSystem.tbd`)
    .replace(/,?\s*arm64e\.x1-(macos|maccatalyst)/g, "")
    .replaceAll("arm64e-macos", "arm64-macos, arm64e-macos");
  const sdk = `${root}/target/macos-sdk`;
  Deno.mkdirSync(`${sdk}/usr/lib`, { recursive: true });
  Deno.writeTextFileSync(`${sdk}/usr/lib/libSystem.tbd`, tbd);
  return sdk;
}

interface Packed {
  name: string;
  filename: string;
  size: number;
  unpackedSize: number;
}

function pack(dir: string): Packed {
  const json = run(["npm", "pack", "--json", "--pack-destination", out], { cwd: dir });
  const [info] = JSON.parse(json) as Packed[];
  return info;
}

function main(): void {
  const skipBuild = Deno.args.includes("--skip-build");
  checkVersions();
  try {
    Deno.removeSync(out, { recursive: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  Deno.mkdirSync(`${out}/stage`, { recursive: true });
  const rows: string[] = [];
  for (const platform of PREBUILT_PLATFORMS) {
    const target = TARGETS[platform];
    const triple = target.zig.replace(/\.\d+\.\d+$/, "");
    if (!skipBuild) {
      console.error(`pack: building ${platform} (${target.zig})`);
      build(target, triple);
    }
    const lib = `${root}/target/${triple}/dist/${libraryFileName(target.os)}`;
    const checked = checkLibrary(platform, target, lib);
    console.error(`pack: ${platform}: ${checked}`);
    const dir = `${out}/stage/${platformPackageName(platform)}`;
    stagePlatform(platform, target, lib, dir);
    const info = pack(dir);
    rows.push(
      `| ${info.name} | ${info.size} | ${info.unpackedSize} | ${Deno.statSync(lib).size} |`,
    );
  }
  const main = pack(root);
  rows.push(`| ${main.name} | ${main.size} | ${main.unpackedSize} | - |`);
  console.log(`| package ${VERSION} | packed bytes | unpacked bytes | library bytes |`);
  console.log("| --- | ---: | ---: | ---: |");
  for (const row of rows) console.log(row);
}

main();
