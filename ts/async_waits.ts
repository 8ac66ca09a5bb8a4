/**
 * The pending `waitAsync` calls of this thread, ended by the native async wait service.
 *
 * Each runtime hands the service a thread-safe callback (Bun: `JSCallback` with
 * `threadsafe: true`; Deno: `Deno.UnsafeCallback.threadSafe`). The service parks the waits in the
 * kernel on a few native threads of its own (one per 127 waits on Linux) and calls the callback
 * with the wait's token when one ends; the runtime queues that call onto this JavaScript thread,
 * which resolves the wait's Promise. Thousands of waits may pend without starving anything.
 *
 * @module
 */

/** Tokens of pending waits and their Promise resolvers; keeps the event loop alive meanwhile. */
export class AsyncWaits {
  #pending = new Map<number, (code: number) => void>();
  #next = 1;
  #keepAlive: (on: boolean) => void;

  /**
   * @param keepAlive Called with `true` when the first wait begins pending and with `false` when
   *   the last one ends, to hold the event loop open meanwhile (as a pending `Atomics.waitAsync`
   *   does).
   */
  constructor(keepAlive: (on: boolean) => void) {
    this.#keepAlive = keepAlive;
  }

  /**
   * Registers one wait. `register` makes the native call with the given token and returns its
   * code: 0 means pending (the callback will come), anything else is the result at once.
   */
  wait(register: (token: number) => number): Promise<number> {
    const token = this.#next++;
    const rc = register(token);
    if (rc !== 0) return Promise.resolve(rc);
    return new Promise((resolve) => {
      this.#pending.set(token, resolve);
      if (this.#pending.size === 1) this.#keepAlive(true);
    });
  }

  /** The callback's body: ends the wait `token` with `code`. */
  woken(token: number, code: number): void {
    const resolve = this.#pending.get(token);
    if (resolve === undefined) return;
    this.#pending.delete(token);
    if (this.#pending.size === 0) this.#keepAlive(false);
    resolve(code);
  }
}
