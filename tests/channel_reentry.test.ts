// Code of the caller's that runs inside a receive or a send: a getter, or a built-in a script
// replaced after the library loaded (and which the library looks up on a prototype or a global),
// at each place it is called. Whatever that code does with the receiver there (receive, lend,
// release, close, throw), every message is delivered once and whole, the ring stays sound, and a
// close ends the receive with EBADF; a send it makes throw leaves no record reserved.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { cleanup, lib, test, uniqueName } from "./harness.ts";

const { Channel, SharedMemoryError } = lib;
type Receiver = ReturnType<ReturnType<typeof Channel.create>["receiver"]>;

// The test's own calls while a hook is installed go through these, taken now.
const apply = Reflect.apply;
const construct = Reflect.construct;
const describe = Object.getOwnPropertyDescriptor;
const define = Object.defineProperty;
const entries = Object.entries;
const push = Array.prototype.push;
const typed = Object.getPrototypeOf(Uint8Array.prototype);
const decodeOf = TextDecoder.prototype.decode;
const setOf = typed.set as (this: Uint8Array, source: Uint8Array) => void;
const lengthOf = describe(typed, "length")!.get!;
const bufferOf = describe(typed, "buffer")!.get!;
const bufferLengthOf = describe(ArrayBuffer.prototype, "byteLength")!.get!;
const resizeOf = (ArrayBuffer.prototype as unknown as { resize(n: number): void }).resize;
const Bytes = Uint8Array;
const parse = JSON.parse;
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const decode = (bytes: Uint8Array) => apply(decodeOf, decoder, [bytes]) as string;
const encoder = new TextEncoder();
const encode = (text: string) => encoder.encode(text);
const length = (view: Uint8Array) => apply(lengthOf, view, []) as number;
/** A copy made without `slice`, whose species a hook below replaces. */
function copy(view: Uint8Array): Uint8Array {
  const out = new Bytes(length(view));
  apply(setOf, out, [view]);
  return out;
}
const part = (view: Uint8Array, n: number) =>
  new Bytes(apply(bufferOf, view, []) as ArrayBuffer, view.byteOffset, n);

type Hook = [object, string | symbol, "method" | "getter" | "constructor", string];
const G = globalThis as unknown as Record<string, unknown>;
/** What a send or a receive may call that a script can replace. */
const hooks: Hook[] = [
  ...["min", "max", "floor", "ceil", "trunc", "round"].map((
    k,
  ): Hook => [Math, k, "method", `Math.${k}`]),
  [performance, "now", "method", "performance.now"],
  [Date, "now", "method", "Date.now"],
  ...["length", "byteLength", "byteOffset", "buffer"].map((
    k,
  ): Hook => [typed, k, "getter", `TypedArray ${k}`]),
  ...["set", "subarray", "slice", "fill"].map((k): Hook => [typed, k, "method", `TypedArray ${k}`]),
  [Object.getPrototypeOf(Uint8Array), Symbol.species, "getter", "TypedArray species"],
  [ArrayBuffer.prototype, "byteLength", "getter", "ArrayBuffer byteLength"],
  [ArrayBuffer.prototype, "slice", "method", "ArrayBuffer slice"],
  [ArrayBuffer, "isView", "method", "ArrayBuffer.isView"],
  [G, "Uint8Array", "constructor", "global Uint8Array"],
  [G, "Int32Array", "constructor", "global Int32Array"],
  [G, "ArrayBuffer", "constructor", "global ArrayBuffer"],
  [Number, "isInteger", "method", "Number.isInteger"],
  ...["push", "pop", "shift"].map((k): Hook => [Array.prototype, k, "method", `Array ${k}`]),
  [Array.prototype, Symbol.iterator, "method", "Array iterator"],
  ...["get", "set", "has", "delete"].map((k): Hook => [Map.prototype, k, "method", `Map ${k}`]),
  [Map.prototype, "size", "getter", "Map size"],
  [Object, "setPrototypeOf", "method", "Object.setPrototypeOf"],
  [Reflect, "apply", "method", "Reflect.apply"],
  [Function.prototype, "call", "method", "Function.prototype.call"],
  [TextDecoder.prototype, "decode", "method", "TextDecoder decode"],
  [EventTarget.prototype, "dispatchEvent", "method", "EventTarget dispatchEvent"],
  [JSON, "parse", "method", "JSON.parse"],
];

/**
 * Installs `hook`, which calls `fire` each time, before the built-in it replaces or, `late`,
 * after it (a copy made, then a throw); returns its removal (undefined where it is fixed).
 */
function install([target, key, kind]: Hook, fire: () => void, late = false) {
  const around = <R>(run: () => R): R => {
    if (!late) return fire(), run();
    const result = run();
    fire();
    return result;
  };
  const own = describe(target, key);
  const at = target as Record<string | symbol, unknown>;
  if (kind === "constructor") {
    const C = own!.value as new (...args: unknown[]) => unknown;
    const P: unknown = new Proxy(C, {
      construct: (t, args, nt) => around(() => construct(t, args, nt === P ? t : nt)),
      apply: (t, self, args) => around(() => apply(t, self, args)),
    });
    at[key] = P;
    return () => void (at[key] = C);
  }
  if (own !== undefined && !own.configurable) {
    // Bun's `performance.now` is a writable data property that cannot be redefined.
    if (!own.writable) return undefined;
    const f = own.value as (...args: unknown[]) => unknown;
    at[key] = function (this: unknown, ...args: unknown[]) {
      return around(() => apply(f, this, args));
    };
    return () => void (at[key] = f);
  }
  if (kind === "getter") {
    const get = own!.get!;
    define(target, key, {
      configurable: true,
      get() {
        return around(() => apply(get, this, []));
      },
    });
  } else {
    const f = (own !== undefined ? own.value : at[key]) as (...args: unknown[]) => unknown;
    define(target, key, {
      configurable: true,
      writable: true,
      value: function (this: unknown, ...args: unknown[]) {
        return around(() => new.target ? construct(f, args, new.target) : apply(f, this, args));
      },
    });
  }
  return () => own === undefined ? void delete at[key] : void define(target, key, own);
}

/**
 * Runs `call` with `hook` installed, and `act` at the hook's `k`-th call while `call` runs in
 * this turn (an async call has taken its message by then, one being ready; what runs later may
 * be the runtime's own code). Undefined where the hook cannot be installed.
 */
async function underHook<T>(
  hook: Hook,
  k: number,
  act: () => void,
  call: () => T | Promise<T>,
  late = false,
) {
  let calls = 0;
  let armed = false;
  let fired = false;
  const undo = install(hook, () => {
    if (!armed || ++calls !== k) return;
    armed = false;
    fired = true;
    act();
  }, late);
  if (undo === undefined) return undefined;
  let pending: T | Promise<T> | undefined;
  let value: T | undefined;
  let error: unknown;
  armed = true;
  try {
    pending = call();
  } catch (e) {
    error = e;
  } finally {
    armed = false;
    undo();
  }
  try {
    if (error === undefined) value = await pending;
  } catch (e) {
    error = e;
  }
  return { fired, value, error };
}

/** A channel of `capacity` bytes whose segment is unlinked already, and its two ends. */
function open(capacity: number) {
  const name = uniqueName("reentry");
  const ch = Channel.create({ name }, { capacity });
  cleanup({ name });
  return { ch, tx: ch.sender(), rx: ch.receiver() };
}

/** Closes what a case left open (its hook may have closed some of it already). */
function closeAll(...ends: { close(): void }[]): void {
  for (const end of ends) {
    try {
      end.close();
    } catch { /* closed inside */ }
  }
}

const target = new Uint8Array(16384);
// A view of part of a larger buffer, which recvInto looks at more closely.
const buffer = Buffer.alloc(20000).subarray(8, 16392);
// A target whose buffer is resized before each receive: its words are made again.
const resizable = new ArrayBuffer(8192, { maxByteLength: 32768 });
const growing = new Uint8Array(resizable);
type Got = () => string | string[] | null;
let batch: Uint8Array[] | undefined;
/** Each receive, made into the text(s) it got once the hooks are gone. */
const receives: Record<string, (rx: Receiver) => Got | Promise<Got>> = {
  recvInto: (rx) => {
    const n = rx.recvInto(target, 0);
    return () => n === null ? null : decode(part(target, n));
  },
  "recvInto (Buffer)": (rx) => {
    const n = rx.recvInto(buffer, 0);
    return () => n === null ? null : decode(part(buffer, n));
  },
  "recvInto (resized)": (rx) => {
    const size = apply(bufferLengthOf, resizable, []) === 8192 ? 16384 : 8192;
    apply(resizeOf, resizable, [size]);
    const n = rx.recvInto(growing, 0);
    return () => n === null ? null : decode(part(growing, n));
  },
  recvText: (rx) => {
    const text = rx.recvText(0);
    return () => text;
  },
  recvJson: (rx) => {
    const value = rx.recvJson<string>(0);
    return () => value;
  },
  recv: (rx) => {
    const m = rx.recv(0);
    return () => m === null ? null : decode(m);
  },
  tryRecv: (rx) => {
    const m = rx.tryRecv();
    return () => m == null ? String(m) : decode(m);
  },
  recvView: (rx) => {
    const view = rx.recvView(0);
    const kept = view === null ? null : copy(view);
    return () => kept === null ? null : decode(kept);
  },
  recvMany: (rx) => {
    const kept: Uint8Array[] = batch = [];
    rx.recvMany((m) => void apply(push, kept, [copy(m)]), 0);
    return () => kept.map(decode);
  },
  recvAsync: async (rx) => {
    const m = await rx.recvAsync(0);
    return () => m === null ? null : decode(m);
  },
  recvViewAsync: async (rx) => {
    const view = await rx.recvViewAsync(0);
    const kept = view === null ? null : copy(view);
    return () => kept === null ? null : decode(kept);
  },
  texts: async (rx) => {
    const { value } = await rx.texts().next();
    return () => value as string;
  },
};

const actions = [
  "recv",
  "recvText",
  "recvInto",
  "recvView",
  "tryRecv",
  "recvMany",
  "release",
  "close",
  "throw",
] as const;

test(
  "whatever code of the caller's that runs inside a receive does with the receiver, every message arrives once and whole",
  async () => {
    // Small messages (one record each, the hot paths), then larger ones and one fragmented
    // message (the copying paths and reassembly).
    const sets = [
      { capacity: 65536, sizes: [0, 13, 26, 39, 52, 65, 78, 91] },
      { capacity: 16384, sizes: [3, 300, 2000, 29, 9000, 16, 700, 5] },
    ];
    const ran = new Set<string>();
    let refused = 0;
    const failures: string[] = [];
    for (const { capacity, sizes } of sets) {
      const messages = sizes.map((n, i) => `m${i}-${"x".repeat(n)}`);
      for (const hook of hooks) {
        for (const [name, receive] of entries(receives)) {
          const json = name === "recvJson";
          const asText = (text: string) => json ? parse(text) as string : text;
          // Before the receive: another of the same kind (a target met again, the text copy in
          // use), or a message still lent, which the receive hands back first.
          for (const before of ["same", "lend"] as const) {
            for (const action of actions) {
              // The hook acts at its `k`-th call inside the receive, for each k until it is not
              // called that often.
              for (let k = 1;; k++) {
                assert.ok(k < 500, `${hook[3]}, ${name}: called without end`);
                const { ch, tx, rx } = open(capacity);
                for (const m of messages) json ? tx.sendJson(m) : tx.send(m);
                const got: (string | null)[] = [];
                // (A batch would take them all.)
                const first = await (name === "recvMany" ? receives.recvText : receive)(rx);
                const texts = first();
                apply(push, got, Array.isArray(texts) ? texts : [texts]);
                if (before === "lend") apply(push, got, [asText(decode(copy(rx.recvView(0)!)))]);
                const later: (() => string)[] = [];
                const act = () => {
                  if (action === "recv") {
                    const m = rx.recv(0)!;
                    apply(push, later, [() => asText(decode(m))]);
                  } else if (action === "recvText") {
                    const text = rx.recvText(0)!;
                    apply(push, later, [() => asText(text)]);
                  } else if (action === "recvInto") {
                    const into = new Bytes(16384);
                    const n = rx.recvInto(into, 0)!;
                    apply(push, later, [() => asText(decode(part(into, n)))]);
                  } else if (action === "recvView") {
                    const kept = copy(rx.recvView(0)!);
                    apply(push, later, [() => asText(decode(kept))]);
                  } else if (action === "tryRecv") {
                    const m = rx.tryRecv();
                    if (m) apply(push, later, [() => asText(decode(m))]);
                  } else if (action === "recvMany") {
                    rx.recvMany(
                      (m) => {
                        const kept = copy(m);
                        apply(push, later, [() => asText(decode(kept))]);
                      },
                      0,
                      1,
                    );
                  } else if (action === "release") rx.release();
                  else if (action === "close") rx.close();
                  else throw new Error("hook");
                };
                const run = await underHook(hook, k, () => {
                  try {
                    act();
                  } catch (e) {
                    // A receive or release refused inside another: the outer one goes on.
                    if (!(e instanceof SharedMemoryError && e.code === "EBUSY")) throw e;
                    refused++;
                  }
                }, () => (batch = undefined, receive(rx)));
                if (run === undefined) break;
                const { fired, value: outer, error } = run;
                const where = `${hook[3]}, ${name} (${before}), ${action} at call ${k}`;
                try {
                  if (!fired) break;
                  ran.add(hook[3]);
                  for (const f of later) apply(push, got, [f()]);
                  const taken = error === undefined ? outer!() : [];
                  const outerGot = Array.isArray(taken) ? taken : [taken];
                  if (action === "close") {
                    // Closed inside: the receive ends with EBADF, or it had its messages already.
                    if (error !== undefined) {
                      assert.ok(
                        error instanceof SharedMemoryError && error.code === "EBADF",
                        `${where}: ${error}`,
                      );
                    }
                    for (const m of outerGot) {
                      assert.ok(messages.includes(m!) && !got.includes(m), `${where}: ${m}`);
                    }
                    continue;
                  }
                  if (
                    error !== undefined &&
                    !(action === "throw" && (error as Error).message === "hook")
                  ) {
                    throw error;
                  }
                  apply(push, got, outerGot);
                  // A batch a hook threw out of delivered what it delivered.
                  if (error !== undefined && batch) {
                    apply(push, got, (batch as Uint8Array[]).map(decode));
                  }
                  for (let m; (m = rx.tryRecv()) !== undefined;) {
                    apply(push, got, [asText(decode(m!))]);
                  }
                  // In the order they were taken, which depends on where the code ran; a receive
                  // that threw may have taken its message (the hook ran after the take).
                  assert.equal(new Set(got).size, got.length, `${where}: a message came twice`);
                  const strange = got.filter((m) => !messages.includes(m!));
                  assert.deepEqual(strange, [], `${where}: not a message sent`);
                  const lost = messages.filter((m) => !got.includes(m));
                  assert.ok(
                    lost.length === 0 || (error !== undefined && lost.length === 1),
                    `${where}: lost ${lost}`,
                  );
                } catch (e) {
                  apply(push, failures, [`${where}: ${(e as Error).message.slice(0, 300)}`]);
                } finally {
                  closeAll(rx, tx, ch);
                }
              }
            }
          }
        }
      }
    }
    assert.deepEqual(failures, []);
    // The places the test means to reach were reached in this runtime.
    for (
      const name of ["Function.prototype.call", "performance.now", "global Uint8Array"]
    ) {
      assert.ok(ran.has(name), `${name} was called inside a receive`);
    }
    assert.ok(refused > 0, "a receive inside another was refused");
  },
  { bunTimeoutMs: 60_000 },
); // 3-4 s alone, three times that on a loaded machine

test(
  "a send that code of the caller's makes throw leaves no record reserved: the messages after it arrive",
  async () => {
    const sends: Record<
      string,
      (tx: ReturnType<ReturnType<typeof Channel.create>["sender"]>, m: string) => unknown
    > = {
      "send (bytes)": (tx, m) => tx.send(encode(m), 0),
      "send (string)": (tx, m) => tx.send(m, 0),
      sendJson: (tx, m) => tx.sendJson(m, 0),
      trySend: (tx, m) => tx.trySend(m),
      // Arrays of bytes, which go out in runs (strings go one by one).
      sendMany: (tx, m) => tx.sendMany([encode("t"), encode(m), encode("t")], 0),
      sendAsync: (tx, m) => tx.sendAsync(m, 0),
    };
    const failures: string[] = [];
    const ran = new Set<string>();
    // One record, several copied together, and a message in fragments.
    for (const size of [40, 3000, 12000]) {
      const message = "s".repeat(size);
      for (const hook of hooks) {
        for (const [name, send] of entries(sends)) {
          if (name === "trySend" && size > 8000) continue; // one record at most
          // The throw before the built-in runs, and after (a copy made, then a throw).
          for (const late of [false, true]) {
            for (let k = 1;; k++) {
              assert.ok(k < 500, `${hook[3]}, ${name}: called without end`);
              const { ch, tx, rx } = open(16384);
              const run = await underHook(
                hook,
                k,
                () => {
                  throw new Error("hook");
                },
                () => send(tx, message),
                late,
              );
              if (run === undefined) break;
              const { fired, error } = run;
              const where = `${hook[3]}, ${name} of ${size} B, a throw ${
                late ? "after" : "at"
              } call ${k}`;
              try {
                if (!fired) break;
                ran.add(hook[3]);
                if (error !== undefined && (error as Error).message !== "hook") throw error;
                // What went out before the throw arrives whole, and nothing else; then a message
                // sent after it.
                const text = (m: Uint8Array) => name === "sendJson" ? parse(decode(m)) : decode(m);
                for (let m; (m = rx.tryRecv()) != null;) {
                  const got = text(m);
                  assert.ok(
                    got === message || (name === "sendMany" && got === "t"),
                    `${where}: ${got}`,
                  );
                }
                tx.send("after", 0);
                assert.equal(decode(rx.recv(0)!), "after", where);
                // Round the ring a few times: what the failed send wrote where nothing is committed
                // would be read as a record, or as a commit word of the empty ring.
                for (let i = 0; i < 40; i++) {
                  const m = "w".repeat((i * 397) % 3000);
                  tx.send(m, 0);
                  assert.equal(decode(rx.recv(0)!), m, `${where}: round ${i}`);
                  assert.equal(rx.tryRecv(), undefined, `${where}: round ${i}, empty`);
                }
              } catch (e) {
                apply(push, failures, [`${where}: ${(e as Error).message.slice(0, 200)}`]);
              } finally {
                closeAll(rx, tx, ch);
              }
            }
          }
        }
      }
    }
    assert.deepEqual(failures, []);
    for (const name of ["Function.prototype.call", "TypedArray length"]) {
      assert.ok(ran.has(name), `${name} was called inside a send`);
    }
  },
  { bunTimeoutMs: 60_000 },
);
