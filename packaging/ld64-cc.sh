#!/bin/sh
# A `cc` for rustc's macOS links that calls LLVM's Mach-O linker (rust-lld, shipped with Rust)
# instead, against the macOS stubs that zig ships (libSystem.tbd). zig's own Mach-O linker
# ignores rustc's exported-symbols list and would export every Rust symbol; this one honours it.
# Environment: RUST_LLD (rust-lld's path), MACOS_SDK (a folder holding usr/lib/libSystem.tbd).
set -eu
set -- "$@" --end--
while [ "$1" != --end-- ]; do
  arg="$1"
  shift
  case "$arg" in
    -Wl,*) IFS=, ; for part in ${arg#-Wl,}; do set -- "$@" "$part"; done ; unset IFS ;;
    -arch) set -- "$@" -arch "$1"; shift ;;
    -isysroot) shift ;;
    -mmacosx-version-min=*) v="${arg#*=}"; set -- "$@" -platform_version macos "$v" "$v" ;;
    -dynamiclib) set -- "$@" -dylib ;;
    -nodefaultlibs | -lc | -lm | -liconv) ;;
    *) set -- "$@" "$arg" ;;
  esac
done
shift
exec "$RUST_LLD" -flavor darwin -syslibroot "$MACOS_SDK" -x "$@"
