/**
 * A sender for the test of a peer that frees a live sender's slot (`channel_cross.test.ts`):
 * attaches to the channel named `<name>` (of one sender or many), prints `ready <pid>`, waits for
 * the start flag of the control segment `<ctl>`, then sends a message of three and a half records
 * (sent in fragments) and one of 16 bytes, every byte `<fill>`, each with a 5 s timeout, and
 * detaches (with one sender: closes). Prints `result {fragmented, whole}`: how each send went,
 * `ok` or the error's code.
 *
 * Usage: `channel/slot_taken.ts <name> <ctl> <fill>`
 *
 * @module
 */

import { args, lib } from "../lib.ts";
import { describe, readyThenGo, report } from "./common.ts";

const [name, ctl, fillArg] = args;
using channel = lib.Channel.open({ name });
const tx = channel.sender();
readyThenGo(ctl);
const fill = Number(fillArg);
const outcome = (message: Uint8Array): string => {
  try {
    tx.send(message, 5000);
    return "ok";
  } catch (err) {
    return describe(err).code;
  }
};
const fragmented = outcome(new Uint8Array(tx.maxRecordBytes * 3.5).fill(fill));
const whole = outcome(new Uint8Array(16).fill(fill));
tx.detach();
report({ fragmented, whole });
