/**
 * Tries one thing on the channel named `<name>` and reports how it went, for the tests of the
 * errors another process sees: `open` (`Channel.open` with a 200 ms timeout), `receiver`,
 * `sender`, `send` (a sender, then one message with a 1 s timeout), or `create` (makes the
 * channel, 4096 bytes of ring, and leaves it without attaching anything).
 *
 * Prints `result {code, message}`: the error's code, or `ok`.
 *
 * Usage: `channel/try_once.ts <name> <open|receiver|sender|send|create>`
 *
 * @module
 */

import { args, lib } from "../lib.ts";
import { check, describe, report } from "./common.ts";

const [name, action] = args;
check(["open", "receiver", "sender", "send", "create"].includes(action), `bad action ${action}`);
try {
  if (action === "create") {
    lib.Channel.create({ name }, { capacity: 4096 }).close();
    report({ code: "ok", message: "created" });
  } else {
    tryOn(name, action);
  }
} catch (err) {
  report(describe(err));
}

function tryOn(name: string, action: string): void {
  using channel = lib.Channel.open({ name }, { timeoutMs: 200 });
  if (action === "receiver") channel.receiver().close();
  else if (action === "sender") channel.sender().detach();
  else if (action === "send") channel.sender().send("hello", 1000);
  report({ code: "ok", message: `${action}: capacity ${channel.capacity}` });
}
