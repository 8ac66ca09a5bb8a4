// Code of the caller's that runs inside a receive: a getter or a built-in a script replaced after
// the library loaded (and which the library looks up on a prototype or a global), at each place
// it is called. Whatever that code does with the receiver there (receive, lend, release, close,
// throw), every message is delivered once and whole, the ring stays sound, and a close ends the
// receive with EBADF.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { cleanup, lib, test, uniqueName } from "./harness.ts";

const { Channel, SharedMemoryError } = lib;
type Receiver = ReturnType<ReturnType<typeof Channel.create>["receiver"]>;

const apply = Reflect.apply;
const construct = Reflect.construct;
const describe = Object.getOwnPropertyDescriptor;
const define = Object.defineProperty;
const typed = Object.getPrototypeOf(Uint8Array.prototype);
// The test's own calls after a hook is installed go through these, taken now.
const decodeOf = TextDecoder.prototype.decode;
const sliceOf = typed.slice as (this: Uint8Array) => Uint8Array;
const subarrayOf = typed.subarray as (this: Uint8Array, a: number, b: number) => Uint8Array;
const parse = JSON.parse;
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const decode = (bytes: Uint8Array) => apply(decodeOf, decoder, [bytes]) as string;
const copy = (view: Uint8Array) => apply(sliceOf, view, []) as Uint8Array;

type Hook = [object, string, "method" | "getter", string];
/** What a receive may call that a script can replace: methods, getters, and `call` itself. */
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
  [ArrayBuffer.prototype, "byteLength", "getter", "ArrayBuffer byteLength"],
  [ArrayBuffer.prototype, "slice", "method", "ArrayBuffer slice"],
  [Number, "isInteger", "method", "Number.isInteger"],
  ...["push", "pop", "shift"].map((k): Hook => [Array.prototype, k, "method", `Array ${k}`]),
  ...["get", "set", "has", "delete"].map((k): Hook => [Map.prototype, k, "method", `Map ${k}`]),
  [Map.prototype, "size", "getter", "Map size"],
  [Object, "setPrototypeOf", "method", "Object.setPrototypeOf"],
  [Reflect, "apply", "method", "Reflect.apply"],
  [Function.prototype, "call", "method", "Function.prototype.call"],
  [TextDecoder.prototype, "decode", "method", "TextDecoder decode"],
];

/** Installs `hook`, which calls `fire` first each time; returns its removal (undefined if fixed). */
function install([target, key, kind]: Hook, fire: () => void): (() => void) | undefined {
  const own = describe(target, key);
  const at = target as Record<string, unknown>;
  if (own !== undefined && !own.configurable) {
    // Bun's `performance.now` is a writable data property that cannot be redefined.
    if (!own.writable) return undefined;
    const f = own.value as (...args: unknown[]) => unknown;
    at[key] = function (this: unknown, ...args: unknown[]) {
      fire();
      return apply(f, this, args);
    };
    return () => void (at[key] = f);
  }
  if (kind === "getter") {
    const get = own!.get!;
    define(target, key, {
      configurable: true,
      get() {
        fire();
        return apply(get, this, []);
      },
    });
  } else {
    const f = (own !== undefined ? own.value : at[key]) as (...args: unknown[]) => unknown;
    define(target, key, {
      configurable: true,
      writable: true,
      value: function (this: unknown, ...args: unknown[]) {
        fire();
        return new.target ? construct(f, args, new.target) : apply(f, this, args);
      },
    });
  }
  return () => own === undefined ? void delete at[key] : void define(target, key, own);
}

const target = new Uint8Array(16384);
// A view of part of a larger buffer, which recvInto looks at more closely.
const buffer = Buffer.alloc(20000).subarray(8, 16392);
/** Each receive, made into the text it got once the hooks are gone. */
const receives: Record<string, (rx: Receiver) => () => string | null> = {
  recvInto: (rx) => {
    const n = rx.recvInto(target, 0);
    return () => n === null ? null : decode(apply(subarrayOf, target, [0, n]));
  },
  "recvInto (Buffer)": (rx) => {
    const n = rx.recvInto(buffer, 0);
    return () => n === null ? null : decode(apply(subarrayOf, buffer, [0, n]));
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
    let kept: Uint8Array | undefined;
    rx.recvMany((m) => void (kept = copy(m)), 0, 1);
    return () => kept === undefined ? "none" : decode(kept);
  },
};

const actions = ["recv", "recvInto", "recvView", "release", "close", "throw"] as const;

test("whatever code of the caller's that runs inside a receive does with the receiver, every message arrives once and whole", () => {
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
      for (const [name, receive] of Object.entries(receives)) {
        const json = name === "recvJson";
        const asText = (text: string) => json ? parse(text) as string : text;
        for (const warm of [0, 2]) {
          for (const action of actions) {
            // The hook acts at its `k`-th call inside the receive, for each k until it is not
            // called that often.
            for (let k = 1;; k++) {
              const name_ = uniqueName("reentry");
              const ch = Channel.create({ name: name_ }, { capacity });
              cleanup({ name: name_ });
              const tx = ch.sender();
              const rx = ch.receiver();
              for (const m of messages) json ? tx.sendJson(m) : tx.send(m);
              const got: string[] = [];
              for (let i = 0; i < warm; i++) got.push(asText(rx.recvText(0)!));
              const later: (() => string)[] = [];
              let calls = 0;
              let armed = false;
              let fired = false;
              const act = () => {
                if (action === "recv") {
                  const m = rx.recv(0)!;
                  later.push(() => asText(decode(m)));
                } else if (action === "recvInto") {
                  const into = new Uint8Array(16384);
                  const n = rx.recvInto(into, 0)!;
                  later.push(() => asText(decode(apply(subarrayOf, into, [0, n]))));
                } else if (action === "recvView") {
                  const kept = copy(rx.recvView(0)!);
                  later.push(() => asText(decode(kept)));
                } else if (action === "release") rx.release();
                else if (action === "close") rx.close();
                else throw new Error("hook");
              };
              const undo = install(hook, () => {
                if (!armed || ++calls !== k) return;
                armed = false;
                fired = true;
                try {
                  act();
                } catch (e) {
                  // A receive or release refused inside another: the outer one goes on.
                  if (!(e instanceof SharedMemoryError && e.code === "EBUSY")) throw e;
                  refused++;
                }
              });
              if (undo === undefined) break;
              let outer: (() => string | null) | undefined;
              let error: unknown;
              armed = true;
              try {
                outer = receive(rx);
              } catch (e) {
                error = e;
              } finally {
                armed = false;
                undo();
              }
              const where = `${hook[3]}, ${name} (warm ${warm}), ${action} at call ${k}`;
              try {
                if (!fired) break;
                ran.add(hook[3]);
                for (const f of later) got.push(f());
                if (action === "close") {
                  // Closed inside: the receive ends with EBADF, or it had its message already.
                  if (error === undefined) assert.equal(outer!(), messages[got.length], where);
                  else {assert.ok(
                      error instanceof SharedMemoryError && error.code === "EBADF",
                      `${where}: ${error}`,
                    );}
                  continue;
                }
                if (error === undefined) got.push(json ? outer!()! : outer!()!);
                else if (!(action === "throw" && (error as Error).message === "hook")) throw error;
                for (let m; (m = rx.tryRecv()) !== undefined;) got.push(asText(decode(m!)));
                // In the order they were taken, which depends on where the code ran; a receive
                // that threw may have taken its message (the hook ran after the take).
                const lost = messages.filter((m) => !got.includes(m));
                assert.equal(new Set(got).size, got.length, `${where}: a message came twice`);
                const strange = got.filter((m) => !messages.includes(m));
                assert.deepEqual(strange, [], `${where}: not a message sent`);
                assert.ok(
                  lost.length === 0 || (error !== undefined && lost.length === 1),
                  `${where}: lost ${lost.length}`,
                );
              } catch (e) {
                failures.push(`${where}: ${(e as Error).message.slice(0, 300)}`);
              } finally {
                try {
                  rx.close();
                  tx.close();
                  ch.close();
                } catch { /* closed inside */ }
              }
            }
          }
        }
      }
    }
  }
  assert.deepEqual(failures, []);
  // The places the test means to reach were reached in this runtime.
  for (const name of ["Math.ceil", "Function.prototype.call", "performance.now"]) {
    assert.ok(ran.has(name), `${name} was called inside a receive`);
  }
  assert.ok(refused > 0, "a receive inside another was refused");
});
