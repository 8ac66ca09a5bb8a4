/**
 * The public API, the same from `mod.ts` (Deno) and `bun.ts` (Bun).
 *
 * @module
 */

export { loadLibrary } from "./backend.ts";
export { SharedMemoryError } from "./errors.ts";
export { LIBRARY_ENV } from "./library.ts";
export {
  type CreateNewOptions,
  type CreateOptions,
  createSharedBuffer,
  detachSharedBuffer,
  openHandleCount,
  type OpenOptions,
  type Owner,
  type SegmentId,
  SharedMemory,
} from "./shared_memory.ts";
export {
  Mutex,
  MutexGuard,
  notify,
  wait,
  waitAsync,
  type WaitOptions,
  type WaitResult,
} from "./sync.ts";
export {
  Channel,
  type ChannelOpenOptions,
  type ChannelOptions,
  ChannelReceiver,
  type ChannelReceiverEventMap,
  ChannelSender,
  type EndpointOptions,
  type Message,
  type ReceiverOptions,
  SenderDiedEvent,
} from "./channel/channel.ts";
