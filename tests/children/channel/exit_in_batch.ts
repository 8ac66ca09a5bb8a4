/**
 * Takes the receiver of the channel named `<name>` and receives with `recvMany`; inside the
 * callback of the `<exitAt>`th message it prints what it was handed (the first byte of each
 * message, in order) and exits at once, without returning from the callback.
 *
 * Prints `result {code: "ok", seen}` before it exits.
 *
 * Usage: `channel/exit_in_batch.ts <name> <exitAt>`
 *
 * @module
 */

import process from "node:process";
import { args, lib } from "../lib.ts";
import { check, report } from "./common.ts";

const [name, at] = args;
const exitAt = Number(at);
check(Number.isInteger(exitAt) && exitAt >= 1, `bad exitAt ${at}`);
const channel = lib.Channel.open({ name }, { timeoutMs: 5000 });
const rx = channel.receiver();
const seen: number[] = [];
for (;;) {
  rx.recvMany((message) => {
    seen.push(message[0]);
    if (seen.length === exitAt) {
      report({ code: "ok", seen });
      process.exit(0);
    }
  }, 5000);
}
