/**
 * Helpers for the `cx_*` child scripts of `channel_cross.test.ts`: error codes and the start
 * signal of a control segment (and, re-exported, the common ones of `lib.ts`).
 *
 * @module
 */

import { check, lib, pid, say } from "../lib.ts";

export { check, pid, report, sleepSync } from "../lib.ts";
import { CTL_GO, CTL_READY } from "./messages.ts";

/** A caught error as `{code, message}`; `code` is the SharedMemoryError code or the class name. */
export function describe(err: unknown): { code: string; message: string } {
  if (err instanceof lib.SharedMemoryError) return { code: err.code, message: err.message };
  if (err instanceof Error) return { code: err.name, message: err.message };
  return { code: "thrown", message: String(err) };
}

/**
 * Keeps this process alive until it is killed (the parent kills it), and `held` reachable: an
 * endpoint nothing refers to any more is collected with its channel, which marks its place gone.
 */
export function stayAlive(...held: unknown[]): void {
  setTimeout(() => held, 120_000);
}

/**
 * With a control segment named `ctl`: adds 1 to its ready count, prints `ready <pid>` and waits
 * (at most 20 s) for its start flag. Without: prints `ready <pid>`.
 */
export function readyThenGo(ctl: string | undefined): void {
  if (ctl === undefined || ctl === "") {
    say(`ready ${pid}`);
    return;
  }
  const shm = lib.SharedMemory.open({ name: ctl });
  const i32 = new Int32Array(shm.buffer, 0, 2);
  Atomics.add(i32, CTL_READY, 1);
  say(`ready ${pid}`);
  const until = performance.now() + 20_000;
  while (Atomics.load(i32, CTL_GO) === 0) {
    check(performance.now() < until, "no start signal within 20 s");
    lib.wait(i32, CTL_GO, 0, 1000);
  }
  shm.close();
}
