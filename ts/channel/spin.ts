/**
 * How long a channel endpoint spins before parking in the kernel, learned from its recent waits.
 *
 * Parking and being woken costs tens of microseconds here; a reply from a process running on
 * another core often comes within a few. So a wait first spins for up to {@linkcode SPIN_MS}
 * (about what a park and a wake-up cost), and keeps doing so while spinning pays off. When
 * the spin keeps failing (the peer shares this core, so it cannot run while this process spins,
 * or it answers slowly) the endpoint parks at once, and only now and then spins again to see
 * whether things changed, at intervals that double after each failed probe (up to every
 * {@linkcode MAX_PROBE_EVERY}th wait).
 *
 * The Spinner also keeps the wait's clock: {@linkcode Spinner.start} reads it once, and the wait
 * takes its deadline, its next peer check and the relative timeout of its first park from that
 * one reading; spinning reads it again only every {@linkcode CLOCK_EVERY} rounds, and a wait reads
 * it afresh only after a park. A call that need not wait reads no clock at all.
 *
 * @module
 */

/** The longest spin before parking, in milliseconds (20 µs). */
export const SPIN_MS = 0.02;
/** Spin rounds between two looks at the clock. */
export const CLOCK_EVERY = 32;
/** The most credit a run of successful spins builds up. */
const MAX_SCORE = 8;
/** The longest interval, in waits, between two probing spins once spinning stopped paying. */
export const MAX_PROBE_EVERY = 1024;

/** The spin policy of one endpoint: a fixed number of rounds, or learned ("adaptive"). */
export class Spinner {
  /** A fixed number of rounds, or -1: adaptive. */
  readonly fixed: number;
  /** Credit from recent successful spins; 0: park at once except on probes. */
  #score = 2;
  #probeEvery = 1;
  #sinceProbe = 0;
  /** The wait under way (an endpoint's waits never overlap): its budget, rounds, end, park. */
  #budget = 0;
  #spins = 0;
  #until = -1;
  #parked = false;
  /** The wait's latest clock reading (performance.now() time). */
  #now = 0;

  constructor(spin: number | "adaptive") {
    this.fixed = spin === "adaptive" ? -1 : spin;
  }

  /**
   * A wait begins: it spins for the fixed rounds, or for what {@linkcode budgetMs} says.
   *
   * @returns The clock, read once here: the wait's start.
   */
  start(): number {
    this.#budget = this.fixed < 0 ? this.budgetMs() : 0;
    this.#spins = 0;
    this.#parked = false;
    const now = this.#now = performance.now();
    this.#until = now + this.#budget;
    return now;
  }

  /** After a look that found nothing: true to look again at once, false to go on to park. */
  keepSpinning(): boolean {
    const spins = ++this.#spins;
    if (this.fixed >= 0) return spins <= this.fixed;
    if (this.#parked || this.#budget === 0) return false;
    if (spins % CLOCK_EVERY !== 0) return true;
    return (this.#now = performance.now()) < this.#until;
  }

  /**
   * The clock for the wait's next decision: the latest reading while it has not parked yet
   * (from {@linkcode start}, or from an adaptive spin, which reads it every
   * {@linkcode CLOCK_EVERY} rounds and when it stops), read afresh after a fixed spin and once
   * the wait has parked. A reading a few rounds old only makes a deadline fire a little late,
   * never early.
   */
  now(): number {
    if (this.#parked || (this.fixed > 0 && this.#spins > 1)) this.#now = performance.now();
    return this.#now;
  }

  /** The wait parks in the kernel: it spins no more, and reads the clock afresh from now on. */
  parking(): void {
    this.#parked = true;
  }

  /** The wait ends: `got` what it waited for, or not (a timeout, an error). */
  end(got: boolean): void {
    if (this.#budget > 0) this.record(got && !this.#parked);
  }

  /** How long the wait starting now spins (ms; 0: park at once). Adaptive endpoints only. */
  budgetMs(): number {
    if (this.#score > 0) return SPIN_MS;
    if (++this.#sinceProbe < this.#probeEvery) return 0;
    this.#sinceProbe = 0;
    return SPIN_MS;
  }

  /** A wait that spun ended: `caught` if spinning caught what it waited for (no park). */
  record(caught: boolean): void {
    if (caught) {
      if (this.#score < MAX_SCORE) this.#score++;
      this.#probeEvery = 1;
      this.#sinceProbe = 0;
    } else if (this.#score > 0) {
      this.#score = this.#score > 2 ? this.#score - 2 : 0;
    } else if (this.#probeEvery < MAX_PROBE_EVERY) {
      this.#probeEvery *= 2;
    }
  }

  /** The current state, for tests: credit and probe interval. */
  get state(): { score: number; probeEvery: number } {
    return { score: this.#score, probeEvery: this.#probeEvery };
  }
}
