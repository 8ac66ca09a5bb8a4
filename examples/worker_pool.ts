/**
 * A worker pool over shared-memory channels: the parent starts worker processes (Deno, Bun and
 * Node.js in turn), hands each one jobs through its own channel, and collects every result
 * through one channel that all workers send into. Node runs the JavaScript `make` builds from
 * this file (`node dist/examples/worker_pool.js 4`).
 *
 *     make demo
 *     # or: deno run --allow-ffi --allow-read --allow-env --allow-run examples/worker_pool.ts 4
 *     # or: bun examples/worker_pool.ts 4
 *
 * @module
 */

import { spawn } from "node:child_process";
import process from "node:process";

import { childCommands, library, runtime } from "./runtimes.ts";

const { Channel } = await library();

interface Job {
  id: number;
  from: number;
  to: number;
}
interface Result {
  id: number;
  primes: number;
  worker: string;
}

/** The work: count the primes in [from, to). */
function countPrimes(from: number, to: number): number {
  let count = 0;
  for (let n = Math.max(from, 2); n < to; n++) {
    let prime = true;
    for (let d = 2; d * d <= n; d++) {
      if (n % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) count++;
  }
  return count;
}

const args = process.argv.slice(2);

if (args[0] === "--worker") {
  const [jobsName, resultsName] = args.slice(1);
  using jobsChannel = Channel.open({ name: jobsName });
  using resultsChannel = Channel.open({ name: resultsName });
  const results = resultsChannel.sender();
  const me = `${runtime}:${process.pid}`;
  for await (const text of jobsChannel.receiver().texts()) {
    const job: Job = JSON.parse(text);
    results.sendJson({ id: job.id, primes: countPrimes(job.from, job.to), worker: me });
  }
  // Leaving the channels: `using` detaches this sender (the others go on) and unmaps.
} else {
  const workers = Number(args[0] ?? 4);
  const jobCount = 400;
  const span = 5_000;
  const tag = `${process.pid}-${Date.now().toString(36)}`;
  const resultsName = `/pool-results-${tag}`;
  using results = Channel.create({ name: resultsName }, {
    capacity: 1 << 16,
    producers: "many",
  });
  const receiver = results.receiver();
  const commands = childCommands(import.meta.url);
  const jobs: { name: string; channel: ReturnType<typeof Channel.create> }[] = [];
  const exits: Promise<void>[] = [];
  const started = performance.now();
  try {
    for (let w = 0; w < workers; w++) {
      const name = `/pool-jobs-${tag}-${w}`;
      jobs.push({ name, channel: Channel.create({ name }, { capacity: 1 << 14 }) });
      const [bin, flags] = commands[w % commands.length];
      const child = spawn(bin, [...flags, "--worker", name, resultsName], {
        stdio: "inherit",
      });
      exits.push(
        new Promise((resolve, reject) =>
          child.on(
            "exit",
            (code) => code === 0 ? resolve() : reject(new Error(`worker ${w} exited with ${code}`)),
          )
        ),
      );
    }
    // Hand out the jobs round-robin; a full job channel makes the parent wait (backpressure).
    const senders = jobs.map((j) => j.channel.sender());
    const sending = (async () => {
      for (let id = 0; id < jobCount; id++) {
        const job: Job = { id, from: id * span, to: (id + 1) * span };
        await senders[id % workers].sendAsync(JSON.stringify(job), 30_000);
      }
      for (const sender of senders) sender.close(); // each worker drains, then stops
    })();
    const byWorker = new Map<string, number>();
    const decoder = new TextDecoder();
    let primes = 0;
    for (let done = 0; done < jobCount; done++) {
      // Awaiting lets the job sender above run while results come in. A copy (recvAsync), not a
      // view of the ring, goes to the decoder: a decoder reads its input twice, and must not see
      // it change in between (docs/safety.md).
      const message = await receiver.recvAsync(30_000);
      const result: Result = JSON.parse(decoder.decode(message!));
      primes += result.primes;
      byWorker.set(result.worker, (byWorker.get(result.worker) ?? 0) + 1);
    }
    await sending;
    await Promise.all(exits);
    const expected = countPrimes(0, jobCount * span);
    console.log(
      `${jobCount} jobs over ${workers} worker processes in ${
        (performance.now() - started).toFixed(0)
      } ms: ${primes} primes below ${jobCount * span} (expected ${expected})`,
    );
    for (const [worker, count] of byWorker) console.log(`  ${worker} did ${count} jobs`);
    if (primes !== expected) process.exit(1);
  } finally {
    for (const j of jobs) {
      j.channel.close();
      Channel.unlink({ name: j.name });
    }
    Channel.unlink({ name: resultsName });
  }
}
