/**
 * The list of scenarios, in the order a run takes them.
 *
 * @module
 */

import type { Scenario } from "./harness.ts";
import { attach } from "./scenarios/attach.ts";
import { throughput } from "./scenarios/throughput.ts";
import { wait } from "./scenarios/wait.ts";
import { mutex } from "./scenarios/mutex.ts";
import { channel } from "./scenarios/channel.ts";
import { hotpath } from "./scenarios/hotpath.ts";
import { ownership } from "./scenarios/ownership.ts";

/** Every scenario `make bench` runs. */
export const SCENARIOS: Scenario[] = [attach, throughput, mutex, hotpath, ownership, wait, channel];
