/**
 * The harness's rule for tests of children only ({@linkcode runnerFor}): over the runners, every
 * combination of child runtimes still runs, each in exactly one runner, and a combination with a
 * Node child in the Node runners (which run twice, once per Node version). Pure: no process, no
 * segment.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runnerFor, runsIn, type Runtime, runtimes, test } from "./harness.ts";

/** Every sequence of child runtimes of 1 to `max` children (the suite's tests have at most 5). */
function combinations(max: number): Runtime[][] {
  let level: Runtime[][] = [[]];
  const all: Runtime[][] = [];
  for (let n = 1; n <= max; n++) {
    level = level.flatMap((prefix) => runtimes.map((which) => [...prefix, which]));
    all.push(...level);
  }
  return all;
}

test("every combination of child runtimes runs in exactly one runner, one of its own runtimes", () => {
  const seen = new Map<string, Runtime[]>();
  for (const runner of runtimes) {
    for (const children of combinations(6)) {
      if (!runsIn(children, runner, false)) continue;
      const key = children.join(" ");
      seen.set(key, [...(seen.get(key) ?? []), runner]);
    }
  }
  const all = combinations(6);
  assert.equal(all.length, 3 + 9 + 27 + 81 + 243 + 729);
  // The union over the runners is every combination; no combination runs in two runners.
  assert.equal(seen.size, all.length, "combinations that run somewhere");
  for (const children of all) {
    const where = seen.get(children.join(" "));
    assert.equal(where?.length, 1, `${children.join(" ")} runs in ${where}`);
    const [runner] = where!;
    assert.ok(children.includes(runner), `${children.join(" ")} runs in ${runner}, not its own`);
    // Node 20 and the newest Node each meet every runtime that a Node child meets.
    if (children.includes("node")) assert.equal(runner, "node", children.join(" "));
  }
});

test("with SB_ALL_COMBINATIONS=1 every runner runs every combination", () => {
  for (const children of combinations(3)) {
    assert.deepEqual(runtimes.filter((runner) => runsIn(children, runner, true)), [...runtimes]);
  }
});

test("each runner gets a share: Deno/Bun-only combinations go to their first child's runner", () => {
  assert.equal(runnerFor(["deno", "bun"]), "deno");
  assert.equal(runnerFor(["bun", "deno"]), "bun");
  assert.equal(runnerFor(["bun"]), "bun");
  assert.equal(runnerFor(["deno", "bun", "node", "deno"]), "node");
  assert.throws(() => runnerFor([]), /at least one child/);
});
