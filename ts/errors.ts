/**
 * The library's one error class, and the helper every native call site uses.
 *
 * @module
 */

import { backend } from "./backend.ts";

/**
 * A failed operation on a shared-memory segment.
 *
 * @example
 * ```ts
 * try {
 *   SharedMemory.create({ name: "/jobs" }, 4096);
 * } catch (err) {
 *   if (err instanceof SharedMemoryError && err.code === "EEXIST") {
 *     // someone made it first
 *   }
 * }
 * ```
 */
export class SharedMemoryError extends Error {
  /** The symbolic error code, such as `"EEXIST"`, `"ENOENT"`, `"EACCES"` or `"EINVAL"`. */
  readonly code: string;
  /** The positive error number of this platform (`17` for `EEXIST` on Linux), or the library's
   * own code. */
  readonly errno: number;
  /**
   * Set only on the errors of `ChannelSender.sendMany`: how many of its messages were sent
   * before the one that failed (the rest were not).
   */
  declare readonly sent?: number;

  /**
   * Makes an error with a symbolic code and its number; the library's own errors come with the
   * native library's numbers (see {@linkcode errorOf}).
   *
   * @param message What was attempted, on which segment, and what went wrong.
   * @param code The symbolic code.
   * @param errno The error number.
   */
  constructor(message: string, code: string, errno: number) {
    super(message);
    this.name = "SharedMemoryError";
    this.code = code;
    this.errno = errno;
  }
}

/**
 * A {@linkcode SharedMemoryError} with the symbolic `code` (`"EBADF"`) and this platform's number
 * for it, which the native library supplies (`EAGAIN` is 11 on Linux, 35 on macOS).
 *
 * @param code The symbolic code.
 * @param message What was attempted and what went wrong; ` (code)` is appended.
 */
export function errorOf(code: string, message: string): SharedMemoryError {
  return new SharedMemoryError(`${message} (${code})`, code, backend().errno(code));
}

/**
 * The error of an async wait that could not start: this process has as many pending as the
 * native library keeps (`MAX_ASYNC_WAITS`, or `POOL_MAX_WAITS` with a thread per wait).
 */
export function tooManyAsyncWaits(who: string): SharedMemoryError {
  return errorOf(
    "EAGAIN",
    `${who}: this process has 16,384 async waits pending already (4,096 where each wait has a thread), the most the library keeps (waitAsync, and the channels' recvAsync, sendAsync and the like); let some end first`,
  );
}
