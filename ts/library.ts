/**
 * Where the native library is looked for, in a fixed order:
 *
 * 1. the path given to `loadLibrary(path)` (only that path);
 * 2. the environment variable `SHARED_BUFFER_LIB` (read only where permitted): when it is set,
 *    only that path too;
 * 3. the npm platform package that fits this machine (`shared-buffer-ipc-linux-x64-gnu`, ...),
 *    found by module resolution from this module, so it works from `node_modules` in Node.js,
 *    Deno and Bun, and inside a `bun build --compile` binary;
 * 4. a local build in a clone: `target/release/`, then `target/debug/`, then the package folder.
 *
 * When every candidate fails, one {@linkcode SharedMemoryError} (code `ELIBACC`) lists each place
 * tried with its reason and names the platform package that would fit.
 *
 * @module
 */

import { SharedMemoryError } from "./errors.ts";
import { ABI_VERSION } from "./ffi.ts";
import { PACKAGE_NAME, VERSION } from "./version.ts";

/**
 * The environment variable that overrides where the native library is found.
 *
 * @example
 * ```sh
 * SHARED_BUFFER_LIB=/opt/lib/libshared_buffer_native.so deno run --allow-ffi --allow-env=SHARED_BUFFER_LIB main.ts
 * ```
 */
export const LIBRARY_ENV = "SHARED_BUFFER_LIB";

/**
 * The platforms a prebuilt library is published for, as npm package suffixes: the package
 * `shared-buffer-ipc-<suffix>` holds the library for that platform.
 */
export const PREBUILT_PLATFORMS = [
  "linux-x64-gnu",
  "linux-arm64-gnu",
  "linux-x64-musl",
  "linux-arm64-musl",
  "darwin-x64",
  "darwin-arm64",
] as const;

/** One of {@linkcode PREBUILT_PLATFORMS}. */
export type PrebuiltPlatform = typeof PREBUILT_PLATFORMS[number];

/** The machine a library is wanted for. */
export interface Platform {
  /** `Deno.build.os` or `process.platform`: `"linux"`, `"darwin"`, ... */
  os: string;
  /** `Deno.build.arch` or `process.arch`: `"x86_64"`/`"x64"`, `"aarch64"`/`"arm64"`, ... */
  arch: string;
  /** The C library on Linux, when known. */
  libc?: "gnu" | "musl";
}

/** What {@linkcode processPlatform} reads from Node.js's or Bun's `process`. */
export interface ProcessLike {
  platform: string;
  arch: string;
  report?: { getReport?: () => unknown };
}

/**
 * This machine as Node.js and Bun describe it: on Linux, glibc when `process.report` names a
 * glibc version, else musl.
 */
export function processPlatform(process: ProcessLike): Platform {
  const report = process.report?.getReport?.() as
    | { header?: { glibcVersionRuntime?: string } }
    | undefined;
  return {
    os: process.platform,
    arch: process.arch,
    libc: process.platform === "linux"
      ? (report?.header?.glibcVersionRuntime ? "gnu" : "musl")
      : undefined,
  };
}

/** The library's file name on `os` (a `Deno.build.os` / `process.platform` value). */
export function libraryFileName(os: string): string {
  if (os === "darwin") return "libshared_buffer_native.dylib";
  if (os === "windows" || os === "win32") return "shared_buffer_native.dll";
  return "libshared_buffer_native.so";
}

/** The npm package holding the prebuilt library for `platform`. */
export function platformPackageName(platform: PrebuiltPlatform): string {
  return `${PACKAGE_NAME}-${platform}`;
}

/**
 * The prebuilt platforms that can serve this machine, best first: on Linux the detected C
 * library's package, then the other one (a musl library can load where glibc is missing, and
 * the reverse with a compatibility layer). Empty where nothing is prebuilt.
 */
export function platformsFor(platform: Platform): PrebuiltPlatform[] {
  const arch = platform.arch === "x86_64" || platform.arch === "x64"
    ? "x64"
    : platform.arch === "aarch64" || platform.arch === "arm64"
    ? "arm64"
    : undefined;
  if (arch === undefined) return [];
  if (platform.os === "darwin") return [`darwin-${arch}`];
  if (platform.os !== "linux") return [];
  const libcs = platform.libc === "musl" ? ["musl", "gnu"] : ["gnu", "musl"];
  return libcs.map((libc) => `linux-${arch}-${libc}` as PrebuiltPlatform);
}

/** Where to look, as each runtime's adapter sees it. */
export interface LibrarySources {
  /** The path given to `loadLibrary(path)`. */
  explicit?: string;
  /** The value of {@linkcode LIBRARY_ENV}, if set and readable. */
  fromEnv?: string;
  /** This machine. */
  platform: Platform;
  /**
   * The path of a platform package's library, found by module resolution; `undefined` or a
   * thrown error when the package is not installed.
   */
  resolvePackage: (platform: PrebuiltPlatform, file: string) => string | undefined;
  /** The folder a clone's `target/` would be in, when this module is a file on disk. */
  root?: string;
  /**
   * The file of a user's bundle (or compiled program) this code runs inside (`""` when it is
   * not known), which holds no library of its own: the error then says how a bundle finds one.
   */
  bundle?: string;
  /**
   * The first 20 bytes of a file, or undefined where it cannot be read (or may not be, without
   * a prompt): to tell a library built for another machine, which the loader reports as a
   * missing file (glibc), from one that is missing.
   */
  readHead?: (path: string) => Uint8Array | undefined;
  /**
   * Whether a `bun build --compile` program of this entry embeds the library (true: `bun.ts`'s,
   * whose platform packages are literal `require`s; false: the Node.js entry in Bun, which finds
   * them by a computed path), for the advice of the error; undefined outside Bun.
   */
  compileEmbeds?: boolean;
  /**
   * True where the runtime would not let {@linkcode LIBRARY_ENV} be read (Deno without
   * `--allow-env` for it), so that the error can say it was not read.
   */
  envUnreadable?: boolean;
}

/**
 * `open` for a runtime that asks its user before it opens a library (Deno, in a terminal, once
 * per path): after the first refusal, a path not granted yet is not opened, and fails as refused,
 * so that a user who said no is not asked again for every other place of the search. `state` is
 * the permission to open a path, queried without asking.
 */
export function askingOnce<T>(
  open: (path: string) => T,
  state: (path: string) => "granted" | "denied" | "prompt",
): (path: string) => T {
  let refused = false;
  return (path) => {
    if (refused && state(path) !== "granted") {
      throw new Error(`Requires ffi access to "${path}" (not asked again after a refusal)`);
    }
    try {
      return open(path);
    } catch (err) {
      refused ||= FFI_REFUSED.test(err instanceof Error ? err.message : String(err));
      throw err;
    }
  };
}

/** Deno's refusal to open a library without `--allow-ffi` for it. */
const FFI_REFUSED = /requires ffi access/i;

/** A path to try, and where it came from (which decides the advice when it does not fit). */
interface Candidate {
  path: string;
  from: "explicit" | "env" | "package" | "local";
  platform?: PrebuiltPlatform;
}

/** A loaded library and where it came from. */
export interface Loaded<T> {
  /** The library. */
  lib: T;
  /** The path it was loaded from. */
  path: string;
}

/**
 * Opens the first candidate that loads and has this version's ABI.
 *
 * @param sources Where to look.
 * @param open Opens one path; throws on failure.
 * @param version Reads the loaded library's ABI version.
 * @param close Closes a library that did not fit.
 * @throws {SharedMemoryError} `ELIBACC`, listing every place tried, when none fits.
 */
export function loadNativeLibrary<T>(
  sources: LibrarySources,
  open: (path: string) => T,
  version: (lib: T) => number,
  close: (lib: T) => void,
): Loaded<T> {
  const tried: string[] = [];
  if (sources.envUnreadable && sources.explicit === undefined) {
    tried.push(`  ${LIBRARY_ENV}: not read (Deno lets it be read with --allow-env=${LIBRARY_ENV})`);
  }
  const wanted = platformsFor(sources.platform);
  const file = libraryFileName(sources.platform.os);
  let packages = 0;
  for (const candidate of candidates(sources, wanted, file, tried)) {
    if (candidate.from === "package") packages++;
    let lib: T;
    try {
      lib = open(candidate.path);
    } catch (err) {
      const other = otherMachine(sources, candidate.path);
      const failure = openFailure(err, candidate.path);
      tried.push(`  ${candidate.path}: ${other ? `${other} (${failure})` : failure}`);
      continue;
    }
    let found: number;
    try {
      found = version(lib);
    } catch (err) {
      close(lib);
      tried.push(`  ${candidate.path}: not this library (${openFailure(err, candidate.path)})`);
      continue;
    }
    if (found === ABI_VERSION) return { lib, path: candidate.path };
    close(lib);
    tried.push(`  ${candidate.path}: ${abiAdvice(candidate, found)}`);
  }
  // Out of file descriptors, every open fails: the library is there, the advice would mislead.
  const outOfFiles = tried.some((line) => /Too many open files/i.test(line));
  // Node.js that loads no add-on at all (`--permission`, `--no-addons`): a library that is
  // there was refused for that, so installing one would not help.
  const noAddons = tried.some((line) => /loading addons is disabled/i.test(line));
  // Deno without `--allow-ffi` (for that path): it refuses before it looks at the file.
  const noFfi = tried.some((line) => FFI_REFUSED.test(line));
  // One path was given, and only it was tried.
  const alone = sources.explicit !== undefined || !!sources.fromEnv;
  throw new SharedMemoryError(
    `${PACKAGE_NAME} ${VERSION}: could not load the native library. Tried:\n${tried.join("\n")}\n` +
      (outOfFiles
        ? "The process has no file descriptor left to open it with (EMFILE): close some, or " +
          "raise the limit (ulimit -n), then call again."
        : noAddons
        ? "Node.js loads no native add-on in this process: under `--permission` (Node 20: " +
          "`--experimental-permission`) add " +
          "`--allow-addons`, and leave out `--no-addons`."
        : noFfi
        ? "Deno opens a native library only with `--allow-ffi` (or `--allow-ffi=<its path>`): " +
          "run with it." +
          (packages === 0 && !alone ? ` ${missingAdvice(sources, wanted)}` : "")
        : sources.explicit !== undefined
        ? "`loadLibrary(path)` tries only the path it is given: give it the path of this " +
          "release's library."
        : sources.fromEnv
        ? `When ${LIBRARY_ENV} is set, only the library it names is tried: correct it, or ` +
          "unset it to use the platform package or a local build."
        : missingAdvice(sources, wanted)),
    "ELIBACC",
    79,
  );
}

/** The candidates in lookup order; packages that do not resolve are noted in `tried`. */
function* candidates(
  sources: LibrarySources,
  wanted: PrebuiltPlatform[],
  file: string,
  tried: string[],
): Generator<Candidate> {
  // A path given to loadLibrary, or else in the variable, is the library to use: one that does
  // not load is an error, never passed over for another library found further on.
  if (sources.explicit !== undefined || sources.fromEnv) {
    yield sources.explicit !== undefined
      ? { path: sources.explicit, from: "explicit" }
      : { path: sources.fromEnv!, from: "env" };
    return;
  }
  for (const platform of wanted) {
    const name = platformPackageName(platform);
    let path: string | undefined;
    try {
      path = sources.resolvePackage(platform, file);
    } catch {
      path = undefined;
    }
    if (path === undefined) tried.push(`  ${name}/${file}: not installed`);
    else yield { path, from: "package", platform };
  }
  if (sources.root === undefined) return;
  for (const dir of ["target/release/", "target/debug/", ""]) {
    yield { path: `${sources.root}/${dir}${file}`, from: "local" };
  }
}

/** The file calls of `node:fs` that {@linkcode fileHead} uses. */
export interface FileCalls {
  openSync(path: string, flags: string): number;
  readSync(
    fd: number,
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): number;
  closeSync(fd: number): void;
}

/** The first 20 bytes of the file at `path` (fewer if it is shorter), through `fs`. */
export function fileHead(fs: FileCalls, path: string): Uint8Array {
  const head = new Uint8Array(20);
  const fd = fs.openSync(path, "r");
  try {
    return head.subarray(0, fs.readSync(fd, head, 0, head.length, 0));
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The ELF machine number (`e_machine`) and the Mach-O CPU type (`cputype`) of each machine the
 * library may be built for, by the names the runtimes give them: a file is judged only where
 * the machine it runs on is known here.
 */
const MACHINES: Record<string, { elf: number; macho?: number; name: string }> = {
  x64: { elf: 62, macho: 0x01000007, name: "x64" },
  x86_64: { elf: 62, macho: 0x01000007, name: "x64" },
  arm64: { elf: 183, macho: 0x0100000c, name: "arm64" },
  aarch64: { elf: 183, macho: 0x0100000c, name: "arm64" },
  ia32: { elf: 3, name: "x86 (32-bit)" },
  x86: { elf: 3, name: "x86 (32-bit)" },
  arm: { elf: 40, name: "arm (32-bit)" },
  riscv64: { elf: 243, name: "riscv64" },
  ppc64: { elf: 21, name: "ppc64" },
  s390x: { elf: 22, name: "s390x" },
  loong64: { elf: 258, name: "loong64" },
};

/** The name of a machine by its ELF number or Mach-O CPU type. */
function machineName(format: "ELF" | "Mach-O", number: number): string {
  const known = Object.values(MACHINES).find((m) =>
    format === "ELF" ? m.elf === number : m.macho === number
  );
  return known?.name ?? `${format === "ELF" ? "machine" : "CPU type"} ${number}`;
}

/**
 * What a file that failed to load was built for, where that is not this machine: "a library
 * built for arm64 (ELF), not this machine's x64". Undefined where it cannot be read, is not a
 * library, fits (it failed for another reason then), or this machine is not one known here.
 */
function otherMachine(sources: LibrarySources, path: string): string | undefined {
  const here = MACHINES[sources.platform.arch];
  if (here === undefined) return undefined;
  let head: Uint8Array | undefined;
  try {
    head = sources.readHead?.(path);
  } catch {
    return undefined;
  }
  if (head === undefined || head.length < 20) return undefined;
  const u32 = (at: number) =>
    (head[at] | head[at + 1] << 8 | head[at + 2] << 16 | head[at + 3] << 24) >>> 0;
  let format: "ELF" | "Mach-O";
  let number: number;
  if (u32(0) === 0x464c457f) { // "\x7fELF"; e_machine at 18 in 32- and 64-bit files alike
    format = "ELF";
    number = head[5] === 2 ? head[18] << 8 | head[19] : head[18] | head[19] << 8;
  } else if (u32(0) === 0xfeedfacf) { // a 64-bit Mach-O file, little-endian
    format = "Mach-O";
    number = u32(4);
  } else {
    return undefined;
  }
  const wantedFormat = sources.platform.os === "darwin" ? "Mach-O" : "ELF";
  const fits = format === "ELF" ? number === here.elf : number === here.macho;
  if (fits && format === wantedFormat) return undefined;
  return `a library built for ${machineName(format, number)} (${format}), not this machine's ` +
    `${here.name} (${sources.platform.os})`;
}

/** One name per machine in every runtime (Deno says x86_64 and aarch64). */
function archName(arch: string): string {
  return MACHINES[arch]?.name ?? arch;
}

/** A runtime's open error without its repeated prefixes and the path said again. */
export function openFailure(err: unknown, path: string): string {
  let message = (err instanceof Error ? err.message : String(err)).split("\n")[0];
  const prefix = "Could not open library: ";
  while (message.startsWith(prefix)) message = message.slice(prefix.length);
  const bun = `Failed to open library "${path}": `;
  if (message.startsWith(bun)) message = message.slice(bun.length);
  if (message.startsWith(`${path}: `)) message = message.slice(path.length + 2);
  return message;
}

/** What to do about a library whose ABI version is not this release's. */
function abiAdvice(candidate: Candidate, found: number): string {
  const mismatch = `ABI version ${found}, but ${PACKAGE_NAME} ${VERSION} needs ${ABI_VERSION}`;
  switch (candidate.from) {
    case "package":
      return `${mismatch}: install matching versions (\`npm install ${PACKAGE_NAME}@${VERSION}\` ` +
        `installs ${platformPackageName(candidate.platform!)}@${VERSION} with it)`;
    case "local":
      return `${mismatch}: rebuild it (\`cargo build --release\`)`;
    default:
      return `${mismatch}: use the library of the same release (from ` +
        `${PACKAGE_NAME}-<platform>@${VERSION}, or \`cargo build --release\` in a checkout of ` +
        `${VERSION})`;
  }
}

/** The closing advice of the error: which package would fit, or how to build a library. */
function missingAdvice(sources: LibrarySources, wanted: PrebuiltPlatform[]): string {
  const { platform, bundle } = sources;
  const where = `${platform.os} ${archName(platform.arch)}${
    platform.libc ? ` (${platform.libc})` : ""
  }`;
  const build = `set ${LIBRARY_ENV} to the path of a library (\`cargo build --release\` in a ` +
    `clone builds one)`;
  if (wanted.length === 0) return `No prebuilt library is published for ${where}: ${build}.`;
  const name = platformPackageName(wanted[0]);
  if (bundle === undefined) {
    return `On ${where} the library comes in ${name}, an optional dependency of ` +
      `${PACKAGE_NAME}: install ${PACKAGE_NAME} without \`--omit=optional\`, or ${build}.`;
  }
  const pkg = `${name}@${VERSION}`;
  const compiled = sources.compileEmbeds === true
    ? " A `bun build --compile` program embeds the library only if that package was installed " +
      "when it was compiled."
    : sources.compileEmbeds === false && bundle.startsWith("/$bunfs/")
    ? ` A \`bun build --compile\` program embeds the library only through ${PACKAGE_NAME}'s own ` +
      `entry for Bun (an import of "${PACKAGE_NAME}" by its name), not through this Node.js one.`
    : "";
  return `On ${where} the library comes in ${pkg}, and this program runs from a bundle` +
    `${bundle === "" ? "" : ` (${bundle})`}, which holds no library: install ${pkg} in a ` +
    `node_modules folder beside or above it, or leave ${PACKAGE_NAME} out of the bundle ` +
    `(external), or ${build}.${compiled}`;
}

/** Each runtime's entry module in a clone (the npm package picks the right one by itself). */
const ENTRIES: Record<string, string> = {
  Deno: "mod.ts",
  Bun: "bun.ts",
  "Node.js": "dist/node.js",
};

/**
 * The error for an entry module loaded by another runtime (`mod.ts` in Bun, say), naming the
 * entry that fits instead of failing on a missing global.
 */
export function wrongEntry(entry: string): SharedMemoryError {
  const g = globalThis as { Deno?: unknown; Bun?: unknown; process?: { versions?: object } };
  const runtime = g.Bun !== undefined
    ? "Bun"
    : g.Deno !== undefined
    ? "Deno"
    : g.process?.versions && "node" in g.process.versions
    ? "Node.js"
    : "this runtime";
  const owner = Object.keys(ENTRIES).find((r) => ENTRIES[r] === entry) ?? "another runtime";
  const fits = ENTRIES[runtime];
  return new SharedMemoryError(
    `${PACKAGE_NAME}: ${entry} is the entry for ${owner}, but this is ${runtime}: ` +
      (fits ? `import ${fits} instead, or ` : "") +
      `import "${PACKAGE_NAME}" (the package picks each runtime's entry)`,
    "ELIBACC",
    79,
  );
}
