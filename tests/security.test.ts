/**
 * Permissions: a segment made with the default mode (0o600) is closed to other users, one made
 * with 0o666 is open to them, and the mode on disk is exactly what was asked for whatever the
 * umask. The other user is uid/gid 65534 (a child started through `setpriv`), so the
 * cross-user tests need root.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  cpSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import {
  cleanup,
  type Done,
  isRoot,
  lacking,
  lib,
  type Missing,
  repoRoot,
  type Runtime,
  runtimes,
  scriptCommand,
  start,
  testUnless,
  uniqueKey,
  uniqueName,
} from "./harness.ts";
import { type Id, idArgs } from "./children/segment/common.ts";
import { fileMode, sysvKeyOf, sysvSegment, whyNoOsView } from "./children/segment/os.ts";

const { SharedMemory, SharedMemoryError, createSharedBuffer, detachSharedBuffer } = lib;
const NOBODY = 65534;
const SETPRIV = ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--"];

function assertEquals(actual: unknown, expected: unknown, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

/** Why the tests that switch user cannot run here, or false if they can. */
function whyNoOtherUser(): Missing | string | false {
  if (!isRoot) return lacking("needs root to run a child as uid 65534");
  const probe = spawnSync(SETPRIV[0], [...SETPRIV.slice(1), "true"], { encoding: "utf8" });
  if (probe.error) return `setpriv is not available (${probe.error.message})`;
  if (probe.status !== 0) return `setpriv fails here: ${probe.stderr.trim()}`;
  return false;
}

const noOtherUser = whyNoOtherUser();
const noDiskModes = process.platform === "linux"
  ? whyNoOsView()
  : lacking("reads /dev/shm and /proc/sysvipc/shm, which only Linux has");

/** What `segment/open.ts` printed. */
interface OpenResult {
  ok: boolean;
  byteLength?: number;
  marker?: number;
  error?: string;
  isSharedMemoryError?: boolean;
  code?: string;
  message?: string;
}

/** The checkout's root folder (the same when this file runs built, from `dist/tests`). */
const ROOT = repoRoot;

/**
 * Copies what a child needs (the library's TypeScript, the child scripts, Node's built
 * JavaScript and the native library) into `dir`, readable by every user: the checkout itself may
 * not be (a clone in a `0700` home).
 */
function readableCopy(dir: string): void {
  const node = ["package.json", "dist/node.js", "dist/ts", "dist/tests/children"];
  for (
    const path of ["mod.ts", "bun.ts", "deno.json", "ts", "tests/children", ...node]
  ) {
    cpSync(`${ROOT}${path}`, `${dir}/${path}`, { recursive: true });
  }
  mkdirSync(`${dir}/target/release`, { recursive: true });
  const lib = "target/release/libshared_buffer_native.so";
  cpSync(`${ROOT}${lib}`, `${dir}/${lib}`);
  spawnSync("chmod", ["-R", "a+rX", dir]);
}

/**
 * `bin`, or a link or copy in `dir` that uid 65534 can run when `bin` lies inside the checkout (the
 * pinned runtimes in `.tools/`), which that user may not be able to enter.
 */
function runnableBy65534(bin: string, dir: string): string {
  if (!bin.startsWith(ROOT)) return bin;
  const target = realpathSync(bin);
  const copy = `${dir}/${target.slice(target.lastIndexOf("/") + 1)}`;
  try {
    linkSync(target, copy);
  } catch {
    cpSync(target, copy); // another file system
  }
  return copy;
}

/** Runs a child script in `which` as uid/gid 65534, from a copy readable by that user. */
async function runAsNobody(which: Runtime, script: string, args: string[]): Promise<Done> {
  const home = mkdtempSync(`${tmpdir()}/sb-xp-nobody-`);
  try {
    chmodSync(home, 0o777);
    const tree = `${home}/pkg`;
    readableCopy(tree);
    const [bin, ...rest] = scriptCommand(which, script, args);
    const command = [
      runnableBy65534(bin, home),
      ...rest.map((part) => part.startsWith(ROOT) ? `${tree}/${part.slice(ROOT.length)}` : part),
    ];
    return await start([...SETPRIV, ...command], {
      HOME: home,
      TMPDIR: home,
      DENO_DIR: `${home}/deno`,
      XDG_CACHE_HOME: `${home}/cache`,
      BUN_INSTALL_CACHE_DIR: `${home}/bun`,
    }).done;
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/** Runs `segment/open.ts` in `which` as uid/gid 65534. */
async function openAsNobody(which: Runtime, id: Id, reply: number): Promise<OpenResult> {
  const r = await runAsNobody(which, "segment/open.ts", [...idArgs(id), String(reply)]);
  const line = r.stdout.split("\n").find((l) => l.startsWith("result "));
  if (r.code !== 0 || line === undefined) {
    throw new Error(`${which} child as ${NOBODY} exited with ${r.code ?? r.signal}:\n${r.stderr}`);
  }
  return JSON.parse(line.slice("result ".length));
}

function freshId(kind: "keyed" | "named"): Id {
  return kind === "keyed" ? { key: uniqueKey() } : { name: uniqueName("xp-sec") };
}

// ---- Another user ----------------------------------------------------------------------------

for (const which of runtimes) {
  for (const kind of ["keyed", "named"] as const) {
    testUnless(
      noOtherUser,
      `default mode 0o600: a ${which} child running as uid ${NOBODY} gets EACCES on a ${kind} segment`,
      async () => {
        const id = freshId(kind);
        try {
          using shm = SharedMemory.create(id, 4096);
          Atomics.store(new Int32Array(shm.buffer), 0, 0x1234567);
          const result = await openAsNobody(which, id, 0x7654321);
          assertEquals(
            [result.ok, result.error, result.isSharedMemoryError, result.code],
            [false, "SharedMemoryError", true, "EACCES"],
            "open as another user",
          );
          // Nothing reached the segment.
          assertEquals(Atomics.load(new Int32Array(shm.buffer), 1), 0, "reply slot");
        } finally {
          cleanup(id);
        }
      },
    );

    testUnless(
      noOtherUser,
      `control, mode 0o666: a ${which} child running as uid ${NOBODY} opens a ${kind} segment and writes to it`,
      async () => {
        const id = freshId(kind);
        try {
          using shm = SharedMemory.create(id, 4096, { mode: 0o666 });
          const i32 = new Int32Array(shm.buffer);
          Atomics.store(i32, 0, 0x1234567);
          const result = await openAsNobody(which, id, 0x7654321);
          assertEquals(
            result,
            { ok: true, byteLength: 4096, marker: 0x1234567 },
            "open as another user",
          );
          assertEquals(Atomics.load(i32, 1), 0x7654321, "what the other user wrote");
        } finally {
          cleanup(id);
        }
      },
    );
  }
}

// ---- Modes on disk -------------------------------------------------------------------------------

/** Creates `id` from a `which` child that runs under `umask`; `mode` undefined means default. */
async function createUnderUmask(
  which: Runtime,
  umask: string,
  id: Id,
  mode?: string,
): Promise<void> {
  const args = [...idArgs(id), "4096", ...(mode === undefined ? [] : [mode])];
  const r = await start([
    "sh",
    "-c",
    `umask ${umask} && exec "$@"`,
    "sh",
    ...scriptCommand(which, "segment/create.ts", args),
  ]).done;
  if (r.code !== 0 || !r.stdout.includes("created 4096")) {
    throw new Error(`${which} child exited with ${r.code ?? r.signal}:\n${r.stderr}`);
  }
}

for (const which of runtimes) {
  testUnless(
    noDiskModes,
    `a ${which} child under umask 000 creates with the default mode: /dev/shm file is 0o600, keyed perms 600`,
    async () => {
      const named = { name: uniqueName("xp-mode") };
      const keyed = { key: uniqueKey() };
      try {
        await createUnderUmask(which, "000", named);
        await createUnderUmask(which, "000", keyed);
        assertEquals(fileMode(`/dev/shm${named.name}`), "600", `mode of /dev/shm${named.name}`);
        assertEquals(
          sysvSegment(keyed.key)?.perms,
          "600",
          `perms of key 0x${keyed.key.toString(16)}`,
        );
      } finally {
        cleanup(named);
        cleanup(keyed);
      }
    },
  );

  testUnless(
    noDiskModes,
    `a ${which} child under umask 077 creates with mode 0o666: the umask does not narrow it`,
    async () => {
      const named = { name: uniqueName("xp-mode") };
      const keyed = { key: uniqueKey() };
      try {
        await createUnderUmask(which, "077", named, "666");
        await createUnderUmask(which, "077", keyed, "666");
        assertEquals(fileMode(`/dev/shm${named.name}`), "666", `mode of /dev/shm${named.name}`);
        assertEquals(
          sysvSegment(keyed.key)?.perms,
          "666",
          `perms of key 0x${keyed.key.toString(16)}`,
        );
      } finally {
        cleanup(named);
        cleanup(keyed);
      }
    },
  );
}

// ---- Segments another user made -------------------------------------------------------------

/** Puts a zero-filled file of `bytes` at `path` (a name in /dev/shm), with `mode`, owned by `uid`. */
function plantFile(path: string, bytes: number, mode: number, uid: number): void {
  writeFileSync(path, new Uint8Array(bytes));
  chmodSync(path, mode);
  chownSync(path, uid, uid);
}

for (const which of runtimes) {
  testUnless(
    noOtherUser,
    `a ${which} child running as uid ${NOBODY} replaces a leftover of its own that no one may open (mode 0o400)`,
    async () => {
      const id = { name: uniqueName("xp-sec") };
      const path = `/dev/shm${id.name}`;
      try {
        plantFile(path, 64, 0o400, NOBODY);
        const r = await runAsNobody(which, "segment/create.ts", [
          ...idArgs(id),
          "4096",
          "600",
          "replace",
        ]);
        if (r.code !== 0 || !r.stdout.includes("created 4096")) {
          throw new Error(
            `${which} child as ${NOBODY} exited with ${r.code ?? r.signal}:\n${r.stderr}`,
          );
        }
        const made = statSync(path);
        assertEquals([made.size, made.uid, made.mode & 0o777], [4096, NOBODY, 0o600], "new file");
      } finally {
        rmSync(path, { force: true });
      }
    },
  );
}

for (const which of runtimes) {
  testUnless(
    noOtherUser,
    `a ${which} child running as uid ${NOBODY} that may not remove another user's name gets a replace refused as such, and the name stays`,
    async () => {
      const id = { name: uniqueName("xp-sec") };
      const path = `/dev/shm${id.name}`;
      try {
        plantFile(path, 4096, 0o666, 4242);
        const r = await runAsNobody(which, "segment/create.ts", [
          ...idArgs(id),
          "4096",
          "600",
          "replace",
          "4242",
        ]);
        // The sticky /dev/shm lets only a file's owner (and root) remove it, whatever its mode.
        if (r.code === 0 || !/may not remove the segment under this id/.test(r.stderr)) {
          throw new Error(
            `${which} child as ${NOBODY} exited with ${r.code ?? r.signal}:\n${r.stderr}`,
          );
        }
        const kept = statSync(path);
        assertEquals([kept.size, kept.uid], [4096, 4242], "the name and its file");
      } finally {
        rmSync(path, { force: true });
      }
    },
  );
}

for (const which of runtimes) {
  testUnless(
    noOtherUser,
    `a ${which} child running as uid ${NOBODY} that may not remove another user's segment gets an unlink refused as such (a name and a key), and the segment stays`,
    async () => {
      const named = { name: uniqueName("xp-sec") };
      const keyed = { key: uniqueKey() };
      const path = `/dev/shm${named.name}`;
      try {
        // Open to every user (mode 0o666), yet only their owners (and a key's creator, and root)
        // may remove them: the sticky /dev/shm, and IPC_RMID's rule.
        plantFile(path, 4096, 0o666, 4242);
        SharedMemory.create(keyed, 4096, { mode: 0o666 }).close();
        for (const id of [named, keyed]) {
          const r = await runAsNobody(which, "segment/unlink.ts", idArgs(id));
          if (
            r.code === 0 ||
            !/\.unlink of .*: permission denied: this user may not remove it \(only its owner, a key's creator or root may\) \((EPERM|EACCES)\)/
              .test(r.stderr)
          ) {
            throw new Error(
              `${which} child as ${NOBODY}, unlink of ${JSON.stringify(id)}: exited with ${
                r.code ?? r.signal
              }:\n${r.stderr}`,
            );
          }
        }
        assertEquals(statSync(path).uid, 4242, "the name's file");
        SharedMemory.open(keyed).close(); // the key still names its segment
      } finally {
        rmSync(path, { force: true });
        cleanup(keyed);
      }
    },
  );
}

for (const which of runtimes) {
  testUnless(
    noOtherUser,
    `a ${which} child running as uid ${NOBODY} refuses a name that another user hard-linked to its shared segment (EFTYPE), and opens the segment at its own name once the link is gone`,
    async () => {
      const shared = { name: uniqueName("xp-shared") };
      const victim = { name: uniqueName("xp-linked") };
      const [sharedPath, victimPath] = [`/dev/shm${shared.name}`, `/dev/shm${victim.name}`];
      try {
        // uid 65534's segment, open to every user (mode 0o666): what a program shares.
        plantFile(sharedPath, 4096, 0o666, NOBODY);
        // A third user may link it (the kernel's protected_hardlinks lets a user link a file it
        // may read and write) at the name that uid 65534 opens next.
        const ln = spawnSync("setpriv", [
          "--reuid=4242",
          "--regid=4242",
          "--clear-groups",
          "--",
          "ln",
          sharedPath,
          victimPath,
        ], { encoding: "utf8" });
        if (ln.status !== 0) throw new Error(`ln as uid 4242: ${ln.stderr}`);
        const refused = await openAsNobody(which, victim, 1);
        assertEquals(
          [refused.ok, refused.code, /hard links/.test(refused.message ?? "")],
          [false, "EFTYPE", true],
          "open of the linked name",
        );
        rmSync(victimPath);
        const own = await openAsNobody(which, shared, 1);
        assertEquals([own.ok, own.byteLength], [true, 4096], "open of the segment's own name");
      } finally {
        rmSync(sharedPath, { force: true });
        rmSync(victimPath, { force: true });
      }
    },
  );
}

/** A third user: neither this process's (root) nor the child's (65534). */
const SQUATTER = 4242;

/**
 * What another user left where a uid 65534 child opens: a file of its own whose mode keeps the
 * child out, a FIFO, a keyed segment the child may not even look up. Each is refused for what it
 * is (the open's `EACCES` said only that access was denied, and advised asking the owner).
 */
const SQUATTED = [
  {
    what: `a name uid ${SQUATTER} holds with mode 0o600`,
    code: "EOWNER",
    plant(): [Id, () => void] {
      const id = { name: uniqueName("xp-squat") };
      plantFile(`/dev/shm${id.name}`, 4096, 0o600, SQUATTER);
      return [id, () => cleanup(id)];
    },
  },
  {
    what: `a FIFO of uid ${SQUATTER} (mode 0o644)`,
    code: "EFTYPE",
    plant(): [Id, () => void] {
      const id = { name: uniqueName("xp-squat") };
      const path = `/dev/shm${id.name}`;
      const made = spawnSync("mkfifo", ["-m", "644", path], { encoding: "utf8" });
      if (made.status !== 0) throw new Error(`mkfifo: ${made.stderr}`);
      chownSync(path, SQUATTER, SQUATTER);
      return [id, () => rmSync(path, { force: true })];
    },
  },
  {
    what: `a keyed segment uid ${SQUATTER} made with mode 0o600`,
    code: "EOWNER",
    plant(): [Id, () => void] {
      const made = spawnSync(
        "setpriv",
        [
          `--reuid=${SQUATTER}`,
          `--regid=${SQUATTER}`,
          "--clear-groups",
          "ipcmk",
          "-M",
          "4096",
          "-p",
          "600",
        ],
        { encoding: "utf8" },
      );
      const shmid = /id: (\d+)/.exec(made.stdout)?.[1];
      if (made.status !== 0 || shmid === undefined) {
        throw new Error(`ipcmk as ${SQUATTER}: ${made.stdout}${made.stderr}`);
      }
      const removed = () => void spawnSync("ipcrm", ["-m", shmid]);
      const key = sysvKeyOf(Number(shmid));
      if (key === undefined) {
        removed();
        throw new Error(`shmid ${shmid} is not listed`);
      }
      return [{ key }, removed];
    },
  },
];

for (const which of runtimes) {
  for (const squatted of SQUATTED) {
    testUnless(
      noOtherUser,
      `${squatted.what} is refused to a ${which} child running as uid ${NOBODY} with ${squatted.code}`,
      async () => {
        const [id, remove] = squatted.plant();
        try {
          const result = await openAsNobody(which, id, 1);
          assertEquals([result.ok, result.code], [false, squatted.code], result.message ?? "");
          // No advice to accept the owner: its mode keeps this user out, so that would not do.
          if (squatted.code === "EOWNER") {
            const message = result.message ?? "";
            if (!message.includes("keeps this user out") || message.includes("{ owner")) {
              throw new Error(`the message: ${message}`);
            }
          }
        } finally {
          remove();
        }
      },
    );
  }
}

for (const which of runtimes) {
  for (const kind of ["keyed", "named"] as const) {
    testUnless(
      noOtherUser,
      `a ${kind} segment a ${which} child made as uid ${NOBODY} (mode 0o666) is refused with EOWNER naming the owner; { owner } and "any" accept it`,
      async () => {
        const id = freshId(kind);
        try {
          const r = await runAsNobody(which, "segment/create.ts", [...idArgs(id), "4096", "666"]);
          if (r.code !== 0 || !r.stdout.includes("created 4096")) {
            throw new Error(
              `${which} child as ${NOBODY} exited with ${r.code ?? r.signal}:\n${r.stderr}`,
            );
          }
          const label = "key" in id ? `key 0x${id.key.toString(16)}` : `name ${id.name}`;
          const refused = (e: unknown) => {
            if (!(e instanceof SharedMemoryError)) throw e;
            assertEquals([e.code, e.errno], ["EOWNER", 1002], "code");
            if (!e.message.includes(label) || !/uid 65534 \(nobody\)/.test(e.message)) {
              throw new Error(`message names neither the segment nor the owner: ${e.message}`);
            }
            if (!e.message.includes("{ owner: 65534 }")) throw new Error(`no hint: ${e.message}`);
          };
          const expectRefused = (what: string, fn: () => unknown) => {
            try {
              fn();
            } catch (e) {
              refused(e);
              return;
            }
            throw new Error(`${what} accepted another user's segment`);
          };
          expectRefused("open", () => SharedMemory.open(id).close());
          expectRefused("openOrCreate", () => SharedMemory.openOrCreate(id, 4096).close());
          expectRefused("open with another owner", () => SharedMemory.open(id, { owner: 4242 }));
          if ("key" in id) {
            expectRefused("createSharedBuffer", () => createSharedBuffer(id.key, 4096, true));
            const buffer = createSharedBuffer(id.key, 4096, false, { owner: NOBODY });
            assertEquals(buffer.byteLength, 4096, "createSharedBuffer with owner");
            detachSharedBuffer(buffer);
          }
          using accepted = SharedMemory.open(id, { owner: NOBODY });
          assertEquals(accepted.byteLength, 4096, "open with owner");
          using any = SharedMemory.openOrCreate(id, 4096, { owner: "any" });
          assertEquals(any.created, false, "openOrCreate with owner any");
        } finally {
          cleanup(id);
        }
      },
    );
  }
}

testUnless(
  isRoot ? false : lacking("needs root to give a channel to uid 65534"),
  `a channel uid ${NOBODY} owns: Channel.open and a replacing Channel.create refuse it with EOWNER and a hint; { owner } accepts it`,
  () => {
    const { Channel } = lib;
    const id = { name: uniqueName("xp-channel") };
    const path = `/dev/shm${id.name}`;
    const text = new TextDecoder();
    const refused = (what: string, fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        if (!(e instanceof SharedMemoryError)) throw e;
        assertEquals([e.code, e.errno], ["EOWNER", 1002], `${what}: code`);
        const call = what.slice(0, what.indexOf("("));
        if (!e.message.startsWith(call) || !e.message.includes("{ owner: 65534 }")) {
          throw new Error(
            `${what}: the message names neither the call nor the option: ${e.message}`,
          );
        }
        return;
      }
      throw new Error(`${what} accepted another user's channel`);
    };
    try {
      Channel.create(id, { capacity: 4096, mode: 0o666 }).close();
      chownSync(path, NOBODY, NOBODY);
      refused("Channel.open()", () => Channel.open(id).close());
      refused("Channel.open({ owner: 4242 })", () => Channel.open(id, { owner: 4242 }).close());
      refused(
        "Channel.create({ replace: true })",
        () => Channel.create(id, { capacity: 4096, replace: true }).close(),
      );
      assertEquals(statSync(path).uid, NOBODY, "the refused replace left the channel");
      {
        using joined = Channel.open(id, { owner: NOBODY, populate: true, timeoutMs: 100 });
        const [tx, rx] = [joined.sender(), joined.receiver()];
        tx.send("from root");
        assertEquals(text.decode(rx.recv(0)!), "from root", "a message through it");
        tx.close();
        assertEquals(rx.recv(0), null, "the end of the stream");
      }
      let threw: unknown;
      try {
        Channel.open(id, { owner: "nobody" as unknown as number });
      } catch (e) {
        threw = e;
      }
      assertEquals(threw instanceof TypeError, true, "a TypeError for an owner that is no uid");
      using fresh = Channel.create(id, {
        capacity: 8192,
        owner: NOBODY,
        populate: true,
        replace: true,
      });
      assertEquals([statSync(path).uid, fresh.capacity], [0, 8192], "the replacing channel");
      using opened = Channel.open(id);
      assertEquals(opened.capacity, 8192, "an open finds the new channel");
    } finally {
      rmSync(path, { force: true });
    }
  },
);

testUnless(
  noDiskModes,
  "options and ids read only their own properties: a polluted Object.prototype widens no mode, replaces nothing, accepts no other user's segment and names no segment, and an inherited option is a TypeError",
  () => {
    const { Channel } = lib;
    const named = { name: uniqueName("xp-proto") };
    const channel = { name: uniqueName("xp-proto-ch") };
    const keyed = { key: uniqueKey() };
    const theirs = { name: uniqueName("xp-proto-theirs") };
    const polluted = { mode: 0o666, owner: "any", replace: true, key: keyed.key, size: 1 };
    const proto = Object.prototype as Record<string, unknown>;
    const code = (fn: () => unknown): string => {
      try {
        fn();
      } catch (e) {
        return e instanceof SharedMemoryError ? e.code : `${e}`;
      }
      return "accepted";
    };
    // Synchronous from the pollution to its removal: no other test of this process runs meanwhile.
    try {
      if (isRoot) plantFile(`/dev/shm${theirs.name}`, 64, 0o666, NOBODY);
      Object.assign(proto, polluted);
      const shm = SharedMemory.create(named, 64);
      const buffer = createSharedBuffer(keyed.key, 64, true);
      // Every option set on the object itself: the polluted ones are not read.
      const ch = Channel.create(channel, {
        capacity: 4096,
        mode: 0o600,
        owner: undefined,
        replace: false,
      });
      const inherited = code(() => Channel.create(channel, { capacity: 4096 }).close());
      const again = code(() => SharedMemory.create(named, 64).close());
      const reopened = code(() => SharedMemory.open(named).close());
      // Another user's segment can be planted by root only.
      const other = isRoot ? code(() => SharedMemory.open(theirs).close()) : undefined;
      for (const key of Object.keys(polluted)) delete proto[key];
      ch.close();
      detachSharedBuffer(buffer);
      shm.close();
      assertEquals(fileMode(`/dev/shm${named.name}`), "600", "SharedMemory.create's mode");
      assertEquals(fileMode(`/dev/shm${channel.name}`), "600", "Channel.create's mode");
      assertEquals(sysvSegment(keyed.key)?.perms, "600", "createSharedBuffer's perms");
      assertEquals(again, "EEXIST", "a second SharedMemory.create");
      assertEquals(reopened, "accepted", "SharedMemory.open of a { name } id");
      if (other !== undefined) {
        assertEquals(other, "EOWNER", "SharedMemory.open of another user's segment");
      }
      assertEquals(
        inherited.startsWith("TypeError: options.mode is inherited"),
        true,
        `Channel.create with an options object: ${inherited}`,
      );
      // An option on a prototype of the caller's own is refused too, not ignored.
      const mine = Object.create({ capacity: 8192 });
      assertEquals(
        code(() => Channel.create(channel, mine)).startsWith(
          "TypeError: options.capacity is inherited",
        ),
        true,
        "an option on the options object's own prototype",
      );
    } finally {
      for (const key of Object.keys(polluted)) delete proto[key];
      cleanup(named);
      cleanup(channel);
      cleanup(keyed);
      cleanup(theirs);
    }
  },
);
