/**
 * Attaches to the channel named `<name>` as `<role>` (a `sender` sends one byte, 42, first),
 * keeps the channel and the endpoint reachable to the end (module scope, and a global), prints
 * `ready <pid>`, and ends without closing them, as `<ending>` says: `end` (the program runs
 * out), `exit` (`process.exit(0)`, or `Deno.exit(0)` in Deno) or `throw` (an uncaught error).
 * Its place must then hold its pid, which dies with it: peers report a dead process, not an
 * endpoint gone without `close()` while its process lives on (which the runtime's teardown, or
 * its finalization of the buffers at the end, used to mark).
 *
 * Usage: `channel/hold_and_end.ts <name> <sender|receiver> <end|exit|throw>`
 *
 * @module
 */

import process from "node:process";
import { args, check, lib, pid, runtime, say } from "../lib.ts";

const [name, role, ending] = args;
check(["sender", "receiver"].includes(role), `bad role ${role}`);
check(["end", "exit", "throw"].includes(ending), `bad ending ${ending}`);
const channel = lib.Channel.open({ name });
const endpoint = role === "sender" ? channel.sender() : channel.receiver();
if (endpoint instanceof lib.ChannelSender) endpoint.send(new Uint8Array([42]));
(globalThis as Record<string, unknown>).held = [channel, endpoint];
say(`ready ${pid}`);
if (ending === "exit") {
  if (runtime === "deno") Deno.exit(0);
  process.exit(0);
}
if (ending === "throw") throw new Error("the end, uncaught");
