/**
 * Sends 64-byte messages as producer `<producer>` on the channel named `<name>` with `send`
 * until a send fails (the receiver closes meanwhile), then tries once more through each way of
 * sending (`send`, `trySend`, `sendMany`, `sendAsync`, `reserve`): each must fail too.
 *
 * Message `seq` holds the producer in byte 0 and `seq` (u32, little-endian) in bytes 4..8.
 * Waits for the control segment `<ctl>`'s start flag after attaching. Prints `ready <pid>`, then
 * `result {producer, sent, first, later}`: how many sends succeeded, the first error (`code`
 * and `message`), and the errors of the later tries, in the order above (`ok` if one succeeded).
 *
 * Usage: `channel/send_until_closed.ts <name> <producer> <ctl>`
 *
 * @module
 */

import { args, lib } from "../lib.ts";
import { check, describe, readyThenGo, report } from "./common.ts";

const [name, producerArg, ctl] = args;
const producer = Number(producerArg);
/** A bound on the loop: the receiver closes long before (it counts the messages it got). */
const MAX_SENDS = 50_000_000;

const channel = lib.Channel.open({ name });
const tx = channel.sender({ peerCheckMs: 50 });
readyThenGo(ctl);

const message = new Uint8Array(64);
const view = new DataView(message.buffer);
message[0] = producer;
let sent = 0;
let first: { code: string; message: string } | undefined;
for (; sent < MAX_SENDS; sent++) {
  view.setUint32(4, sent, true);
  try {
    tx.send(message, 20_000);
  } catch (err) {
    first = describe(err);
    break;
  }
}
check(first !== undefined, `${MAX_SENDS} sends and the receiver never closed`);

const later: { code: string; message: string }[] = [];
const attempt = async (send: () => unknown) => {
  try {
    await send();
    later.push({ code: "ok", message: "" });
  } catch (err) {
    later.push(describe(err));
  }
};
await attempt(() => tx.send(message, 1000));
await attempt(() => tx.trySend(message));
await attempt(() => tx.sendMany([message, message], 1000));
await attempt(() => tx.sendAsync(message, 1000));
await attempt(() => tx.reserve(8, 1000));
tx.detach();
channel.close();
report({ producer, sent, first, later });
