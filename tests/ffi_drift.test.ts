/**
 * Fails when the hand-written symbol table (`ts/ffi.ts`) drifts from the native library: the
 * `sb_*` symbols the built library exports, the `extern "C"` functions in the source, their
 * parameter counts and types, and the ABI version must all agree with the table.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { repoRoot as root, test, testUnless } from "./harness.ts";
import { ABI_VERSION, symbols } from "../ts/ffi.ts";

const LIBRARY = `${root}target/release/libshared_buffer_native.so`;
const SRC_DIR = `${root}crates`;
const FFI_DIR = `${root}crates/native/src`;

type Entry = { name?: string; parameters: readonly string[]; result: string };
/** The table keyed by native symbol: an entry with `name` is another binding of that symbol
 * (Deno's `nonblocking` variant), and must agree with it. */
const entries = Object.entries(symbols as unknown as Record<string, Entry>)
  .map(([key, entry]) => [entry.name ?? key, entry] as const);
const table = Object.fromEntries(entries) as Record<string, Entry>;

function assertEquals(actual: unknown, expected: unknown, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}:\n  expected ${e}\n  got      ${a}`);
}

/** Says which names are only on one side, or nothing when the two sets are equal. */
function assertSameSet(found: string[], listed: string[], where: string): void {
  const onlyFound = found.filter((s) => !listed.includes(s)).sort();
  const onlyListed = listed.filter((s) => !found.includes(s)).sort();
  if (onlyFound.length || onlyListed.length) {
    throw new Error(
      `ts/ffi.ts symbols drifted from ${where}:\n` +
        `  in ${where} but not in the table: ${onlyFound.join(", ") || "(none)"}\n` +
        `  in the table but not in ${where}: ${onlyListed.join(", ") || "(none)"}`,
    );
  }
}

/** Every `.rs` file under `dir`. */
function rustFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = `${dir}/${entry}`;
    if (statSync(path).isDirectory()) return rustFiles(path);
    return entry.endsWith(".rs") ? [path] : [];
  });
}

/** `src` without comments (line and block) and string literals. */
function stripComments(src: string): string {
  return src
    .replace(/\/\*[\s\S]*?\*\//g, " ")
    .replace(/\/\/[^\n]*/g, " ")
    .replace(/"(?:[^"\\]|\\.)*"/g, '""');
}

/** Splits `text` at commas that are not nested in (), [] or <> (`->` is not a bracket). */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "-" && text[i + 1] === ">") {
      current += "->";
      i++;
      continue;
    }
    if (c === "(" || c === "[" || c === "<") depth++;
    if (c === ")" || c === "]" || c === ">") depth--;
    if (c === "," && depth === 0) {
      parts.push(current.trim());
      current = "";
    } else {
      current += c;
    }
  }
  if (current.trim()) parts.push(current.trim());
  return parts.filter((p) => p.length > 0);
}

interface RustFn {
  file: string;
  params: string[]; // the type of each parameter
  result: string; // the return type, "" for none
}

/**
 * Every `pub (unsafe )?extern "C" fn sb_*` under `src/` (the ABI lives in `src/ffi/`, but an
 * export elsewhere must be listed too), by name.
 */
function rustFunctions(): Map<string, RustFn> {
  const found = new Map<string, RustFn>();
  for (const file of rustFiles(SRC_DIR)) {
    // Keep the "C" of `extern "C"`: strip comments first, then match before blanking strings.
    const src = readFileSync(file, "utf8")
      .replace(/\/\*[\s\S]*?\*\//g, " ")
      .replace(/\/\/[^\n]*/g, " ");
    const head = /pub\s+(?:unsafe\s+)?extern\s+"C"\s+fn\s+(sb_\w+)\s*\(/g;
    for (const m of src.matchAll(head)) {
      // Find the parenthesis that closes the parameter list.
      let depth = 1;
      let i = m.index! + m[0].length;
      const start = i;
      for (; i < src.length && depth > 0; i++) {
        if (src[i] === "(") depth++;
        if (src[i] === ")") depth--;
      }
      const list = stripComments(src.slice(start, i - 1));
      const params = splitTopLevel(list).map((p) => p.slice(p.indexOf(":") + 1).trim());
      const rest = src.slice(i).match(/^\s*(?:->\s*([^{]+?))?\s*(?:where\b[^{]*)?\{/);
      const result = rest?.[1]?.trim() ?? "";
      const name = m[1];
      if (found.has(name)) throw new Error(`${name} is defined twice (${file})`);
      found.set(name, { file: file.slice(root.length), params, result });
    }
  }
  return found;
}

/** `pub type Name = Type;` aliases under `src/`, so that `Option<SbWakeCallback>` is understood. */
function typeAliases(): Map<string, string> {
  const aliases = new Map<string, string>();
  for (const file of rustFiles(SRC_DIR)) {
    const src = readFileSync(file, "utf8")
      .replace(/\/\*[\s\S]*?\*\//g, " ")
      .replace(/\/\/[^\n]*/g, " ");
    for (const m of src.matchAll(/\bpub(?:\([^)]*\))?\s+type\s+(\w+)\s*=\s*([^;]+);/g)) {
      aliases.set(m[1], m[2].replace(/\s+/g, " ").trim());
    }
  }
  return aliases;
}

const aliases = typeAliases();

/** The Deno FFI types a Rust parameter or result type may be declared as. */
function compatibleTypes(rust: string, depth = 0): string[] | undefined {
  const t = rust.replace(/\s+/g, " ").trim();
  const alias = aliases.get(t.replace(/^.*::/, ""));
  if (alias !== undefined && depth < 8) return compatibleTypes(alias, depth + 1);
  const option = t.match(/^Option ?< ?(.*) ?>$/);
  if (option && depth < 8) {
    const inner = compatibleTypes(option[1], depth + 1);
    // A nullable function pointer or reference crosses the ABI as a pointer.
    return inner?.includes("function") ? inner : undefined;
  }
  if (t === "" || t === "()") return ["void"];
  // An address is passed by value as "usize" where it is not a buffer (see ts/ffi.ts).
  if (/^\*(const|mut) /.test(t)) return ["pointer", "buffer", "function", "usize"];
  if (/^(unsafe )?(extern "[^"]*" )?fn\b/.test(t)) {
    return ["function", "pointer"];
  }
  const scalar: Record<string, string> = {
    u8: "u8",
    i8: "i8",
    u16: "u16",
    i16: "i16",
    u32: "u32",
    i32: "i32",
    u64: "u64",
    i64: "i64",
    usize: "usize",
    isize: "isize",
    f32: "f32",
    f64: "f64",
    bool: "bool",
    c_int: "i32",
    c_uint: "u32",
    c_char: "i8",
  };
  const bare = t.replace(/^(std::)?(ffi|os::raw|libc)::/, "").replace(/^core::ffi::/, "");
  return bare in scalar ? [scalar[bare]] : undefined;
}

const nmProbe = spawnSync("nm", ["--version"], { encoding: "utf8" });
const noNm = nmProbe.error ? `nm (binutils) is not available: ${nmProbe.error.message}` : false;

testUnless(noNm, "the library's exported sb_* symbols are exactly ts/ffi.ts's table", () => {
  if (!existsSync(LIBRARY)) {
    throw new Error(`${LIBRARY} is missing: build it with \`cargo build --release\``);
  }
  const nm = spawnSync("nm", ["-D", "--defined-only", LIBRARY], { encoding: "utf8" });
  if (nm.status !== 0) throw new Error(`nm -D failed: ${nm.stderr}`);
  const exported = nm.stdout
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length === 3 && /^[TWi]$/.test(cols[1]) && cols[2].startsWith("sb_"))
    .map((cols) => cols[2]);
  if (exported.length === 0) throw new Error(`nm found no sb_* symbols in ${LIBRARY}`);
  try {
    assertSameSet(exported, Object.keys(table), "target/release/libshared_buffer_native.so");
  } catch (err) {
    const hint = "\n  (a stale library also fails here: rebuild with `cargo build --release`)";
    throw new Error(`${(err as Error).message}${hint}`);
  }
});

test("the Rust source's pub extern \"C\" sb_* functions are exactly ts/ffi.ts's table", () => {
  const rust = rustFunctions();
  if (rust.size === 0) throw new Error(`found no extern "C" sb_* functions under ${SRC_DIR}`);
  assertSameSet([...rust.keys()], Object.keys(table), "the Rust source (src/**/*.rs)");
});

test("each table entry has the Rust function's parameter count, and compatible types", () => {
  const rust = rustFunctions();
  const problems: string[] = [];
  for (const [name, entry] of entries) {
    const fn = rust.get(name);
    if (!fn) continue; // reported by the test above
    if (fn.params.length !== entry.parameters.length) {
      problems.push(
        `${name}: ${fn.params.length} parameters in ${fn.file} (${fn.params.join(", ")}), ` +
          `${entry.parameters.length} in ts/ffi.ts (${entry.parameters.join(", ")})`,
      );
      continue;
    }
    fn.params.forEach((rustType, i) => {
      const ok = compatibleTypes(rustType);
      if (ok === undefined) {
        problems.push(`${name}: parameter ${i} has Rust type ${rustType}, unknown to this test`);
      } else if (!ok.includes(entry.parameters[i])) {
        problems.push(
          `${name}: parameter ${i} is ${rustType} in ${fn.file} but "${entry.parameters[i]}" ` +
            `in ts/ffi.ts (expected one of ${ok.join(", ")})`,
        );
      }
    });
    const okResult = compatibleTypes(fn.result);
    if (okResult === undefined) {
      problems.push(`${name}: result has Rust type ${fn.result}, unknown to this test`);
    } else if (!okResult.includes(entry.result)) {
      problems.push(
        `${name}: returns ${fn.result || "()"} in ${fn.file} but "${entry.result}" in ts/ffi.ts`,
      );
    }
  }
  if (problems.length) throw new Error(`ts/ffi.ts drifted:\n  ${problems.join("\n  ")}`);
});

test("ABI_VERSION in ts/ffi.ts equals SB_ABI_VERSION in crates/native/src/lib.rs", () => {
  const src = stripComments(readFileSync(`${FFI_DIR}/lib.rs`, "utf8"));
  const m = src.match(/pub\s+const\s+SB_ABI_VERSION\s*:\s*u32\s*=\s*(\d+)\s*;/);
  if (!m) throw new Error("no `pub const SB_ABI_VERSION: u32 = N;` in crates/native/src/lib.rs");
  assertEquals(ABI_VERSION, Number(m[1]), "ABI_VERSION (ts/ffi.ts) vs SB_ABI_VERSION (Rust)");
});
