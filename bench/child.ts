/**
 * The entry point of every benchmark child process: `child.ts <scenario> <role> <json>` runs one
 * role of one scenario in whichever runtime started it and prints what the role returns as JSON.
 *
 * @module
 */

import process from "node:process";
import { SCENARIOS } from "./scenarios.ts";

const [name, role, args] = process.argv.slice(2);
const scenario = SCENARIOS.find((s) => s.name === name);
const run = scenario?.children[role];
if (!run) throw new Error(`no role ${role} in scenario ${name}`);
const out = await run(JSON.parse(args ?? "{}"));
if (out !== undefined) console.log(JSON.stringify(out));
// A stdin reader, a socket or an IPC channel would keep the process alive.
process.exit(0);
