/**
 * Makes a keyed segment of `<tebibytes>` TiB that reserves no memory (`SHM_NORESERVE`, which
 * the library never passes), as another program can, and prints `made <shmid>`. Deno only: it
 * calls libc's `shmget` through `Deno.dlopen`.
 *
 * Usage: `segment/huge_keyed.ts <key> <tebibytes>`
 *
 * @module
 */

import { args, say } from "../lib.ts";

const [key, tebibytes] = args.map(Number);
const IPC_CREAT = 0o1000, IPC_EXCL = 0o2000, SHM_NORESERVE = 0o10000;
const libc = Deno.dlopen("libc.so.6", {
  shmget: { parameters: ["i32", "usize", "i32"], result: "i32" },
});
const id = libc.symbols.shmget(
  key | 0,
  BigInt(tebibytes) << 40n,
  IPC_CREAT | IPC_EXCL | SHM_NORESERVE | 0o600,
);
if (id < 0) throw new Error(`shmget of ${tebibytes} TiB failed`);
say(`made ${id}`);
