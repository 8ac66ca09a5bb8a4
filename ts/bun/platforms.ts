/**
 * The prebuilt library of each npm platform package, for Bun. Each entry is a literal `require`
 * of one package, so that `bun build --compile` resolves the installed ones at build time and
 * embeds their library: each package's `bun` entry imports its library
 * `with { type: "file" }`, which gives a real path when run from `node_modules` and a path inside
 * the executable when compiled. Each `require` sits in a `try` block, which is what lets
 * `bun build` leave the packages of other platforms unresolved; one not installed gives `undefined`.
 *
 * @module
 */

import type { PrebuiltPlatform } from "../library.ts";

declare const require: (id: string) => { default: string };

/** The library path of each platform package, by its platform suffix. */
export const PLATFORM_LIBRARIES: Record<PrebuiltPlatform, () => string | undefined> = {
  "linux-x64-gnu": () => {
    try {
      return require("shared-buffer-ipc-linux-x64-gnu").default;
    } catch {
      return undefined;
    }
  },
  "linux-arm64-gnu": () => {
    try {
      return require("shared-buffer-ipc-linux-arm64-gnu").default;
    } catch {
      return undefined;
    }
  },
  "linux-x64-musl": () => {
    try {
      return require("shared-buffer-ipc-linux-x64-musl").default;
    } catch {
      return undefined;
    }
  },
  "linux-arm64-musl": () => {
    try {
      return require("shared-buffer-ipc-linux-arm64-musl").default;
    } catch {
      return undefined;
    }
  },
  "darwin-x64": () => {
    try {
      return require("shared-buffer-ipc-darwin-x64").default;
    } catch {
      return undefined;
    }
  },
  "darwin-arm64": () => {
    try {
      return require("shared-buffer-ipc-darwin-arm64").default;
    } catch {
      return undefined;
    }
  },
};
