/**
 * Event-loop turns for the channel's async calls. An async receive that finds a message ready, or
 * an async send that finds room, completes at once and settles its promise as a microtask; a
 * `for await` over a ring that a busy peer keeps filling (or a `sendAsync` loop that a fast
 * receiver keeps emptying) then never lets the event loop turn. Timers, I/O and every other task
 * of the thread starved: a 5 ms interval fired 16-138 times a second instead of 200 while one
 * process sent to itself as fast as it could, and 8-14 times a second in Node while it received
 * from a faster process.
 *
 * So the async calls note when a run of them began, and ask the event loop (`setImmediate`) to
 * say when it turned; once a run has gone on for {@linkcode TURN_BUDGET_MS} without a turn (the
 * clock is read every {@linkcode CHECK_EVERY} calls), the next call waits for one after it has
 * done its work and before its promise settles, so that calls not awaited one by one still send
 * and take in call order. A call that waited for a message or for room let the loop turn anyway.
 * Module state is per thread, as the event loop is.
 *
 * @module
 */

/** How long async calls that complete at once may keep the event loop from turning (ms). */
export const TURN_BUDGET_MS = 4;
/** Calls between two looks at the clock. */
const CHECK_EVERY = 8;

/**
 * `setImmediate`, a global in Node.js, Bun and Deno (since 2.4; a 0 ms timeout before). Taken when
 * this module loads: a fake-timer library installed before that, which fakes `setImmediate` but
 * not `performance.now`, holds a yielding call until its timers are run.
 */
const immediate = (globalThis as unknown as { setImmediate?(callback: () => void): unknown })
  .setImmediate ?? ((callback: () => void) => setTimeout(callback, 0));

/** When the current run of calls began (`performance.now()`), or -1 once the loop has turned. */
let runStart = -1;
let calls = 0;

function turned(): void {
  runStart = -1;
}

/**
 * Called by each async call once its send or receive is done: true when the event loop has not
 * turned for {@linkcode TURN_BUDGET_MS}, and the call should `await` {@linkcode nextTurn} before
 * its promise settles.
 */
export function mustYield(): boolean {
  if (runStart < 0) {
    runStart = performance.now();
    calls = 0;
    immediate(turned);
    return false;
  }
  if (++calls < CHECK_EVERY) return false;
  calls = 0;
  return performance.now() - runStart >= TURN_BUDGET_MS;
}

/** Resolves once the event loop has turned: its timers and I/O had their go. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => immediate(resolve));
}
