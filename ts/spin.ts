/**
 * How long a channel endpoint (or an adaptive `wait`) spins before parking in the kernel, learned
 * from its recent waits.
 *
 * Parking and being woken costs tens of microseconds here; a reply from a process running on
 * another core often comes within a few. So a wait first spins, and keeps doing so while spinning
 * pays off. When the spin keeps failing (the peer shares this core, so it cannot run while this
 * process spins, or it answers slowly) the endpoint parks at once, and only now and then spins
 * again to see whether things changed, at intervals that double after each failed probe (up to
 * every {@linkcode MAX_PROBE_EVERY}th wait), and at least once every {@linkcode PROBE_GAP_SPINS}
 * spin budgets of time: so a failed probe costs at most 1/64 of the time, and a pair that stopped
 * spinning for a while tries again within milliseconds. (Here two processes on two cores
 * sometimes could not run at once: the host ran other work, and while one spun the other did not
 * get its reply out, as on one core. Both then stopped spinning, and with probes every 1,024
 * waits, 100 ms at their round trip of 100 µs, they stayed parked long after: in 7 of 16 runs of
 * a 1.3 s ping-pong in which the host took 9% or more of the two CPUs' time (the guest's steal
 * time), none of 24 in which it took less. Probing by time as well, 1 of 22 such runs.)
 *
 * How long a spin lasts is learned too. Two processes that answer each other from two cores
 * otherwise settle where both park: each reply comes only after the other's wake-up, later than
 * a short spin, so every spin fails and both stop spinning. On this machine's VM a wake-up takes
 * 40 µs at the median and up to 200 µs, so such round trips took 80-150 µs instead of 1-3. So a
 * wait that parked and was woken after up to {@linkcode MAX_SPIN_MS} sets the spin to that time
 * (a park between two parked processes lasts both wake-ups, so a spin that long outlasts the
 * peer's: it catches the reply, the answer finds the peer spinning or soon probing, and both
 * spin from then on). A longer park (a slow peer, an idle stream) teaches nothing: no spin that
 * short would have caught it. (Halving the spin after each change caught at once, so that a
 * gap in a stream would cost less, brought the parking pairs back: one hiccup, and 20 µs spins
 * failed on both sides again.) On one core a failed spin delays the peer, whose answer then
 * teaches a longer spin; the failures stop spinning all the same, and a probe, once spinning
 * stopped paying, spins at most {@linkcode MAX_SPIN_MS} every {@linkcode MAX_PROBE_EVERY}th
 * wait or once the time gap has passed, whichever comes first. An async wait spins at most
 * {@linkcode SPIN_MS}: its event loop waits meanwhile.
 *
 * The Spinner also keeps the wait's clock: {@linkcode Spinner.start} reads it once, and the wait
 * takes its deadline, its next peer check and the relative timeout of its first park from that
 * one reading; spinning reads it again only every {@linkcode CLOCK_EVERY} rounds, a wait reads
 * it afresh after a park, and a wait that parked reads it once more at its end when it spun or
 * the next wait will spin (to learn from it). A call that need not wait reads no clock at all,
 * nor does a wait without a deadline that parks at once (`start(false)`), but for one wait in
 * {@linkcode GAP_CHECK_EVERY}, which looks whether a probe is due by time.
 *
 * @module
 */

/** What a spin option may be, in the message of a wrong type. */
export const SPIN_EXPECTED = `"adaptive" or a number of rounds`;
/** The shortest spin budget, in milliseconds (20 µs), and the first. */
export const SPIN_MS = 0.02;
/**
 * The longest spin budget, in milliseconds (250 µs): beyond the slowest wake-ups measured here
 * (the 99th percentile of a round trip between two parked processes on two cores, which is two
 * wake-ups, was 250-360 µs), and short enough that the few failed spins before spinning stops
 * cost little.
 */
export const MAX_SPIN_MS = 0.25;
/** Spin rounds between two looks at the clock. */
export const CLOCK_EVERY = 32;
/** The most credit a run of successful spins builds up. */
const MAX_SCORE = 8;
/** The longest interval, in waits, between two probing spins once spinning stopped paying. */
export const MAX_PROBE_EVERY = 1024;
/**
 * The longest interval between two spins, in spin budgets of time, where the wait's clock
 * tells: a probe that fails costs at most 1/64 of the time, and a pair that stopped spinning
 * while spinning could not pay tries again within milliseconds, not after 1,024 waits.
 */
export const PROBE_GAP_SPINS = 64;
/** A wait without a clock of its own reads it for the gap above once every this many waits. */
export const GAP_CHECK_EVERY = 32;

/** The spin policy of one endpoint: a fixed number of rounds, or learned ("adaptive"). */
export class Spinner {
  /** A fixed number of rounds, or -1: adaptive. */
  readonly fixed: number;
  /** Credit from recent successful spins; 0: park at once except on probes. */
  #score = 2;
  #probeEvery = 1;
  #sinceProbe = 0;
  /** The budget of a wait that spins (ms), learned from the last wait that parked. */
  #spinMs = SPIN_MS;
  /** The wait under way (an endpoint's waits never overlap): its budget, rounds, end, park. */
  #budget = 0;
  #spins = 0;
  #until = -1;
  #parked = false;
  /** When the wait parked first (its clock reading then). */
  #parkedAt = 0;
  /** When a wait last began to spin (or this spinner was made). */
  #spunAt = performance.now();
  /** {@linkcode PROBE_GAP_SPINS}, or another gap (tests: Infinity, counting waits only). */
  readonly #gapSpins: number;
  /** The wait's latest clock reading (performance.now() time). */
  #now = 0;

  constructor(spin: number | "adaptive", gapSpins = PROBE_GAP_SPINS) {
    this.fixed = spin === "adaptive" ? -1 : spin;
    this.#gapSpins = gapSpins;
  }

  /**
   * A wait begins: it spins for the fixed rounds, or for what {@linkcode budgetMs} says.
   *
   * @param clock False if the caller needs no clock reading (no deadline, no peer checks): then
   *   a wait that parks at once reads none but one in {@linkcode GAP_CHECK_EVERY} (for the
   *   probes' time gap), and {@linkcode now} gives NaN until it parks if it read none.
   * @param maxMs The longest spin the caller allows (an async wait blocks its event loop while
   *   it spins).
   * @returns The clock, read once here: the wait's start (NaN as above).
   */
  start(clock = true, maxMs = Infinity): number {
    let now = NaN;
    let budget = 0;
    if (this.fixed < 0) {
      // A wait without a clock reads it now and then all the same, for the probes' time gap.
      if (clock || (this.#score === 0 && (this.#sinceProbe + 1) % GAP_CHECK_EVERY === 0)) {
        now = performance.now();
      }
      budget = this.budgetMs(now);
    } else if (clock || maxMs !== Infinity) now = performance.now();
    this.#budget = budget < maxMs ? budget : maxMs;
    this.#spins = 0;
    this.#parked = false;
    if (this.#budget > 0) {
      if (Number.isNaN(now)) now = performance.now();
      this.#spunAt = now;
    }
    // A fixed spin (up to 2^30 rounds, seconds of them) ends after its rounds, after `maxMs`, or
    // at what bound() says.
    if (this.fixed < 0) this.#until = now + this.#budget;
    else this.#until = maxMs === Infinity ? Infinity : now + maxMs;
    return this.#now = now;
  }

  /**
   * The wait's spin ends by `until` too, a clock reading (its deadline, or its next look at its
   * peers), whatever its budget or rounds.
   */
  bound(until: number): void {
    if (until < this.#until) this.#until = until;
  }

  /** Whether the wait {@linkcode start} began spins before it parks. */
  spins(): boolean {
    return this.fixed < 0 ? this.#budget > 0 : this.fixed > 0;
  }

  /** After a look that found nothing: true to look again at once, false to go on to park. */
  keepSpinning(): boolean {
    const spins = ++this.#spins;
    if (this.fixed >= 0) {
      if (spins > this.fixed) return false;
      return spins % CLOCK_EVERY !== 0 || (this.#now = performance.now()) < this.#until;
    }
    if (this.#parked || this.#budget === 0) return false;
    if (spins % CLOCK_EVERY !== 0) return true;
    return (this.#now = performance.now()) < this.#until;
  }

  /**
   * The clock for the wait's next decision: the latest reading while it has not parked yet
   * (from {@linkcode start}, or from an adaptive spin, which reads it every
   * {@linkcode CLOCK_EVERY} rounds and when it stops), read afresh after a fixed spin and once
   * the wait has parked. A reading a few rounds old only makes a deadline fire a little late,
   * never early. NaN before the park of a wait started without a clock.
   */
  now(): number {
    if (this.#parked || (this.fixed > 0 && this.#spins > 1)) this.#now = performance.now();
    return this.#now;
  }

  /**
   * Reads the clock for a wait that went on without parking or spinning (it consumed records
   * that delivered nothing): what {@linkcode now} gives from then on.
   */
  refresh(): number {
    return this.#now = performance.now();
  }

  /**
   * The wait parks in the kernel: it spins no more, and reads the clock afresh from now on. Call
   * it after {@linkcode now}, whose reading is when it parked.
   */
  parking(): void {
    if (!this.#parked) {
      // Without a reading (see `start`): one only if the time parked will be learned from.
      const known = !Number.isNaN(this.#now);
      this.#parkedAt = known || !this.#spinsNext() ? this.#now : performance.now();
    }
    this.#parked = true;
  }

  /** The wait ends: `got` what it waited for, or not (a timeout, an error). */
  end(got: boolean): void {
    if (this.fixed >= 0) return;
    if (this.#budget > 0) this.record(got && !this.#parked);
    // The clock is read for this only when this wait spun or the next one will: on one core,
    // where waits park at once, a clock read per wait cost more than the spins it tunes.
    if (got && this.#parked && (this.#budget > 0 || this.#spinsNext())) {
      this.learn(performance.now() - this.#parkedAt);
    }
  }

  /** Whether the next wait spins (what {@linkcode budgetMs} will say, without counting it). */
  #spinsNext(): boolean {
    return this.#score > 0 || this.#sinceProbe + 1 >= this.#probeEvery;
  }

  /**
   * A wait got what it waited for `parkedMs` after it parked: the next spins' budget, unless it
   * took longer than any spin may last (then no spin would have caught it).
   */
  learn(parkedMs: number): void {
    if (parkedMs <= MAX_SPIN_MS) this.#spinMs = parkedMs > SPIN_MS ? parkedMs : SPIN_MS;
  }

  /**
   * How long the wait starting now spins (ms; 0: park at once). Adaptive endpoints only.
   *
   * @param now The clock, if read: a probe is due too once {@linkcode PROBE_GAP_SPINS} spin
   *   budgets of time passed since the last spin.
   */
  budgetMs(now = NaN): number {
    if (this.#score > 0) return this.#spinMs;
    if (
      ++this.#sinceProbe < this.#probeEvery &&
      !(now - this.#spunAt >= this.#gapSpins * this.#spinMs)
    ) return 0;
    this.#sinceProbe = 0;
    return this.#spinMs;
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

  /**
   * The current state, for tests: credit, probe interval, learned spin (ms), and the budget of
   * the latest wait (ms).
   */
  get state(): { score: number; probeEvery: number; spinMs: number; budget: number } {
    return {
      score: this.#score,
      probeEvery: this.#probeEvery,
      spinMs: this.#spinMs,
      budget: this.#budget,
    };
  }
}
