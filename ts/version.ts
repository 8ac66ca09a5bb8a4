/**
 * This release: the npm package name and the version, which the platform packages share.
 * `make package` and a test check them against `package.json`, `deno.json` and `Cargo.toml`.
 *
 * @module
 */

/** The npm package's name; each platform package is named `<PACKAGE_NAME>-<platform>`. */
export const PACKAGE_NAME = "shared-buffer-ipc";

/** This release's version (semver); the platform packages carry the same one. */
export const VERSION = "0.1.0";
