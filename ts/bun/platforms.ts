/**
 * The prebuilt library of each npm platform package, for Bun. Each entry is a literal `require`
 * of one package, so that `bun build --compile` resolves the installed ones at build time and
 * embeds their library: each package's `bun` entry imports its library
 * `with { type: "file" }`, which gives a real path when run from `node_modules` and a path inside
 * the executable when compiled. A package that is not installed throws, and is reported as such.
 *
 * @module
 */

import type { PrebuiltPlatform } from "../library.ts";

declare const require: (id: string) => { default: string };

/** The library path of each platform package, by its platform suffix. */
export const PLATFORM_LIBRARIES: Record<PrebuiltPlatform, () => string> = {
  "linux-x64-gnu": () => require("shared-buffer-ipc-linux-x64-gnu").default,
  "linux-arm64-gnu": () => require("shared-buffer-ipc-linux-arm64-gnu").default,
  "linux-x64-musl": () => require("shared-buffer-ipc-linux-x64-musl").default,
  "linux-arm64-musl": () => require("shared-buffer-ipc-linux-arm64-musl").default,
  "darwin-x64": () => require("shared-buffer-ipc-darwin-x64").default,
  "darwin-arm64": () => require("shared-buffer-ipc-darwin-arm64").default,
};
