/**
 * Cross-process behaviour with real segments and real child processes of every runtime: the seed
 * README's example, Deno-to-Bun and Bun-to-Deno data, atomic counting from four processes, and a
 * segment's creator killed with SIGKILL (what survives, and replacing the leftover).
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  type Child,
  childrenTest,
  childrenTestUnless,
  cleanup,
  HANG_MS,
  killAll,
  lacking,
  lib,
  mix,
  repoRoot,
  runScript,
  type Runtime,
  runtimeBin,
  runtimes,
  scriptCommand,
  start,
  test,
  uniqueKey,
  uniqueName,
  within,
} from "./harness.ts";
import { expectedChecksum, fnv1a, type Id, idArgs } from "./children/segment/common.ts";
import { fileExists, sysvSegment } from "./children/segment/os.ts";

const { SharedMemory, SharedMemoryError, createSharedBuffer, detachSharedBuffer } = lib;

function assertEquals(actual: unknown, expected: unknown, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

/** The value after `prefix ` on the child's line that starts with it. */
function field(stdout: string, prefix: string): string {
  const line = stdout.split("\n").find((l) => l.startsWith(`${prefix} `));
  if (line === undefined) throw new Error(`no "${prefix}" line in:\n${stdout}`);
  return line.slice(prefix.length + 1);
}

// ---- The seed README's example ----------------------------------------------------------------

/** What the seed README says its child prints, one `String(value)` each. */
const SEED_OUTPUT = [
  "Infinity",
  "1",
  "0.5",
  "0.3333333333333333",
  "0.25",
  "0.2",
  "0.16666666666666666",
  "0.14285714285714285",
  "0.125",
  "0.1111111111111111",
];

for (const child of runtimes) {
  test(`seed README example: a ${child} child sees the parent's 1/i values`, async () => {
    const SEGMENT_ID = uniqueKey();
    const SEGMENT_ELEMENTS = 10;
    const SEGMENT_SIZE = SEGMENT_ELEMENTS * Float64Array.BYTES_PER_ELEMENT;
    try {
      const sharedBuffer = createSharedBuffer(SEGMENT_ID, SEGMENT_SIZE, true);
      const sharedArray = new Float64Array(sharedBuffer);
      for (let i = 0; i < SEGMENT_ELEMENTS; i++) sharedArray[i] = 1 / i;
      const out = await runScript(child, "seed/readme_child.ts", [
        String(SEGMENT_ID),
        String(SEGMENT_ELEMENTS),
      ]);
      assertEquals(JSON.parse(field(out, "values")), SEED_OUTPUT, `${child} child's values`);
      // The child detached its buffer and held no handle afterwards.
      assertEquals(field(out, "after-detach"), "0 0", "child's buffer length and handles");
      // The parent's mapping is untouched by the child's detach.
      assertEquals(Array.from(sharedArray, String), SEED_OUTPUT, "parent's values");
      detachSharedBuffer(sharedBuffer);
    } finally {
      cleanup({ key: SEGMENT_ID });
    }
  });
}

// ---- This README's example of two processes ----------------------------------------------------

/**
 * The README's example that starts with `import process`, as written, with the package's name
 * replaced by the path of `which`'s entry and its two names by `names`.
 */
function readmeExample(which: Runtime, names: { state: string; jobs: string }): string {
  const readme = readFileSync(`${repoRoot}README.md`, "utf8");
  const block = /```ts\n(import process from "node:process";\n[^]*?)```/.exec(readme);
  if (block === null) throw new Error("README.md has no example that starts with `import process`");
  const entry = { deno: "mod.ts", bun: "bun.ts", node: "dist/node.js" }[which];
  const code = block[1]
    .replace(
      'from "shared-buffer-ipc"',
      `from ${JSON.stringify(pathToFileURL(`${repoRoot}${entry}`).href)}`,
    )
    .replaceAll('"/state"', JSON.stringify(names.state))
    .replaceAll('"/jobs"', JSON.stringify(names.jobs));
  // Every name replaced: the example touches nothing outside this test.
  assert.doesNotMatch(code, /"\/(state|jobs)"|shared-buffer-ipc/, "README example's names");
  return code;
}

/** Whether the `node` children run parses `using`, which the example uses (Node.js 20 does not). */
const nodeParsesUsing = spawnSync(runtimeBin("node"), [
  "--input-type=module",
  "-e",
  "{ using x = null; }",
]).status === 0;

for (const [b, a] of [["deno", "bun"], ["bun", "node"], ["node", "deno"]] as const) {
  childrenTestUnless(
    (a === "node" || b === "node") && !nodeParsesUsing &&
      lacking("the node here does not parse `using`, which the README's example uses"),
    [b, a],
    `the README's example of two processes runs as written: B in ${b}, A in ${a}`,
    async () => {
      const names = { state: uniqueName("readme-state"), jobs: uniqueName("readme-jobs") };
      const dir = mkdtempSync(join(tmpdir(), "sb-readme-"));
      const children: Child[] = [];
      try {
        const command = (which: Runtime, role: string) => {
          const path = join(dir, `${role}.${which === "node" ? "mjs" : "ts"}`);
          writeFileSync(path, readmeExample(which, names));
          const bin = runtimeBin(which);
          return which === "deno"
            ? [bin, "run", "--allow-ffi", "--allow-read", "--allow-env", path, role]
            : [bin, path, role];
        };
        // Started together: either may come first, and the example holds either way.
        children.push(start(command(b, "b")), start(command(a, "a")));
        // One that fails leaves the other waiting for it for ever: it is killed then.
        const [doneB, doneA] = await within(
          Promise.all(children.map((child) =>
            child.done.then((done) => {
              if (done.code !== 0) void killAll(children);
              return done;
            })
          )),
          HANG_MS,
          "the README's example",
        );
        assert.deepEqual(
          [doneB.code, doneA.code],
          [0, 0],
          `exits:\n${doneB.stderr}\n${doneA.stderr}`,
        );
        // B printed the length of A's one message, `{"id":1}`, and ended with the stream.
        assert.equal(doneB.stdout, "8\n");
        assert.equal(doneA.stdout, "");
        // B removed both names, as the example says.
        for (const name of [names.state, names.jobs]) {
          assert.throws(
            () => SharedMemory.open({ name }).close(),
            (e) => e instanceof SharedMemoryError && e.code === "ENOENT",
            name,
          );
        }
      } finally {
        await killAll(children);
        for (const name of [names.state, names.jobs]) cleanup({ name });
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
}

// ---- One runtime writes, the other reads --------------------------------------------------------

const MiB = 1024 * 1024;

for (const [writer, reader] of [["deno", "bun"], ["bun", "deno"]] as const) {
  test(`a ${writer} process writes 1 MiB to a named segment, a ${reader} process reads it`, async () => {
    const name = uniqueName("xp-pattern");
    const seed = 0x5eed0000 + Math.floor(Math.random() * 0xffff);
    const expected = expectedChecksum(MiB, seed);
    try {
      const wrote = await runScript(writer, "segment/pattern.ts", [
        "write",
        "name",
        name,
        String(MiB),
        String(seed),
      ]);
      assertEquals(field(wrote, "wrote"), expected, `${writer} writer's checksum`);
      const read = await runScript(reader, "segment/pattern.ts", ["read", "name", name]);
      assertEquals(
        field(read, "read"),
        `${MiB} ${expected}`,
        `${reader} reader's length and checksum`,
      );
      // And this process sees the same bytes.
      using shm = SharedMemory.open({ name });
      assertEquals(fnv1a(new Uint8Array(shm.buffer)), expected, "parent's checksum");
    } finally {
      cleanup({ name });
    }
  });
}

// ---- Four processes, one atomic counter ---------------------------------------------------------

const COUNTERS = ["deno", "bun", "node", "node"] as const;

childrenTest(
  COUNTERS,
  `${mix(COUNTERS)} processes Atomics.add one Int32 counter: the total is exact`,
  async () => {
    const key = uniqueKey();
    const n = 1_000_000;
    const kinds = COUNTERS;
    try {
      using shm = SharedMemory.create({ key }, 4096);
      const i32 = new Int32Array(shm.buffer);
      const children = kinds.map((which) =>
        start(scriptCommand(which, "segment/count_atomically.ts", [String(key), String(n)]))
      );
      try {
        await Promise.all(children.map((c) => c.line("ready")));
        // Every child has the segment mapped and is spinning; release them all at once.
        Atomics.store(i32, 1, 1);
        const results = await Promise.all(children.map((c) => c.done));
        results.forEach((r, i) => {
          if (r.code !== 0 || !r.stdout.includes("done")) {
            throw new Error(`${kinds[i]} child exited with ${r.code ?? r.signal}:\n${r.stderr}`);
          }
        });
      } finally {
        for (const c of children) c.kill("SIGKILL");
      }
      assertEquals(Atomics.load(i32, 0), kinds.length * n, "counter");
    } finally {
      cleanup({ key });
    }
  },
);

// ---- A segment's creator killed with SIGKILL ---------------------------------------------------

/**
 * A child that created a segment (`segment/create_and_hang.ts`: filled with a seeded pattern,
 * still mapped) is SIGKILLed. The segment outlives it, detached by the kernel, and then this
 * process either opens it (the data survived) or creates at its id (`EEXIST` with a hint, and
 * `{ replace: true }` makes it afresh: a leftover of a crashed run).
 */
interface CreatorKilled {
  kind: "keyed" | "named";
  then: "open" | "create";
}

/** Every killed creator, each run with a child of every runtime. */
const CREATOR_KILLED: CreatorKilled[] = (["keyed", "named"] as const).flatMap((kind) =>
  (["open", "create"] as const).map((then) => ({ kind, then }))
);

function creatorKilledName(c: CreatorKilled, child: Runtime): string {
  return c.then === "open"
    ? `a ${child} child SIGKILLed with a ${c.kind} segment mapped: data and segment survive`
    : `a ${c.kind} segment left by a killed ${child} child: create is EEXIST with a hint; { replace: true } makes it afresh`;
}

/** Runs one {@linkcode CreatorKilled} case with a `child` creator. */
async function creatorKilled(c: CreatorKilled, child: Runtime): Promise<void> {
  const id: Id = c.kind === "keyed" ? { key: uniqueKey() } : { name: uniqueName("xp-kill") };
  const size = 256 * 1024;
  const seed = 0x0dead000 + Math.floor(Math.random() * 0xfff);
  const expected = expectedChecksum(size, seed);
  try {
    const proc = start(
      scriptCommand(child, "segment/create_and_hang.ts", [
        ...idArgs(id),
        String(size),
        String(seed),
      ]),
    );
    let ready: string;
    try {
      ready = await within(proc.line("ready"), HANG_MS, "the child to create its segment");
    } finally {
      proc.kill("SIGKILL");
    }
    const result = await proc.done;
    assertEquals(ready, `ready true ${expected}`, "child's ready line");
    assertEquals([result.code, result.signal], [null, "SIGKILL"], "child's exit");

    // The segment outlives its creator, and the kernel detached the dead process.
    if ("key" in id) assertEquals(sysvSegment(id.key)?.nattch, 0, "nattch after the kill");
    else assertEquals(fileExists(`/dev/shm${id.name}`), true, `/dev/shm${id.name} exists`);

    if (c.then === "open") {
      using shm = SharedMemory.open(id);
      assertEquals(shm.created, false, "created");
      assertEquals(shm.byteLength, size, "byteLength");
      assertEquals(fnv1a(new Uint8Array(shm.buffer)), expected, "checksum after the kill");
    } else {
      assert.throws(() => SharedMemory.create(id, 64), (e: unknown) => {
        assert.ok(e instanceof SharedMemoryError, `not a SharedMemoryError: ${e}`);
        assert.equal(e.code, "EEXIST", e.message);
        assert.match(e.message, /pass \{ replace: true \}/);
        return true;
      });
      using fresh = SharedMemory.create(id, 64, { replace: true });
      assertEquals(fresh.created, true, "created");
      assertEquals(fresh.byteLength, 64, "byteLength");
      assertEquals([...new Uint8Array(fresh.buffer)], new Array(64).fill(0), "a fresh segment");
      assert.throws(
        () => SharedMemory.openOrCreate(id, 64, { replace: true } as never),
        TypeError,
      );
    }
  } finally {
    cleanup(id);
  }
}

// A restart: the new process replaces the segment while the old one still runs; the old one's
// clean exit removes its own segment's key or name only, never the new one's, whether it closed
// the segment before (`closed`) or not.
for (const kind of ["keyed", "named"] as const) {
  for (const child of runtimes) {
    test(
      `a ${kind} segment a ${child} child replaced: unlink() on the old one, open or closed, is ENOENT and leaves the new one's ${
        kind === "keyed" ? "key" : "name"
      }`,
      async () => {
        const id: Id = kind === "keyed" ? { key: uniqueKey() } : { name: uniqueName("xp-restart") };
        try {
          using old = SharedMemory.create(id, 64);
          using closed = SharedMemory.open(id);
          closed.close();
          const r = await start(
            scriptCommand(child, "segment/create.ts", [...idArgs(id), "128", "600", "replace"]),
          ).done;
          assertEquals(
            [r.code, r.stdout.trim()],
            [0, "created 128"],
            `the ${child} child: ${r.stderr}`,
          );
          for (const which of [closed, old]) {
            assert.throws(() => which.unlink(), (e: unknown) => {
              assert.ok(e instanceof SharedMemoryError, `not a SharedMemoryError: ${e}`);
              assert.equal(e.code, "ENOENT", e.message);
              assert.match(e.message, /no longer names this segment/);
              return true;
            });
          }
          using fresh = SharedMemory.open(id);
          assertEquals(fresh.byteLength, 128, "the new segment, still under its id");
          fresh.unlink();
          assert.throws(() => SharedMemory.open(id), (e: unknown) => {
            assert.ok(e instanceof SharedMemoryError && e.code === "ENOENT", String(e));
            return true;
          });
          // Removed by this object itself: the message says so, not that another process did.
          assert.throws(
            () => fresh.unlink(),
            /: this SharedMemory removed it already, in an earlier unlink\(\)/,
            "removed already",
          );
        } finally {
          cleanup(id);
        }
      },
    );
  }
}

// This process opens or creates the segment after the death: every runner runs them all.
for (const c of CREATOR_KILLED) {
  for (const child of runtimes) test(creatorKilledName(c, child), () => creatorKilled(c, child));
}
