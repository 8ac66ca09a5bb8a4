// The Worker of `peer.mjs send-worker`: opens the segment it is sent the name of, adds 1 to its
// second word through a buffer of its own, closes it (which releases the Worker's handles), and
// says so.
import { SharedMemory } from "shared-buffer-ipc";

self.onmessage = (event) => {
  const shm = SharedMemory.open({ name: event.data });
  Atomics.add(new Int32Array(shm.buffer), 1, 1);
  shm.close();
  postMessage("closed");
};
