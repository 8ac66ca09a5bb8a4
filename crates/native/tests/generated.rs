//! Files generated from the Rust source and checked in: each test renders one and fails when the
//! checked-in copy differs. `make generate` (which sets `SB_GENERATE=1`) writes them instead.

use std::fmt::Write as _;
use std::path::PathBuf;

use shared_buffer_native::SB_ABI_VERSION;
use shared_buffer_native::abi::{CONSTANTS, EXPORTS, Export};

/// Deno's formatter's line width (`deno.json`): lines that fit stay on one line.
const LINE_WIDTH: usize = 100;

/// Compares `text` with the checked-in file at `path` (relative to the repository), or writes it
/// when `SB_GENERATE` is set.
fn check_or_write(path: &str, text: &str) {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    if std::env::var_os("SB_GENERATE").is_some() {
        std::fs::write(&full, text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        return;
    }
    let current = std::fs::read_to_string(&full).unwrap_or_default();
    if current != text {
        let line = current
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| current.lines().count().min(text.lines().count()));
        panic!(
            "{path} is not what the Rust declarations generate (first difference at line {}):\n  \
             checked in: {:?}\n  generated:  {:?}\nrun `make generate` and commit the result",
            line + 1,
            current.lines().nth(line).unwrap_or("(end of file)"),
            text.lines().nth(line).unwrap_or("(end of file)"),
        );
    }
}

/// `uint32_t sb_x(int32_t a, ...)`.
fn c_signature(e: &Export) -> String {
    let params = if e.params.is_empty() {
        "void".to_string()
    } else {
        e.params
            .iter()
            .map(|p| match p.c.strip_prefix("void (*)") {
                // A function pointer's name goes inside the parentheses.
                Some(rest) => format!("void (*{}){rest}", p.name),
                None if p.c.ends_with('*') => format!("{}{}", p.c, p.name),
                None => format!("{} {}", p.c, p.name),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sep = if e.result_c.ends_with('*') { "" } else { " " };
    format!("{}{sep}{}({params})", e.result_c, e.name)
}

fn quoted(items: impl Iterator<Item = &'static str>) -> String {
    items
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One symbol's entry, on one line when it fits, as Deno's formatter would leave it.
fn entry(out: &mut String, key: &str, e: &Export, nonblocking: bool) {
    let params = quoted(e.params.iter().map(|p| p.ffi));
    let mut summary = e.doc.trim().to_string();
    // The summary continues the sentence after the signature.
    if let Some(first) = summary.get(..1) {
        summary.replace_range(..1, &first.to_ascii_lowercase());
    }
    if nonblocking {
        writeln!(
            out,
            "  /** `{}` on a thread of Deno's pool, returning a Promise (Deno only). */",
            e.name
        )
        .unwrap();
    } else {
        writeln!(out, "  /** `{}`: {summary} */", c_signature(e)).unwrap();
    }
    let fields = [
        nonblocking.then(|| format!("name: \"{}\"", e.name)),
        Some(format!("parameters: [{params}]")),
        Some(format!("result: \"{}\"", e.result_ffi)),
        nonblocking.then(|| "nonblocking: true".to_string()),
    ];
    let fields: Vec<String> = fields.into_iter().flatten().collect();
    let one_line = format!("  {key}: {{ {} }},", fields.join(", "));
    if one_line.len() <= LINE_WIDTH {
        writeln!(out, "{one_line}").unwrap();
        return;
    }
    writeln!(out, "  {key}: {{").unwrap();
    for field in fields {
        let line = format!("    {field},");
        if line.len() <= LINE_WIDTH || !field.starts_with("parameters") {
            writeln!(out, "{line}").unwrap();
        } else {
            writeln!(out, "    parameters: [").unwrap();
            for p in e.params {
                writeln!(out, "      \"{}\",", p.ffi).unwrap();
            }
            writeln!(out, "    ],").unwrap();
        }
    }
    writeln!(out, "  }},").unwrap();
}

/// `ts/ffi.ts`: the symbol table in Deno's format and the constants, from `abi.rs`.
fn ffi_ts() -> String {
    let mut out = String::new();
    out.push_str(
        "// Generated from crates/native/src/abi.rs by `make generate`. Do not edit.\n\
         \n\
         /**\n \
         * The one symbol table of the native library, in Deno's format, with the C signature of\n \
         * each function in its comment; the Bun adapter converts it (`bun/backend.ts`). Every\n \
         * function that can fail returns a negative code (`-errno` of this platform) on failure.\n \
         *\n \
         * \"usize\" is always an address passed by value (a BigInt in Deno, a number in Bun),\n \
         * checked in TypeScript to lie inside a live mapping of this library.\n \
         *\n \
         * @module\n \
         */\n\n",
    );
    out.push_str(
        "/** The ABI version these bindings were generated for; the library must report the same. */\n",
    );
    writeln!(out, "export const ABI_VERSION = {SB_ABI_VERSION};").unwrap();
    for c in CONSTANTS {
        writeln!(out, "/** {} */", c.doc.trim()).unwrap();
        writeln!(out, "export const {} = {};", c.name, c.value).unwrap();
    }
    out.push_str("\n/** Symbols of the native library. */\nexport const symbols = {\n");
    for e in EXPORTS {
        entry(&mut out, e.name, e, false);
        if let Some(alias) = e.nonblocking {
            entry(&mut out, alias, e, true);
        }
    }
    out.push_str("} as const satisfies Deno.ForeignLibraryInterface;\n");
    out.push_str(
        "\n/** The shape of the symbol table. */\nexport type Symbols = typeof symbols;\n",
    );
    out
}

#[test]
fn ts_ffi_is_current() {
    check_or_write("ts/ffi.ts", &ffi_ts());
}

#[test]
fn every_export_is_declared_once() {
    let mut names: Vec<&str> = EXPORTS
        .iter()
        .flat_map(|e| std::iter::once(e.name).chain(e.nonblocking))
        .collect();
    let all = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all, "a name is declared twice");
    assert!(names.iter().all(|n| n.starts_with("sb_")));
}

/// `ts/channel/layout.ts`: the channel layout's constants and offsets, from
/// `shared_buffer::channel::layout`.
#[test]
fn channel_layout_ts() {
    check_or_write(
        "ts/channel/layout.ts",
        &shared_buffer::channel::layout::typescript(),
    );
}
