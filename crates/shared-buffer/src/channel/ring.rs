//! The ring protocol: initialising and validating a region, reserving and committing records,
//! reading and releasing them, and the waiter-word handshake. No system calls except through
//! [`park`], and those only when a peer is parked.
//!
//! # Memory ordering
//!
//! The full protocol, step by step, is in the [`layout`](super::layout) module docs; in short:
//!
//! - A producer writes the payload (and in MPSC the record's producer word), then stores the
//!   commit word with **release**; the consumer loads the commit word with **acquire** before
//!   reading either.
//! - The consumer zeroes the consumed bytes, then stores `head` with **release**; a producer
//!   loads `head` with **acquire** before writing into space that `head` freed. Before it zeroes
//!   anything past `head` it stores `zeroing` (where `head` goes next), relaxed: a consumer that
//!   takes over from a dead one reads it ([`finish_zeroing`]), and so does a producer checking a
//!   claim made during a sweep, after one of the sweep's release stores.
//! - A producer's reservation (`tail` store or CAS) comes before its commit store in program
//!   order, so a consumer that has seen a commit and then loads `tail` sees the reservation.
//! - In MPSC a producer claims the record it reserved by a CAS of its commit word from 0 to its
//!   mark: a consumer that sweeps (takes back reservations nobody marked in time) claims each
//!   word first by the same CAS, so exactly one of the two gets it. The consumer raises `sweeps`
//!   (SeqCst) before and after; a producer whose claim lands while it is odd, or after it
//!   changed, checks `head` and `zeroing` to learn whether its record was swept
//!   ([`Producer::claim`]).
//! - Parking (Dekker): the sleeper exchanges 1 into its waiter word, issues a SeqCst fence, and
//!   looks again before `futex_wait(word, 1)`; the waker stores its progress (commit word or
//!   `head`), issues a SeqCst fence, and only if the waiter word is 1 swaps it to 0 (a CAS on
//!   `rx_waiting`) and calls `futex_wake`. One of the two always sees the other, so no wake-up
//!   is lost and an awake peer costs no system call. Waiter words are only ever written by atomic
//!   exchange or CAS (never a plain store), which keeps their modification order simple (and
//!   lets loom check it). JavaScript `Atomics` operations are all sequentially consistent, which
//!   gives the same guarantees without explicit fences.
//! - The consumer's close: its last `head` store, then `flags`, then [`RX_CLOSED`] exchanged into
//!   `rx_waiting`, which nothing clears (wakers CAS only from [`RX_PARKED`]). A producer learns
//!   of the close from the wake-up check after its commit, and then reads `head` to tell whether
//!   its record was consumed ([`Producer::commit`]).

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::compiler_fence;

use super::error::{ChannelError, Result, corrupt};
use super::layout::*;
use super::mem::{AtomicU32, Mem, Ordering::*, fence};
use super::{liveness, park};

/// A validated channel region and the facts read from its header.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) mem: Mem,
    pub(crate) capacity: u32,
    pub(crate) mask: u32,
    /// The largest payload of one record: `capacity / 2 - 8`.
    pub(crate) max_record: usize,
    pub(crate) mode: u32,
    /// Keeps the memory mapped (a `Segment`), if the channel owns it.
    pub(crate) _owner: Option<Owner>,
}

/// Whatever keeps a channel's memory alive.
pub(crate) struct Owner {
    /// Held only to be dropped with the channel.
    pub(crate) _keep: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Owner")
    }
}

impl Shared {
    #[inline]
    pub(crate) fn head(&self) -> &AtomicU32 {
        self.mem.word(OFF_HEAD)
    }
    #[inline]
    pub(crate) fn sweeps(&self) -> &AtomicU32 {
        self.mem.word(OFF_SWEEPS)
    }
    #[inline]
    pub(crate) fn bereaved(&self) -> &AtomicU32 {
        self.mem.word(OFF_BEREAVED)
    }
    #[inline]
    pub(crate) fn zeroing(&self) -> &AtomicU32 {
        self.mem.word(OFF_ZEROING)
    }
    #[inline]
    pub(crate) fn tail(&self) -> &AtomicU32 {
        self.mem.word(OFF_TAIL)
    }
    #[inline]
    pub(crate) fn flags(&self) -> &AtomicU32 {
        self.mem.word(OFF_FLAGS)
    }
    #[inline]
    pub(crate) fn rx_waiting(&self) -> &AtomicU32 {
        self.mem.word(OFF_RX_WAITING)
    }
    #[inline]
    pub(crate) fn tx_waiting(&self) -> &AtomicU32 {
        self.mem.word(OFF_TX_WAITING)
    }
    #[inline]
    pub(crate) fn consumer_pid(&self) -> &AtomicU32 {
        self.mem.word(OFF_CONSUMER_PID)
    }
    /// Makes this process's pid namespace the channel's if none is yet (the first endpoint to
    /// attach does), else checks that it is the same: peers are told alive or dead by pid.
    pub(crate) fn join_pid_namespace(&self) -> Result<()> {
        let ours = liveness::pid_namespace();
        if ours == 0 {
            return Ok(());
        }
        match self
            .mem
            .word(OFF_PID_NAMESPACE)
            .compare_exchange(0, ours, AcqRel, Acquire)
        {
            Ok(_) => Ok(()),
            Err(theirs) if theirs == ours => Ok(()),
            Err(theirs) => Err(ChannelError::OtherPidNamespace { theirs, ours }),
        }
    }
    #[inline]
    pub(crate) fn producer_pid(&self, slot: usize) -> &AtomicU32 {
        assert!(slot < MAX_PRODUCERS);
        self.mem.word(OFF_PRODUCER_PIDS + 4 * slot)
    }
    /// Entry `i` of the orphan record (see [`Header::orphans`]): its slot + 1 and its end.
    pub(crate) fn orphan(&self, i: usize) -> (&AtomicU32, &AtomicU32) {
        assert!(i < ORPHAN_ENTRIES);
        let at = OFF_ORPHANS + 8 * i;
        (self.mem.word(at), self.mem.word(at + 4))
    }
    /// The commit word of the record at data index `idx` (a multiple of 8 below capacity).
    #[inline]
    fn commit_word(&self, idx: usize) -> &AtomicU32 {
        self.mem.word(OFF_DATA + idx)
    }

    /// After a commit or a close: wake the consumer if, and only if, it may be parked. Returns
    /// true if the consumer has closed the channel ([`RX_CLOSED`], which no waker clears): the
    /// one load a commit makes anyway is how producers learn of the close.
    #[inline]
    pub(crate) fn wake_consumer(&self) -> bool {
        fence(SeqCst);
        let word = self.rx_waiting();
        let mut seen = word.load(Relaxed);
        if seen == RX_PARKED {
            match word.compare_exchange(RX_PARKED, 0, SeqCst, Relaxed) {
                Ok(_) => {
                    // A failed wake leaves the consumer to its periodic wake-up; nothing to
                    // report.
                    let _ = park::notify(word, 1);
                    return false;
                }
                Err(now) => seen = now,
            }
        }
        seen == RX_CLOSED && self.closed_mark_is_a_close(word)
    }

    /// A producer saw [`RX_CLOSED`] in `rx_waiting`: true if the consumer closed. Its close sets
    /// [`FLAG_RX_CLOSED`] first, so a mark without the flag is a peer's write: the consumer is
    /// not closed (and, alive, may be parked under the mark, so it is woken). A commit that took
    /// such a mark for a close reported a failure for a message the consumer then received, and
    /// its producer refused every later send.
    #[cold]
    fn closed_mark_is_a_close(&self, word: &AtomicU32) -> bool {
        // Pairs with the release of the close's swap: its flag, stored before, is seen here.
        fence(Acquire);
        if self.flags().load(Relaxed) & FLAG_RX_CLOSED != 0 {
            return true;
        }
        let _ = park::notify(word, 1);
        false
    }

    /// The consumer's close: [`FLAG_RX_CLOSED`] (what attaching and error messages read), then
    /// [`RX_CLOSED`] into `rx_waiting` (what committing producers see); both are final.
    pub(crate) fn close_consumer(&self) {
        self.flags().fetch_or(FLAG_RX_CLOSED, AcqRel);
        self.rx_waiting().swap(RX_CLOSED, SeqCst);
    }

    /// After the consumer freed space or closed: wake every parked producer, if any.
    #[inline]
    pub(crate) fn wake_producers(&self) {
        fence(SeqCst);
        if self.tx_waiting().load(Relaxed) != 0 {
            self.wake_parked();
        }
    }

    /// [`Shared::wake_producers`] once a load after its fence found `tx_waiting` set.
    #[inline]
    fn wake_parked(&self) {
        let word = self.tx_waiting();
        if word.swap(0, SeqCst) != 0 {
            // As above: producers also wake periodically.
            let _ = park::notify(word, u32::MAX);
        }
    }

    /// True if the tail carries [`TAIL_CLOSED`].
    pub(crate) fn tail_closed(&self) -> bool {
        self.tail().load(Acquire) & TAIL_CLOSED != 0
    }

    /// True if the consumer has closed its end.
    pub(crate) fn rx_closed(&self) -> bool {
        self.flags().load(Acquire) & FLAG_RX_CLOSED != 0
    }
}

/// How [`init`] treats the data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZeroData {
    /// It is zero already (fresh memory).
    No,
    /// Zero it with plain writes: nobody else may look at it.
    Plain,
    /// Zero it word by word with atomic stores: others may still look at the old bytes.
    Atomic,
}

/// Writes a fresh header and prepares the data area; `magic` is stored last, with release.
///
/// # Safety
/// With [`ZeroData::Plain`], nobody else may use the region during the call; with
/// [`ZeroData::No`], the data area must be zero already.
pub(crate) unsafe fn init(mem: &Mem, capacity: u32, mode: u32, zero: ZeroData) -> Result<()> {
    if !capacity_ok(capacity) {
        return Err(ChannelError::Invalid(format!(
            "capacity {capacity} is not a power of two in 64..=2^28"
        )));
    }
    if mode != MODE_SPSC && mode != MODE_MPSC {
        return Err(ChannelError::Invalid(format!("unknown mode {mode}")));
    }
    let needed = region_size(capacity);
    if mem.len() < needed {
        return Err(ChannelError::Invalid(format!(
            "region of {} bytes is too small for capacity {capacity} ({needed} needed)",
            mem.len()
        )));
    }
    mem.word(OFF_MAGIC).store(0, Release);
    for offset in (4..HEADER_SIZE).step_by(4) {
        mem.word(offset).store(0, Relaxed);
    }
    match zero {
        ZeroData::No => {}
        // SAFETY: in bounds (checked above) and, as the caller promises, nobody else's yet.
        ZeroData::Plain => unsafe { mem.zero(OFF_DATA, capacity as usize) },
        ZeroData::Atomic => {
            for offset in (OFF_DATA..needed).step_by(4) {
                mem.word(offset).store(0, Relaxed);
            }
        }
    }
    mem.word(OFF_VERSION).store(VERSION, Relaxed);
    mem.word(OFF_HEADER_SIZE).store(HEADER_SIZE as u32, Relaxed);
    mem.word(OFF_CAPACITY).store(capacity, Relaxed);
    mem.word(OFF_MAX_MESSAGE)
        .store(max_record(capacity) as u32, Relaxed);
    mem.word(OFF_MODE).store(mode, Relaxed);
    mem.word(OFF_MAX_PRODUCERS)
        .store(MAX_PRODUCERS as u32, Relaxed);
    mem.word(OFF_MAGIC).store(MAGIC, Release);
    Ok(())
}

/// Checks a region's header; returns `(capacity, mode)`.
///
/// Never panics and never loops without bound, whatever the bytes.
pub(crate) fn validate(mem: &Mem) -> Result<(u32, u32)> {
    if mem.len() < HEADER_SIZE + MIN_CAPACITY as usize {
        return Err(ChannelError::Invalid(format!(
            "region of {} bytes is too small for a channel",
            mem.len()
        )));
    }
    let magic = mem.word(OFF_MAGIC).load(Acquire);
    if magic == 0 {
        return Err(ChannelError::NotReady);
    }
    if magic != MAGIC {
        return Err(corrupt(format!(
            "not a channel: magic {magic:#010x}, expected {MAGIC:#010x}"
        )));
    }
    let version = mem.word(OFF_VERSION).load(Relaxed);
    if version != VERSION {
        return Err(ChannelError::Version(version));
    }
    let header_size = mem.word(OFF_HEADER_SIZE).load(Relaxed);
    if header_size as usize != HEADER_SIZE {
        return Err(corrupt(format!(
            "header size {header_size}, expected {HEADER_SIZE}"
        )));
    }
    let capacity = mem.word(OFF_CAPACITY).load(Relaxed);
    if !capacity_ok(capacity) {
        return Err(corrupt(format!(
            "capacity {capacity} is not a power of two in 64..=2^28"
        )));
    }
    if region_size(capacity) > mem.len() {
        return Err(corrupt(format!(
            "capacity {capacity} needs {} bytes, the region has {}",
            region_size(capacity),
            mem.len()
        )));
    }
    let max = mem.word(OFF_MAX_MESSAGE).load(Relaxed);
    if max as usize != max_record(capacity) {
        return Err(corrupt(format!(
            "max_message {max}, expected {}",
            max_record(capacity)
        )));
    }
    let mode = mem.word(OFF_MODE).load(Relaxed);
    if mode != MODE_SPSC && mode != MODE_MPSC {
        return Err(corrupt(format!("unknown mode {mode}")));
    }
    let slots = mem.word(OFF_MAX_PRODUCERS).load(Relaxed);
    if slots as usize != MAX_PRODUCERS {
        return Err(corrupt(format!(
            "max_producers {slots}, expected {MAX_PRODUCERS}"
        )));
    }
    // The namespace of the endpoints attached so far (see `Shared::join_pid_namespace`); unknown
    // (0) on either side: nothing to compare.
    let theirs = mem.word(OFF_PID_NAMESPACE).load(Relaxed);
    let ours = liveness::pid_namespace();
    if theirs != ours && theirs != 0 && ours != 0 {
        return Err(ChannelError::OtherPidNamespace { theirs, ours });
    }
    let flags = mem.word(OFF_FLAGS).load(Relaxed);
    if flags & !FLAGS_KNOWN != 0 {
        return Err(corrupt(format!("unknown flags {flags:#x}")));
    }
    for offset in [OFF_RX_WAITING, OFF_TX_WAITING] {
        // Loaded before `flags` (acquire): a consumer's close sets the flag, then the mark.
        let value = mem.word(offset).load(Acquire);
        let closed = offset == OFF_RX_WAITING
            && value == RX_CLOSED
            && mem.word(OFF_FLAGS).load(Acquire) & FLAG_RX_CLOSED != 0;
        if value > RX_PARKED && !closed {
            return Err(corrupt(format!("waiter word at {offset} holds {value}")));
        }
    }
    // head and tail move while we read them: a live channel may need a second look.
    let mut last = String::new();
    for _ in 0..4 {
        let head = mem.word(OFF_HEAD).load(Acquire);
        let tail = mem.word(OFF_TAIL).load(Acquire);
        match check_positions(head, tail, capacity) {
            Ok(()) => return Ok((capacity, mode)),
            Err(msg) => last = msg,
        }
    }
    Err(corrupt(last))
}

fn check_positions(head: u32, tail: u32, capacity: u32) -> std::result::Result<(), String> {
    if head & !POS_MASK != 0 || head % RECORD_ALIGN as u32 != 0 {
        return Err(format!("head {head:#x} is not a position"));
    }
    let pos = tail & POS_MASK;
    if pos % RECORD_ALIGN as u32 != 0 {
        return Err(format!("tail {tail:#x} is not a position"));
    }
    let used = pos.wrapping_sub(head) & POS_MASK;
    if used > capacity {
        return Err(format!(
            "head {head:#x} and tail {tail:#x} are {used} bytes apart, capacity is {capacity}"
        ));
    }
    Ok(())
}

/// Run by a consumer that has just attached (its CAS of `consumer_pid` succeeded, so no other
/// consumer runs), before it receives: if the consumer before it died between announcing the
/// records it zeroes ([`Consumer::announce`]: `zeroing` ahead of `head`) and storing `head`,
/// finishes the job: zeroes `[head, zeroing)` (records that consumer had consumed, some of them
/// zeroed already) and stores `head = zeroing`. `head` is the value the caller loaded and
/// checked.
///
/// # Errors
/// `EBADMSG` if `zeroing` is neither `head` nor a position after it and at or before `tail`'s
/// (not a multiple of 8, bit 31 set, behind `head`, past `tail`): a peer wrote it.
///
/// Returns the position the consumer starts at: `head`, or `zeroing` once it is done.
pub(crate) fn finish_zeroing(sh: &Shared, head: u32) -> Result<u32> {
    let to = sh.zeroing().load(Acquire);
    if to == head {
        return finish_drop(sh, head);
    }
    // Loaded after `zeroing`: the tail only moves on, and it was at or past `zeroing` before.
    let tail = sh.tail().load(Acquire) & POS_MASK;
    let ahead = to.wrapping_sub(head) & POS_MASK;
    let used = tail.wrapping_sub(head) & POS_MASK;
    if to & !POS_MASK != 0 || to % RECORD_ALIGN as u32 != 0 || used > sh.capacity || ahead > used {
        return Err(corrupt(format!(
            "corrupt channel zeroing {to:#x}: not a position from head {head:#x} to tail {tail:#x}"
        )));
    }
    let idx = (head & sh.mask) as usize;
    let (ahead, to_end) = (ahead as usize, sh.capacity as usize - idx);
    // The dead consumer may have been sweeping: a producer's claim that reads one of these zeros
    // must see the raise of `sweeps` (`end_dead_sweep`, run before) that came before it.
    fence(Release);
    zero_records(sh, idx, ahead.min(to_end));
    if ahead > to_end {
        zero_records(sh, 0, ahead - to_end);
    }
    sh.head().store(to, Release);
    sh.wake_producers();
    Ok(to)
}

/// Run by [`finish_zeroing`] when the consumer before this one left no zeroing to finish: if it
/// died in [`Consumer::drop_mark`] after taking a mark and before announcing the zeroing, the
/// [`dropping_word`] at `head` says how far the record goes; finishes the job as that consumer
/// would have. Returns the position the consumer starts at.
///
/// A word whose record is longer than any message's, or runs past the end of the data area or
/// past `tail`, is a peer's: it is left alone, and the first receive reports it (`EBADMSG`), as
/// any corrupt record.
fn finish_drop(sh: &Shared, head: u32) -> Result<u32> {
    let idx = (head & sh.mask) as usize;
    let Some(span) = dropping_span(sh.commit_word(idx).load(Acquire)) else {
        return Ok(head);
    };
    let used = (sh.tail().load(Acquire) & POS_MASK).wrapping_sub(head) & POS_MASK;
    if used > sh.capacity
        || span > used
        || span as usize > sh.capacity as usize - idx
        || span as usize > record_span(sh.max_record)
    {
        return Ok(head);
    }
    // As in `drop_mark`: a claim that reads one of these zeros sees `sweeps` changed.
    sh.sweeps().fetch_add(1, SeqCst);
    let head = drop_record(sh, head, idx, span);
    sh.sweeps().fetch_add(1, SeqCst);
    Ok(head)
}

/// Consumes the `span`-byte record at `head` (data index `idx`) whose mark the consumer took:
/// its commit word holds the [`dropping_word`] until the record is zeroed. Stores `zeroing`
/// past it (see [`Consumer::announce`]), zeroes its producer word and payload, stores 0 into its
/// commit word (release, after the raise of `sweeps` and `zeroing`: a claim that reads this zero
/// sees both), then `head`. Returns the new `head`.
fn drop_record(sh: &Shared, head: u32, idx: usize, span: u32) -> u32 {
    let to = head.wrapping_add(span) & POS_MASK;
    sh.zeroing().store(to, Relaxed);
    compiler_fence(SeqCst);
    let rest = span as usize - OFF_REC_PRODUCER;
    // SAFETY: the caller validated the span inside the data area. Nobody else writes it: the
    // mark's producer is dead, or the mark is stale and `span` is its word's alone (the producer
    // word after it is written only by a claim that stands).
    unsafe { sh.mem.zero(OFF_DATA + idx + OFF_REC_PRODUCER, rest) };
    sh.commit_word(idx).store(0, Release);
    sh.head().store(to, Release);
    sh.wake_producers();
    to
}

/// Run by a consumer that has just attached (no other consumer runs): a consumer killed in the
/// middle of a sweep left `sweeps` odd, which would send every producer's claim down its slow
/// path. Raising it is safe: a producer relies only on seeing it odd or changed after a sweep
/// took its word, and the dead consumer's raise before that came first.
pub(crate) fn end_dead_sweep(sh: &Shared) {
    if sh.sweeps().load(Relaxed) & 1 != 0 {
        sh.sweeps().fetch_add(1, SeqCst);
    }
}

/// Zeroes the `len` bytes (a multiple of 8) of whole records at data index `idx`, which the
/// dead consumer before this one had consumed.
fn zero_records(sh: &Shared, idx: usize, len: usize) {
    // SAFETY: the caller keeps the range inside the data area; its records were consumed, so no
    // producer writes them until `head` moves past them.
    #[cfg(not(loom))]
    unsafe {
        sh.mem.zero(OFF_DATA + idx, len)
    };
    // The loom model clears a commit word only where a zeroed range starts: one record at a time.
    #[cfg(loom)]
    for at in (idx..idx + len).step_by(RECORD_ALIGN) {
        // SAFETY: as above.
        unsafe { sh.mem.zero(OFF_DATA + at, RECORD_ALIGN) };
    }
}

// ---- producer -----------------------------------------------------------------------------

/// A producer's private state.
#[derive(Debug)]
pub(crate) struct Producer {
    /// The end position of this producer's last reservation; in SPSC also the tail position
    /// (this producer is its only writer).
    tail: u32,
    /// This producer saw [`RX_CLOSED`]: the consumer's close is final, so every later send
    /// fails without touching the ring.
    rx_closed: bool,
    /// The last `head` seen; in SPSC it bounds the free space without touching the consumer's
    /// cache line, in both modes it is what a parked producer waits to see change.
    head_seen: u32,
    /// The producer word of this producer's records: slot + 1 in MPSC, 0 in SPSC.
    tag: u32,
}

impl Producer {
    /// A producer in `slot` starting at `tail`: the word its caller loaded and checked (loaded
    /// again here, it could be one a peer wrote since, off a record boundary).
    pub(crate) fn new(sh: &Shared, slot: usize, tail: u32) -> Self {
        Self {
            tail: tail & POS_MASK,
            head_seen: sh.head().load(Acquire) & POS_MASK,
            rx_closed: false,
            tag: if sh.mode == MODE_MPSC {
                slot as u32 + 1
            } else {
                0
            },
        }
    }

    /// Reserves a record for a `len`-byte payload; `Ok(None)` when the ring is full. Writes a
    /// skip record first when the record would cross the end of the data area.
    ///
    /// The consumer's close is not looked for here while there is room: the commit that follows
    /// finds it ([`Producer::commit`]). A full ring is where a closed one would keep a producer
    /// waiting, so `None` is never returned once the consumer has closed.
    ///
    /// # Errors
    /// `EMSGSIZE` when `len` exceeds one record (callers split longer messages first); `EPIPE`
    /// when this producer saw the consumer's close, when the ring is full and the consumer or a
    /// sender closed the channel, and in MPSC when a sender closed it; `EBADMSG` when the
    /// positions are corrupt.
    #[inline]
    pub(crate) fn try_reserve(&mut self, sh: &Shared, len: usize) -> Result<Option<usize>> {
        if len > sh.max_record {
            return Err(ChannelError::TooLong(format!(
                "{len} bytes do not fit one record ({} at most)",
                sh.max_record
            )));
        }
        if self.rx_closed {
            return Err(super::closed(sh));
        }
        let span = record_span(len) as u32;
        if sh.mode == MODE_SPSC {
            self.reserve_spsc(sh, span)
        } else {
            self.reserve_mpsc(sh, span)
        }
    }

    #[inline]
    fn reserve_spsc(&mut self, sh: &Shared, span: u32) -> Result<Option<usize>> {
        for _ in 0..2 {
            let idx = self.tail & sh.mask;
            let to_end = sh.capacity - idx;
            let need = span.min(to_end);
            if !self.space_spsc(sh, need)? {
                return full(sh);
            }
            self.tail = self.tail.wrapping_add(need) & POS_MASK;
            sh.tail().store(self.tail, Relaxed);
            if need == span {
                self.mark(sh, idx as usize, span);
                return Ok(Some(idx as usize));
            }
            commit_skip(sh, idx as usize, to_end);
        }
        // After a skip the record starts at index 0, where it always fits.
        Err(corrupt("reservation did not fit after wrapping".into()))
    }

    #[inline]
    fn space_spsc(&mut self, sh: &Shared, need: u32) -> Result<bool> {
        let cap = sh.capacity;
        let used = self.tail.wrapping_sub(self.head_seen) & POS_MASK;
        if used <= cap && cap - used >= need {
            return Ok(true);
        }
        // Only this producer ends the stream, and it sends nothing after: a closed tail here was
        // written by a peer. Refused where the TypeScript producer refuses it, so that a runtime
        // sending through `put_from` fails as one sending in TypeScript does.
        if sh.tail().load(Acquire) & TAIL_CLOSED != 0 {
            return Err(super::closed(sh));
        }
        self.head_seen = sh.head().load(Acquire) & POS_MASK;
        let used = self.tail.wrapping_sub(self.head_seen) & POS_MASK;
        if used > cap {
            return Err(corrupt(format!(
                "head {:#x} is more than capacity behind tail {:#x}",
                self.head_seen, self.tail
            )));
        }
        Ok(cap - used >= need)
    }

    fn reserve_mpsc(&mut self, sh: &Shared, span: u32) -> Result<Option<usize>> {
        let cap = sh.capacity;
        let mut last_bad = None;
        for _ in 0..STEP_LIMIT {
            // head before tail: the tail read later is never behind the head read earlier.
            let head = sh.head().load(Acquire) & POS_MASK;
            let tail = sh.tail().load(Acquire);
            self.head_seen = head;
            if tail & TAIL_CLOSED != 0 {
                return Err(super::closed(sh));
            }
            if tail % RECORD_ALIGN as u32 != 0 {
                return Err(corrupt(format!(
                    "tail {tail:#x} is not a position (a sender marks it so when it finds tail gone back over records not read yet)"
                )));
            }
            let used = tail.wrapping_sub(head) & POS_MASK;
            if used > cap {
                // Either head moved between the two loads, or the positions are corrupt: only
                // the same pair seen twice is corruption.
                if last_bad == Some((head, tail)) {
                    return Err(corrupt(format!(
                        "head {head:#x} and tail {tail:#x} are more than capacity apart"
                    )));
                }
                last_bad = Some((head, tail));
                continue;
            }
            let idx = tail & sh.mask;
            let to_end = cap - idx;
            let need = span.min(to_end);
            if cap - used < need {
                return full(sh);
            }
            let next = tail.wrapping_add(need) & POS_MASK;
            // Before the tail CAS: a sweep that ended before this load took nothing past its
            // tail, which this CAS then moves (see `claim`).
            let sweeps = sh.sweeps().load(Acquire);
            if sh
                .tail()
                .compare_exchange_weak(tail, next, AcqRel, Relaxed)
                .is_err()
            {
                continue;
            }
            let idx = idx as usize;
            if !self.claim(sh, idx, tail, mark_word(self.slot(), need), sweeps)? {
                // The consumer swept the reservation (this producer stalled before its mark),
                // or a peer wrote there: reserve again.
                continue;
            }
            self.tail = next;
            if need == span {
                // SAFETY: the claim gave this producer the record's bytes, inside the data area;
                // the commit's release store publishes this plain write.
                unsafe {
                    sh.mem
                        .write(OFF_DATA + idx + OFF_REC_PRODUCER, &self.tag.to_le_bytes())
                };
                // Before the payload in the instruction stream: a consumer that finds this
                // producer killed takes the record's whole span only if this word is written
                // (see `Consumer::drop_mark`).
                compiler_fence(SeqCst);
                return Ok(Some(idx));
            }
            commit_skip(sh, idx, to_end);
        }
        // Each failed try means another producer moved `tail` (or a peer wrote it): after
        // many, the caller waits for room as when the ring is full, and checks its deadline.
        full(sh)
    }

    /// The producer slot this producer's marks name: 0 in SPSC.
    fn slot(&self) -> usize {
        self.tag.saturating_sub(1) as usize
    }

    /// Marks the record just reserved at `idx` as this producer's (SPSC: nobody else writes
    /// there): the commit word [`mark_word`] (release). A receiver that finds the producer dead
    /// steps over the record as a skip record of that span (see [`layout`](super::layout),
    /// *Records*).
    #[inline]
    fn mark(&self, sh: &Shared, idx: usize, span: u32) {
        sh.commit_word(idx).store(mark_word(0, span), Release);
    }

    /// Claims the record reserved at position `pos` (index `idx`) with a CAS of its commit word
    /// from 0 to `mark` (MPSC); `sweeps` is the word as loaded before the tail CAS. False when
    /// the consumer swept the reservation first, or a peer wrote the word: nothing is written,
    /// and the caller reserves again.
    ///
    /// A sweep CASes each word it takes from 0 to [`SWEPT`], so it fails where this claim landed
    /// first, and this claim fails on a word it holds. What remains is a claim that lands after a
    /// sweep took the word and zeroed it again: the consumer raised `sweeps` before that zero
    /// store (release), which this CAS read (acquire), so the load after it sees the raise,
    /// unless `sweeps` was odd already. A sweep that had ended before the first load took
    /// nothing at or past `pos`: its `tail` load came before that end, which came before this
    /// producer's tail CAS. So only a claim that sees `sweeps` odd or changed checks whether its
    /// position was consumed ([`Producer::consumed`]), and undoes itself if so.
    ///
    /// The same check runs before the CAS when a sweep has run since the first load: a producer
    /// swept while it stalled before its claim finds its position consumed, and does not CAS at
    /// all. Its CAS expects 0, and a lap of the ring later the word at that index may be 0 again
    /// inside another producer's record (or free space at `head`). What is left is a stall
    /// between this check and the CAS long enough for a sweep and a lap, with the undo after
    /// it: `docs/channel.md`, *Liveness*.
    ///
    /// A producer killed in that window, between its CAS and its undo, leaves a *stale* mark.
    /// Where it lands on the first word of a later reservation, the producer that reserved it
    /// finds a mark where only its own can be (nobody else reserved that position in this lap,
    /// and the consumer zeroed it before it moved `head` past it), and takes the word over with a
    /// second CAS, once it has checked that its position is not consumed: a mark there may also
    /// be a live producer's of a later lap, if this one stalled before its first CAS long enough
    /// to be swept (the failed CAS acquires that mark, so the check sees the lap). The second CAS
    /// fails if the consumer took the stale mark first ([`Consumer::drop_mark`]), or if a
    /// stalled producer undid it meanwhile: the claim then fails as above, and never CASes again
    /// (a 0 there may be the consumer's, after it took the word).
    ///
    /// A committed record's word (not a skip record) at a position not consumed is no producer's
    /// of this lap nor the consumer's: `tail` went back over records not read yet (a peer wrote
    /// it, or stored a value it had read before). Reserving again would land inside that
    /// record's payload, where a zero word or one that looks like a stale mark let this producer
    /// write over another sender's message, which the consumer then delivered as it was: it is
    /// `EBADMSG` instead. (Seen at a position consumed, it is a later lap's: this producer
    /// stalled, and was swept.)
    #[inline]
    fn claim(&self, sh: &Shared, idx: usize, pos: u32, mark: u32, sweeps: u32) -> Result<bool> {
        let quiet = || sweeps & 1 == 0 && sh.sweeps().load(Acquire) == sweeps;
        if !quiet() && Self::consumed(sh, pos) {
            return Ok(false);
        }
        let word = sh.commit_word(idx);
        if let Err(seen) = word.compare_exchange(0, mark, AcqRel, Acquire) {
            if !is_mark(seen) {
                if seen & (REC_COMMITTED | REC_SKIP) == REC_COMMITTED && !Self::consumed(sh, pos) {
                    // `tail` now lies inside that record, where the next reservation (this
                    // sender's through another path, or another sender's) would claim a payload
                    // word: off the record boundary, every sender and the receiver refuse it.
                    sh.tail().fetch_or(TAIL_BROKEN, AcqRel);
                    return Err(corrupt(format!(
                        "a record committed ({seen:#x}) at position {pos:#x}, which this sender has just reserved: tail went back over records not read yet"
                    )));
                }
                return Ok(false);
            }
            if Self::consumed(sh, pos)
                || word.compare_exchange(seen, mark, AcqRel, Relaxed).is_err()
            {
                return Ok(false);
            }
        }
        if quiet() || !Self::consumed(sh, pos) {
            return Ok(true);
        }
        // Swept: undo. Nobody else writes the word now: the consumer is past it, and producers
        // reach it a lap of the ring later.
        let _ = sh
            .commit_word(idx)
            .compare_exchange(mark, 0, Relaxed, Relaxed);
        Ok(false)
    }

    /// Whether the consumer has consumed position `pos` (behind `head`, or between `head` and
    /// `zeroing`), which it does to a record not committed only in a sweep.
    #[cold]
    fn consumed(sh: &Shared, pos: u32) -> bool {
        let head = sh.head().load(Acquire) & POS_MASK;
        // Stored before the sweep's zero stores (release), one of which a claim read.
        let zeroing = sh.zeroing().load(Relaxed) & POS_MASK;
        let ahead = pos.wrapping_sub(head) & POS_MASK;
        let taken = zeroing.wrapping_sub(head) & POS_MASK;
        ahead >= sh.capacity || ahead < taken
    }

    /// The payload bytes of the record reserved at `idx`.
    pub(crate) fn payload_offset(idx: usize) -> usize {
        OFF_DATA + idx + RECORD_HEADER_SIZE
    }

    /// Publishes the record reserved at `idx` (this producer's last reservation) with a
    /// `len`-byte payload; `kind` is 0, [`REC_ABORT`], or a fragment's [`REC_MORE`] and
    /// [`REC_CONT`] bits.
    ///
    /// # Errors
    /// `EPIPE` when the consumer closed the channel without consuming the record: it will
    /// never be read. A record committed while the consumer closes is reported sent only if
    /// the consumer consumed it before closing, or if the wake-up after the commit came before
    /// the close mark (the commit then came before the close, as with any message the consumer
    /// leaves unread).
    #[inline]
    pub(crate) fn commit(&mut self, sh: &Shared, idx: usize, len: usize, kind: u32) -> Result<()> {
        // The producer word was written after the claim.
        sh.commit_word(idx)
            .store(REC_COMMITTED | kind | len as u32, Release);
        if sh.wake_consumer() {
            return self.committed_after_close(sh);
        }
        Ok(())
    }

    /// The consumer closed the channel: `Ok` if it consumed this producer's last record before
    /// closing (it publishes `head` before its close mark), else `EPIPE`. Later sends fail at
    /// once.
    #[cold]
    fn committed_after_close(&mut self, sh: &Shared) -> Result<()> {
        self.rx_closed = true;
        // Pairs with the consumer's SeqCst swap of the mark, which follows its last head store.
        fence(Acquire);
        let head = sh.head().load(Acquire) & POS_MASK;
        // Unconsumed: `head` up to a ring behind this record's end. Consumed: `head` at the end
        // or anywhere ahead, however far: other producers' records may have gone round the ring
        // many times between the commit and this load (positions wrap only after 2 GiB).
        let behind = self.tail.wrapping_sub(head) & POS_MASK;
        if behind == 0 || behind > sh.capacity {
            return Ok(());
        }
        Err(super::closed(sh))
    }

    /// Abandons the record reserved at `idx`: zeroes what may have been written, then the
    /// producer word, and commits it as a skip record, so the consumer steps over it.
    pub(crate) fn abandon(&mut self, sh: &Shared, idx: usize, len: usize) {
        // SAFETY: the reservation gave this producer the record's bytes; they are in bounds.
        unsafe { sh.mem.zero(OFF_DATA + idx + RECORD_HEADER_SIZE, len) };
        // The payload first: a consumer that finds this producer killed in between takes the
        // whole record while the producer word is there, and only the mark's word once it is
        // gone (see `Consumer::drop_mark`), so the rest must be zero by then.
        compiler_fence(SeqCst);
        // SAFETY: as above.
        unsafe { sh.mem.zero(OFF_DATA + idx + OFF_REC_PRODUCER, 4) };
        let span = record_span(len) as u32;
        sh.commit_word(idx).store(
            REC_COMMITTED | REC_SKIP | (span - RECORD_HEADER_SIZE as u32),
            Release,
        );
        sh.wake_consumer();
    }

    /// Marks the channel closed (no more reservations), then wakes both sides.
    pub(crate) fn close(&mut self, sh: &Shared) {
        sh.tail().fetch_or(TAIL_CLOSED, AcqRel);
        sh.wake_consumer();
        sh.wake_producers();
    }

    /// True if a parked producer should look again: `head` moved or someone closed.
    pub(crate) fn should_wake(&self, sh: &Shared) -> bool {
        sh.head().load(Acquire) & POS_MASK != self.head_seen || sh.rx_closed() || sh.tail_closed()
    }

    /// In SPSC, `head` as it is now and the free bytes it leaves before this producer's tail;
    /// `None` where `head` is more than the capacity behind it (corrupt: the reservation that
    /// follows reports it). Touches nothing but `head`.
    pub(crate) fn room_now(&self, sh: &Shared) -> Option<(u32, u32)> {
        let head = sh.head().load(Acquire) & POS_MASK;
        let used = self.tail.wrapping_sub(head) & POS_MASK;
        (used <= sh.capacity).then(|| (head, sh.capacity - used))
    }
}

/// `Ok(None)` for a full ring, or `EPIPE` if the consumer closed it: a producer that waits for
/// room looks for the close here, the commit being the place while there is room.
#[inline]
fn full(sh: &Shared) -> Result<Option<usize>> {
    if sh.rx_closed() {
        return Err(super::closed(sh));
    }
    Ok(None)
}

/// Commits the skip record that fills `to_end` bytes at `idx` up to the end of the data area.
fn commit_skip(sh: &Shared, idx: usize, to_end: u32) {
    sh.commit_word(idx).store(
        REC_COMMITTED | REC_SKIP | (to_end - RECORD_HEADER_SIZE as u32),
        Release,
    );
    sh.wake_consumer();
}

// ---- consumer -----------------------------------------------------------------------------

/// What the consumer found at `head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peek {
    /// A committed data record: its data index, payload length, and kind (0, [`REC_ABORT`], or a
    /// fragment: [`REC_MORE`], [`REC_CONT`] or both).
    Message { idx: usize, len: usize, kind: u32 },
    /// Nothing reserved past `head`.
    Empty,
    /// A record is reserved at `head` but neither marked nor committed yet.
    InFlight,
    /// A record is reserved and marked at `head` but not committed yet: its data index, span,
    /// and the producer slot its mark names.
    Reserved { idx: usize, span: u32, slot: usize },
    /// Closed by a sender, and everything before the close was consumed.
    End,
    /// As many skip records as allowed were stepped over (or, in a receiver's look,
    /// [`STEP_LIMIT`] records consumed) without finding a message: look again once the caller
    /// has checked its deadline.
    Busy,
}

/// The kind of a fragment in the middle of a message: more follow, and it is not the first.
pub(crate) const MORE_CONT: u32 = REC_MORE | REC_CONT;

/// The most records that deliver nothing (skip and abort records, the rest of a message dropped
/// or begun before this receiver) that one look at the ring steps over or consumes before it
/// lets its caller check the deadline. Producers write a skip record per lap of the ring and per
/// abandoned reservation, and an abort record per failed message; a peer writing them as fast as
/// they are consumed would otherwise keep one look going for as long as it likes. Fragments of
/// a message being put together count too, one step and one more per [`FRAGMENT_STEP_BYTES`]
/// of each: the receiver's limits bound one message, but a peer that begins a new one (or
/// aborts) before each limit is reached would otherwise hold the look without end. A message of
/// more fragments than that takes more than one look, each going on where the last stopped.
pub(crate) const STEP_LIMIT: u32 = 1024;

/// The bytes of fragments copied that count as one step against [`STEP_LIMIT`]: a look copies
/// at most 64 MiB before its caller looks at the clock (one fragment of 128 MiB in a ring of the
/// largest capacity).
pub(crate) const FRAGMENT_STEP_BYTES: usize = 64 * 1024;

/// The most bytes one sweep takes: 64 Ki words, 1-2 ms of CASes and stores.
pub(crate) const SWEEP_MAX: u32 = 512 << 10;

/// A consumer stores `head` as soon as it is done with a message ([`Consumer::release`]), so a
/// producer that looks for room after a receive returned finds it. But it looks for parked
/// producers to wake (a SeqCst fence and a load of `tx_waiting`) only once this many bytes (or
/// a quarter of a smaller ring, [`wake_look_bytes`]) were handed back since it last looked;
/// when a receive leaves no message committed after it (it may not receive again soon);
/// whenever it finds nothing to take, before it parks; and when it closes. A producer parked in
/// between, on a full ring whose consumer has stopped taking while messages still wait, finds
/// the room at the end of its park (100 ms at most, `SENDER_PARK_MAX`). The TypeScript receiver does the
/// same (`WAKE_LOOK_BYTES` in `ring.ts`): in Node.js the look took about 15 ns of the 92-95 of
/// a 64 B receive.
pub(crate) const WAKE_LOOK_BYTES: u32 = 4096;

/// A consumer that looks for parked producers ([`WAKE_LOOK_BYTES`]) while messages wait, in a
/// channel of one producer, wakes it only once at least this fraction of the ring (1 / the
/// divisor) is free ([`Consumer::look`]); a release that leaves no message committed next, a
/// consumer that finds nothing to take, and the close, wake it whatever the room, and with many
/// producers every look wakes them (while the others keep more than half the ring full, a
/// parked one waiting for half would wait for its park to end). Woken at every look, a sender
/// that shares the receiver's core takes the CPU for each look's worth of room and parks again
/// (a futex wake and two switches every 4 KiB). Both on one core, alternating runs, messages/s,
/// waking at every look against at half: the Rust ring (`native_ring`) 64 B 13.9-16.3 M against
/// 20.9-22.2 M, 4 KiB 1.70-2.05 M against 2.27-2.30 M; Deno's `recvInto` (`bench/pair.ts`) 4 KiB
/// 1.57-1.61 M against 1.86-2.10 M; between two cores (no sender parks) unchanged. The
/// TypeScript receiver does the same (`WAKE_ROOM_DIVISOR` in `ring.ts`, with what it measured
/// in Node.js).
pub(crate) const WAKE_ROOM_DIVISOR: u32 = 2;

/// [`WAKE_LOOK_BYTES`] for a ring of `capacity` bytes.
#[inline]
pub(crate) fn wake_look_bytes(capacity: u32) -> u32 {
    (capacity >> 2).min(WAKE_LOOK_BYTES)
}

/// The consumer's private state.
#[derive(Debug)]
pub(crate) struct Consumer {
    /// The consumer position (this consumer is its only writer).
    pub(crate) head: u32,
    /// The `head` at which this consumer last looked for parked producers (see
    /// [`WAKE_LOOK_BYTES`]); short of `head` by a made-up distance while a wake is due that a
    /// look left for the next wait ([`Consumer::look`]).
    looked: u32,
    /// A `tail` position known to be reached; bounds records without loading `tail` each time.
    tail_seen: u32,
    /// The `tail` word as last seen when nothing was ready.
    tail_word: u32,
    /// How many skip records the last [`Consumer::peek`] stepped over.
    pub(crate) stepped: u32,
}

impl Consumer {
    /// A consumer starting at `head`: the position its caller checked (loaded again here, it
    /// could be one a peer wrote since, off a record boundary). A wake is due (`looked` short
    /// of `head`): a consumer that took over may owe one that the dead one left pending
    /// ([`Consumer::look`]).
    pub(crate) fn new(head: u32) -> Self {
        let head = head & POS_MASK;
        Self {
            head,
            looked: head.wrapping_sub(1) & POS_MASK,
            tail_seen: head,
            tail_word: 0,
            stepped: 0,
        }
    }

    /// Looks at `head`, stepping over skip records (at most [`STEP_LIMIT`]: then
    /// [`Peek::Busy`]; how many in `stepped`).
    ///
    /// # Errors
    /// As [`Consumer::peek_within`].
    #[inline]
    pub(crate) fn peek(&mut self, sh: &Shared) -> Result<Peek> {
        self.peek_within(sh, STEP_LIMIT)
    }

    /// [`Consumer::peek`], stepping over at most `limit` skip records.
    ///
    /// # Errors
    /// `EBADMSG` if the record at `head` or the positions are corrupt (the state is unchanged:
    /// the same error comes again).
    #[inline]
    pub(crate) fn peek_within(&mut self, sh: &Shared, limit: u32) -> Result<Peek> {
        let cap = sh.capacity as usize;
        self.stepped = 0;
        loop {
            if self.stepped >= limit {
                return Ok(Peek::Busy);
            }
            let idx = (self.head & sh.mask) as usize;
            let word = sh.commit_word(idx).load(Acquire);
            if word == 0 {
                // Nothing to take: parked producers may have room since the last look.
                self.wake_pending(sh);
                let tail = sh.tail().load(Acquire);
                self.tail_word = tail;
                let pos = tail & POS_MASK;
                if pos == self.head {
                    return Ok(if tail & TAIL_CLOSED != 0 {
                        Peek::End
                    } else {
                        Peek::Empty
                    });
                }
                if pos.wrapping_sub(self.head) & POS_MASK > sh.capacity {
                    return Err(corrupt(format!(
                        "tail {tail:#x} is more than capacity ahead of head {:#x}",
                        self.head
                    )));
                }
                return Ok(Peek::InFlight);
            }
            let committed = word & REC_COMMITTED != 0;
            // A reservation mark: REC_SKIP without the commit bit, its producer's slot and
            // its span in 8-byte units (every other bit is one of those).
            let mark = (!committed).then(|| (mark_slot(word), mark_span(word)));
            let len = match mark {
                Some((_, span)) => span as usize - RECORD_HEADER_SIZE,
                None => (word & REC_LEN_MASK) as usize,
            };
            let kind = word & REC_KINDS;
            let skip = kind == REC_SKIP;
            let ok = match mark {
                Some((slot, _)) => {
                    word & REC_SKIP != 0
                        && len <= sh.max_record
                        && (slot == 0 || sh.mode == MODE_MPSC)
                }
                None => match kind {
                    // A whole message, or the last fragment of one.
                    0 | REC_CONT => len <= sh.max_record,
                    REC_SKIP => true, // bounded by the checks below
                    // A first fragment, or one in the middle.
                    REC_MORE | MORE_CONT => len == sh.max_record,
                    REC_ABORT => len == 0,
                    _ => false,
                },
            };
            if !ok {
                return Err(corrupt(format!(
                    "record at {:#x} has commit word {word:#010x} (one record holds at most {} \
                     bytes, a fragment but the last exactly that many)",
                    self.head, sh.max_record
                )));
            }
            let span = record_span(len);
            if span > cap - idx {
                return Err(corrupt(format!(
                    "record at {:#x} ({span} bytes) crosses the end of the ring",
                    self.head
                )));
            }
            let span = span as u32;
            // Counted from `head`; a `tail` seen behind `head` (after a skip over a dead
            // producer's reservation) bounds nothing and is looked at again.
            let seen = self.tail_seen.wrapping_sub(self.head) & POS_MASK;
            if seen > sh.capacity || span > seen {
                let tail_word = sh.tail().load(Acquire);
                let tail = tail_word & POS_MASK;
                let avail = tail.wrapping_sub(self.head) & POS_MASK;
                if mark.is_some() && avail == 0 {
                    // A mark at `tail`, in free space. MPSC: a producer marks only inside what
                    // its tail CAS reserved, which this load sees, so the mark is stale (see
                    // `Producer::claim`), and the producer that reserves here takes it over.
                    // SPSC: the producer's own, whose relaxed store of `tail` (a plain one in
                    // JavaScript, which orders it only before the commit) is not seen yet.
                    // Either way nothing is ready.
                    self.tail_word = tail_word;
                    return Ok(if tail_word & TAIL_CLOSED != 0 {
                        Peek::End
                    } else {
                        Peek::Empty
                    });
                }
                if mark.is_some() && sh.mode == MODE_MPSC && span > avail && avail <= sh.capacity {
                    // A mark past `tail` is nobody's, as above: stale.
                    // The first word of a reservation, which its producer takes over, unless
                    // it died: the liveness check takes the mark then (never before the
                    // producer has had an interval to take it).
                    return Ok(Peek::Reserved {
                        idx,
                        span,
                        slot: mark_slot(word),
                    });
                }
                if avail > sh.capacity || span > avail {
                    return Err(corrupt(format!(
                        "record at {:#x} ({span} bytes) runs past tail {tail:#x}",
                        self.head
                    )));
                }
                self.tail_seen = tail;
            }
            if let Some((slot, _)) = mark {
                return Ok(Peek::Reserved { idx, span, slot });
            }
            if !skip {
                return Ok(Peek::Message { idx, len, kind });
            }
            // A skip record's payload is zero already (never written, or zeroed by abort).
            // Release: a word a consumer killed in its sweep took ([`SWEPT`]) is zeroed here,
            // and a producer's claim that reads the zero must see the raise of `sweeps` before.
            self.announce(sh, span);
            sh.commit_word(idx).store(0, Release);
            self.hand_back(sh, span);
            self.stepped += 1;
        }
    }

    /// The payload of the message at `idx`.
    pub(crate) fn payload_offset(idx: usize) -> usize {
        OFF_DATA + idx + RECORD_HEADER_SIZE
    }

    /// The producer slot of the committed record at `idx`: 0 in SPSC (its producer word is not
    /// read), `producer - 1` in MPSC.
    ///
    /// # Errors
    /// `EBADMSG` if the producer word is not in `1..=64`.
    pub(crate) fn producer_slot(&self, sh: &Shared, idx: usize) -> Result<usize> {
        if sh.mode == MODE_SPSC {
            return Ok(0);
        }
        // Its producer wrote the word before the commit word's release store, which peek loaded
        // with acquire, and nobody writes it again until head moves past the record.
        let tag = self.producer_word(sh, idx) as usize;
        if tag == 0 || tag > MAX_PRODUCERS {
            return Err(corrupt(format!(
                "record at {:#x} has producer word {tag}, not a slot in 1..={MAX_PRODUCERS}",
                self.head
            )));
        }
        Ok(tag - 1)
    }

    /// Consumes the message at `idx` with a `len`-byte payload: zeroes it and hands its room
    /// back ([`Consumer::hand_back`]).
    #[inline]
    pub(crate) fn release(&mut self, sh: &Shared, idx: usize, len: usize) {
        let span = record_span(len) as u32;
        self.announce(sh, span);
        // SAFETY: peek validated that the record lies inside the data area, and until `head`
        // moves past it no producer may touch it.
        unsafe { sh.mem.zero(OFF_DATA + idx, RECORD_HEADER_SIZE + len) };
        self.hand_back(sh, span);
    }

    /// Stores `head` past the `span` bytes at it, then looks for parked producers if a look is
    /// due ([`WAKE_LOOK_BYTES`]): with no message committed next, it wakes them whatever the
    /// room (this may be the last receive for a while); else, a look's distance since the last,
    /// [`Consumer::look`].
    #[inline]
    fn hand_back(&mut self, sh: &Shared, span: u32) {
        self.head = self.head.wrapping_add(span) & POS_MASK;
        sh.head().store(self.head, Release);
        // Relaxed: it only decides when to look.
        let next = (self.head & sh.mask) as usize;
        if sh.commit_word(next).load(Relaxed) & REC_COMMITTED == 0 {
            self.wake_producers(sh);
        } else if self.head.wrapping_sub(self.looked) & POS_MASK >= wake_look_bytes(sh.capacity) {
            self.look(sh);
        }
    }

    /// A look for parked producers while messages wait ([`Consumer::hand_back`]): in a channel
    /// of one producer, wakes it once [`WAKE_ROOM_DIVISOR`] of the ring is free. Short of that
    /// it leaves it parked and looks again once enough room could have come back (at most
    /// [`wake_look_bytes`] on), and the wake stays due meanwhile: `looked` is set that far
    /// back, and at least one byte short of `head`, so [`Consumer::wake_pending`] wakes it
    /// before a wait. With many producers it wakes them at every look: while the others keep
    /// more than half the ring full, a parked one would otherwise wait for its park to end.
    #[inline]
    fn look(&mut self, sh: &Shared) {
        fence(SeqCst);
        if sh.tx_waiting().load(Relaxed) == 0 {
            self.looked = self.head;
            return;
        }
        // Relaxed: it only decides when to wake. A corrupt tail (more than the capacity ahead)
        // wakes them: they find the corruption themselves.
        let used = sh.tail().load(Relaxed).wrapping_sub(self.head) & POS_MASK;
        let want = sh.capacity / WAKE_ROOM_DIVISOR;
        if sh.mode == MODE_SPSC && used <= sh.capacity && sh.capacity - used < want {
            let every = wake_look_bytes(sh.capacity);
            let next = (want - (sh.capacity - used)).min(every);
            self.looked = self.head.wrapping_add(next).wrapping_sub(every + 1) & POS_MASK;
            return;
        }
        self.looked = self.head;
        sh.wake_parked();
    }

    /// Wakes every parked producer, if any, and notes where `head` stood.
    #[inline]
    pub(crate) fn wake_producers(&mut self, sh: &Shared) {
        self.looked = self.head;
        sh.wake_producers();
    }

    /// [`Consumer::wake_producers`] if `head` moved since the last look: before a wait.
    #[inline]
    pub(crate) fn wake_pending(&mut self, sh: &Shared) {
        if self.looked != self.head {
            self.wake_producers(sh);
        }
    }

    /// Stores `zeroing = head + span`: the consumer is about to zero the `span` bytes at `head`
    /// (or, for [`Consumer::skip_to`], to move over them) and then store `head` there. A consumer
    /// killed in between leaves `zeroing` ahead of `head`, and the one that takes over finishes
    /// the job ([`finish_zeroing`]) instead of waiting at a zeroed commit word as at a record in
    /// flight.
    ///
    /// Relaxed, and no fence: the word matters only once this process is dead (a consumer that
    /// detaches alive leaves `zeroing == head`, and its CAS of `consumer_pid` to 0 orders that
    /// before the next consumer's attach). A killed process stops at an instruction boundary,
    /// and every store it executed before that reaches memory: the kernel takes the process
    /// down through its own fully ordered paths before another process can see it dead (`kill`
    /// failing with `ESRCH`, or state `Z` in `/proc`). What the program must ensure is only that
    /// this store comes before the zeroing in the instruction stream: the compiler fence keeps
    /// the compiler from moving the plain writes of the zeroing above it (it emits no
    /// instruction). Producers read the word only to check a claim made during a sweep, whose
    /// zero stores are release stores after the store of `zeroing` (see [`Consumer::sweep`]).
    #[inline]
    fn announce(&self, sh: &Shared, span: u32) {
        sh.zeroing()
            .store(self.head.wrapping_add(span) & POS_MASK, Relaxed);
        compiler_fence(SeqCst);
    }

    #[inline]
    fn advance(&mut self, sh: &Shared, span: u32) {
        self.head = self.head.wrapping_add(span) & POS_MASK;
        sh.head().store(self.head, Release);
        self.wake_producers(sh);
    }

    /// Consumes the marked record at `idx` (at `head`) that no producer will commit: the whole
    /// record (`span` bytes) when its dead producer reserved it, or the mark's word alone (`span`
    /// 8) when the mark is stale, left by a producer whose claim had lost its place (see
    /// `Producer::claim`). Takes the mark with a CAS to its [`dropping_word`], as a sweep takes a
    /// word, with `sweeps` raised before and after: the producer whose reservation begins on a
    /// stale mark takes it over with a CAS too, so exactly one of the two has it, and a claim
    /// that reads the zero stored here sees the raise and finds its position consumed. False,
    /// with nothing consumed, if the word no longer holds `mark`.
    ///
    /// With `owner` (MPSC: the slot's producer word, `slot + 1`) the whole span is taken only if
    /// the record's producer word holds it: a producer writes it once its claim stands, before
    /// its payload, so a mark without it is stale (the reservation under it is someone else's,
    /// of another length) or its producer died before writing anything; either way the rest of
    /// the reservation is zero, and left to a sweep. It is read before the CAS, so that the
    /// word the CAS stores says how far the record goes to a consumer that takes over from this
    /// one killed right after it ([`finish_drop`]), and again once the CAS took the mark (nobody
    /// writes it then), which decides.
    #[cold]
    pub(crate) fn drop_mark(
        &mut self,
        sh: &Shared,
        idx: usize,
        mark: u32,
        span: u32,
        owner: Option<u32>,
    ) -> bool {
        let taking = |consumer: &Self| match owner {
            Some(owner) if consumer.producer_word(sh, idx) != owner => RECORD_ALIGN as u32,
            _ => span,
        };
        sh.sweeps().fetch_add(1, SeqCst);
        let guess = taking(self);
        let taken = sh
            .commit_word(idx)
            .compare_exchange(mark, dropping_word(guess), SeqCst, Relaxed)
            .is_ok();
        if taken {
            let span = taking(self);
            if span != guess {
                // Ours since the CAS; before `zeroing` in the instruction stream (see `announce`).
                sh.commit_word(idx).store(dropping_word(span), Relaxed);
                compiler_fence(SeqCst);
            }
            self.head = drop_record(sh, self.head, idx, span);
            self.looked = self.head;
        }
        sh.sweeps().fetch_add(1, SeqCst);
        taken
    }

    /// The producer word of the record at `idx`, which nobody writes meanwhile: the caller
    /// loaded its commit (acquire) or took its mark.
    fn producer_word(&self, sh: &Shared, idx: usize) -> u32 {
        let mut word = [0u8; 4];
        // SAFETY: inside the data area (`idx` is a record's start, below the capacity), and not
        // written meanwhile, as the caller ensures.
        unsafe {
            sh.mem.read(
                OFF_DATA + idx + OFF_REC_PRODUCER,
                word.as_mut_ptr(),
                word.len(),
            )
        };
        u32::from_le_bytes(word)
    }

    /// Moves `head` to `to`, over a reservation that its dead producer never marked. The bytes
    /// are zero already: a producer writes nothing before its mark. False, with nothing moved,
    /// if the word at `head` is not 0 (any more): the look that found the reservation unmarked
    /// came before the producer died, which may have marked and committed it, and more, since.
    pub(crate) fn skip_to(&mut self, sh: &Shared, to: u32) -> bool {
        // Loaded after the producer was seen dead: every store it made is in memory.
        if sh.commit_word((self.head & sh.mask) as usize).load(Acquire) != 0 {
            return false;
        }
        let span = to.wrapping_sub(self.head) & POS_MASK;
        // Nothing to zero; `zeroing` follows `head` all the same (it equals `head` between
        // receives, so a consumer taking over never mistakes an old value for unfinished work).
        self.announce(sh, span);
        self.advance(sh, span);
        true
    }

    /// Sweeps (MPSC): takes back the reservations at `head` that nobody marked, because their
    /// producers died between their tail CAS and their mark (or stall there), and moves `head`
    /// past them. Returns how many bytes it took.
    ///
    /// A producer writes nothing into its reservation before its mark, so the bytes from `head`
    /// up to the next marked or committed record are all zero. The sweep claims each 8-byte
    /// word from `head` on by a CAS of 0 to [`SWEPT`], the CAS a producer makes to mark, and
    /// stops at the first that fails (a mark or a commit: the next record), at the `tail`
    /// position, or at the end of the data area. So no producer marks what it took: one that
    /// stalled is left with a failed claim, or with one it finds swept (see `Producer::claim`),
    /// and reserves again. Then it consumes the words as skip records: `zeroing`, the zeroes
    /// (release, so that a producer whose claim reads one sees `zeroing`), `head`. `sweeps` is
    /// raised before and after. A consumer killed in the middle leaves skip records of 8 bytes,
    /// which the next one steps over, and `sweeps` odd, which it makes even when it attaches.
    ///
    /// It sweeps no further than `until` (a dead producer's records end there), nor more than
    /// [`SWEEP_MAX`] bytes in one call, so that a receive overruns its deadline by at most a
    /// few milliseconds; the caller goes on at its next check.
    ///
    /// # Errors
    /// `EBADMSG` if `tail` is more than the capacity ahead of `head`.
    #[cold]
    pub(crate) fn sweep(&mut self, sh: &Shared, until: u32) -> Result<u32> {
        sh.sweeps().fetch_add(1, SeqCst);
        // After the raise: a producer that reserves past this position saw `sweeps` odd, or
        // loaded it after the sweep ended.
        let tail = sh.tail().load(SeqCst) & POS_MASK;
        let ahead = tail.wrapping_sub(self.head) & POS_MASK;
        let idx = (self.head & sh.mask) as usize;
        let mut taken = 0;
        if ahead <= sh.capacity {
            let until = until.wrapping_sub(self.head) & POS_MASK;
            let limit = ahead
                .min(until)
                .min(sh.capacity - idx as u32)
                .min(SWEEP_MAX) as usize;
            while taken < limit
                && sh
                    .commit_word(idx + taken)
                    .compare_exchange(0, SWEPT, SeqCst, Relaxed)
                    .is_ok()
            {
                taken += RECORD_ALIGN;
            }
        }
        if taken > 0 {
            self.announce(sh, taken as u32);
            for at in (idx..idx + taken).step_by(RECORD_ALIGN) {
                sh.commit_word(at).store(0, Release);
            }
            self.advance(sh, taken as u32);
        }
        sh.sweeps().fetch_add(1, SeqCst);
        if ahead > sh.capacity {
            return Err(corrupt(format!(
                "tail {tail:#x} is more than capacity ahead of head {:#x}",
                self.head
            )));
        }
        Ok(taken as u32)
    }

    /// True if a parked consumer should look again: a commit at `head`, or the close bit
    /// changed since the last peek.
    pub(crate) fn should_wake(&self, sh: &Shared) -> bool {
        let idx = (self.head & sh.mask) as usize;
        sh.commit_word(idx).load(Acquire) & REC_COMMITTED != 0
            || (sh.tail().load(Acquire) ^ self.tail_word) & TAIL_CLOSED != 0
    }
}

/// What a receiver running the protocol in another language keeps between two
/// [`take_into`] calls: its own memory, never the shared region's.
#[cfg(not(loom))]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TakeState {
    /// The receiver position, published (`head` in the region holds it).
    pub head: u32,
    /// The position at which the receiver last looked for parked producers (see
    /// `WAKE_LOOK_BYTES`), or a position short of `head` while a wake is due (any value is safe: it
    /// only decides when to look).
    pub looked: u32,
    /// A `tail` position known to be reached (see `Consumer`).
    pub tail_seen: u32,
    /// The capacity the receiver validated when it attached.
    pub capacity: u32,
}

/// One receive of a whole one-record message into `target`, for a receiver whose protocol state
/// lives elsewhere (the TypeScript receiver's fast path): if the record at `state.head` is a
/// committed message of at most `room` bytes, copies it to `target`, consumes it as
/// `Consumer::release` does (zeroes it, stores `head`, looks for parked producers if a look is due)
/// and returns its length. Otherwise returns -1 with nothing taken: nothing there yet, a
/// fragment, an aborted or reserved record, a message longer than `room`, or a corrupt record or
/// position (the caller's own path finds and reports it). Skip records at `head` are stepped over either way, as
/// `Consumer::peek` does; `state` follows.
///
/// # Safety
/// `region` must be a live mapping of a channel region validated with `state.capacity` (a power
/// of two between [`MIN_CAPACITY`] and [`MAX_CAPACITY`]), 8-byte aligned, valid for
/// `OFF_DATA + state.capacity` bytes; `target` valid for writes of `room` bytes (or `room` 0);
/// and the caller the region's one attached consumer, with every record before `state.head`
/// released.
#[cfg(not(loom))]
pub unsafe fn take_into(
    region: *mut u8,
    state: &mut TakeState,
    target: *mut u8,
    room: usize,
) -> i32 {
    // SAFETY: the caller's promise.
    let Some(sh) = (unsafe { foreign_region(region, state.capacity) }) else {
        return -1;
    };
    if state.head % RECORD_ALIGN as u32 != 0 {
        return -1;
    }
    let mut consumer = Consumer {
        head: state.head & POS_MASK,
        looked: state.looked & POS_MASK,
        tail_seen: state.tail_seen & POS_MASK,
        tail_word: 0,
        stepped: 0,
    };
    let taken = match consumer.peek(&sh) {
        Ok(Peek::Message { idx, len, kind: 0 }) if len <= room => {
            // SAFETY: peek validated the committed record inside the data area (its producer's
            // payload writes happen-before the acquire load of its commit word), and the caller
            // promises `target` holds `room >= len` bytes.
            unsafe {
                sh.mem
                    .copy_foreign(Consumer::payload_offset(idx), target, len, false)
            };
            consumer.release(&sh, idx, len);
            len as i32
        }
        _ => -1,
    };
    state.head = consumer.head;
    state.looked = consumer.looked;
    state.tail_seen = consumer.tail_seen;
    taken
}

/// The batch receive's look ahead, for a receiver whose protocol state lives elsewhere (the
/// TypeScript receiver's `recvMany`): finds the run of whole one-record messages of at most
/// `small` bytes each committed back to back from `state.head`, at most `max` of them and at
/// most `out_len` bytes of records, up to the end of the data area; copies those records,
/// headers included, to `out` and their payload lengths to `lens`, and returns how many there
/// are (0 if the record at `state.head` is not one: nothing there yet, a skip record, a
/// fragment, a reservation, or anything `Consumer::peek` would call corrupt, which the
/// caller's own path reports when it gets there). Consumes nothing and writes nothing to the
/// region: the caller hands each message out and consumes it itself, so that one whose handler
/// throws leaves the rest of the run in the ring. `state.tail_seen` follows.
///
/// # Safety
/// As [`take_into`] for `region`; `out` valid for writes of `out_len` bytes and `lens` of `max`
/// `u32`s (or `max` 0).
#[cfg(not(loom))]
pub unsafe fn scan_run(
    region: *mut u8,
    state: &mut TakeState,
    out: *mut u8,
    out_len: usize,
    lens: *mut u32,
    max: usize,
    small: usize,
) -> i32 {
    // SAFETY: the caller's promise.
    let Some(sh) = (unsafe { foreign_region(region, state.capacity) }) else {
        return 0;
    };
    if state.head % RECORD_ALIGN as u32 != 0 || out.is_null() || lens.is_null() {
        return 0;
    }
    let head = state.head & POS_MASK;
    let mut tail_seen = state.tail_seen & POS_MASK;
    let start = (head & sh.mask) as usize;
    let cap = sh.capacity as usize;
    let (mut n, mut bytes) = (0usize, 0usize);
    while n < max && n < i32::MAX as usize {
        let idx = start + bytes;
        let word = sh.commit_word(idx).load(Acquire);
        if word & (REC_COMMITTED | REC_KINDS) != REC_COMMITTED {
            break;
        }
        let len = (word & REC_LEN_MASK) as usize;
        if len > small || len > sh.max_record {
            break;
        }
        let span = record_span(len);
        if span > cap - idx || bytes + span > out_len {
            break;
        }
        // Bounded by `tail`, counted from `head`, as `peek` bounds one record.
        let ahead = (bytes + span) as u32;
        let seen = tail_seen.wrapping_sub(head) & POS_MASK;
        if seen > sh.capacity || ahead > seen {
            let tail = sh.tail().load(Acquire) & POS_MASK;
            let avail = tail.wrapping_sub(head) & POS_MASK;
            if avail > sh.capacity || ahead > avail {
                break;
            }
            tail_seen = tail;
        }
        // SAFETY: `n < max`, and the caller promises `lens` holds `max` entries.
        unsafe { lens.add(n).write_unaligned(len as u32) };
        n += 1;
        bytes += span;
        if idx + span == cap {
            break; // records never cross the end of the data area: the next one is at 0
        }
    }
    // SAFETY: every record of the run is committed and lies inside the data area (checked
    // above; their producers' writes happen-before the acquire loads of their commit words, and
    // nobody writes them until `head` moves past them); the caller promises `out` holds
    // `out_len >= bytes` bytes.
    unsafe { sh.mem.copy_foreign(OFF_DATA + start, out, bytes, false) };
    state.tail_seen = tail_seen;
    n as i32
}

/// The region of a channel whose endpoint runs in another language, in SPSC mode ([`put_from`]
/// switches to MPSC for a tagged sender; [`take_into`] reads no producer word), or `None` for an
/// impossible capacity or address.
///
/// # Safety
/// As [`take_into`]: a live region, 8-byte aligned, of `OFF_DATA + capacity` bytes.
#[cfg(not(loom))]
unsafe fn foreign_region(region: *mut u8, capacity: u32) -> Option<Shared> {
    if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) || !capacity.is_power_of_two() {
        return None;
    }
    Some(Shared {
        // SAFETY: the caller promises a live, aligned region of this many bytes.
        mem: unsafe { Mem::new(region, OFF_DATA + capacity as usize) }?,
        capacity,
        mask: capacity - 1,
        max_record: max_record(capacity),
        mode: MODE_SPSC,
        _owner: None,
    })
}

/// What a sender running the protocol in another language keeps between two [`put_from`]
/// calls: its own memory, never the shared region's.
#[cfg(not(loom))]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutState {
    /// The end of this sender's last reservation; with one sender also the tail position (this
    /// sender is its only writer).
    pub tail: u32,
    /// The last `head` seen.
    pub head_seen: u32,
    /// The capacity the sender validated when it attached.
    pub capacity: u32,
    /// 1 once this sender saw the receiver's close (every later send fails), else 0.
    pub rx_closed: u32,
    /// 0 for the one sender of an SPSC channel; in MPSC, the sender's slot + 1 (its records'
    /// producer word), in `1..=MAX_PRODUCERS`.
    pub tag: u32,
}

/// [`put_from`]: the message was sent.
pub const PUT_SENT: i32 = 0;
/// [`put_from`]: no room now; nothing was reserved (a skip record to the end of the data area
/// may have been written, and `state.tail` moved past it).
pub const PUT_FULL: i32 = 1;
/// [`put_from`]: the message was committed, but the receiver had closed without consuming it:
/// it will never be read (`EPIPE`). `state.rx_closed` is set.
pub const PUT_CLOSED: i32 = 2;

/// One send of a `len`-byte message of one record from `src`, for a sender whose protocol state
/// lives elsewhere (the TypeScript sender's fast path), the one sender of an SPSC channel
/// (`state.tag` 0) or one of an MPSC channel's: reserves, copies, commits and wakes the receiver
/// as `Producer` does. Returns [`PUT_SENT`],
/// [`PUT_FULL`] or [`PUT_CLOSED`], or -1 with nothing reserved when the caller's own path must
/// look (a message longer than one record, this sender already saw the close, the receiver
/// closed and the ring is full, or corrupt positions: that path reports each). `state` follows.
///
/// # Safety
/// As [`take_into`] for `region`; `src` valid for reads of `len` bytes (or `len` 0); the caller
/// attached as the producer `state.tag` names (0: the one producer of an SPSC region; in an MPSC
/// region the slot's producer), with nothing reserved and uncommitted.
#[cfg(not(loom))]
pub unsafe fn put_from(region: *mut u8, state: &mut PutState, src: *const u8, len: usize) -> i32 {
    // SAFETY: the caller's promise.
    let Some(mut sh) = (unsafe { foreign_region(region, state.capacity) }) else {
        return -1;
    };
    if state.tag as usize > MAX_PRODUCERS {
        return -1;
    }
    if state.tag != 0 {
        sh.mode = MODE_MPSC;
    }
    if len > sh.max_record
        || state.rx_closed != 0
        || state.tail % RECORD_ALIGN as u32 != 0
        || (src.is_null() && len != 0)
    {
        return -1;
    }
    let mut producer = Producer {
        tail: state.tail & POS_MASK,
        head_seen: state.head_seen & POS_MASK,
        rx_closed: false,
        tag: state.tag,
    };
    let done = match producer.try_reserve(&sh, len) {
        Ok(Some(idx)) => {
            // SAFETY: the reservation gave this producer the record's bytes, in bounds; the
            // caller promises `src` holds `len` bytes (checked not null unless `len` is 0).
            unsafe {
                sh.mem
                    .copy_foreign(Producer::payload_offset(idx), src.cast_mut(), len, true)
            };
            match producer.commit(&sh, idx, len, 0) {
                Ok(()) => PUT_SENT,
                Err(_) => PUT_CLOSED,
            }
        }
        Ok(None) => PUT_FULL,
        Err(_) => -1,
    };
    state.tail = producer.tail;
    state.head_seen = producer.head_seen;
    state.rx_closed = u32::from(producer.rx_closed);
    done
}

/// The batch send's commit, for the one sender of an SPSC channel whose protocol state lives
/// elsewhere (the TypeScript sender's `sendMany`): publishes the `lens.len()` records that sender
/// reserved back to back from data index `idx`, marked and wrote, whose payload lengths are
/// `lens`, with one release store of each commit word in order, then wakes the consumer if it
/// may be parked, as `Producer::commit` does after each record. Returns 0, 1 when the consumer
/// had closed the channel (the caller then tells whether it consumed the run first), or -1 with
/// nothing written: a sender of an MPSC channel (`state.tag` not 0), or records that do not fit
/// the data area as described.
///
/// Where each commit word goes is computed from `idx` and `lens` alone, never read from the
/// region, so a peer's writes cannot steer these stores.
///
/// # Safety
/// As [`put_from`] for `region` and `state`; the records are the caller's own reservation.
#[cfg(not(loom))]
pub unsafe fn commit_run(region: *mut u8, state: &PutState, idx: u32, lens: &[u32]) -> i32 {
    // SAFETY: the caller's promise.
    let Some(sh) = (unsafe { foreign_region(region, state.capacity) }) else {
        return -1;
    };
    if state.tag != 0 {
        return -1;
    }
    commit_records(&sh, idx as usize, lens)
}

/// [`commit_run`]'s checks and stores in a ring `sh`: the loom model of the batch commit
/// (`loom_tests`) runs this, where the foreign region cannot be modelled.
pub(crate) fn commit_records(sh: &Shared, idx: usize, lens: &[u32]) -> i32 {
    if idx % RECORD_ALIGN != 0 {
        return -1;
    }
    // All of the run is checked before its first store: a run committed in part would leave
    // its sender nothing sound to do with the rest.
    let mut end = idx;
    for &len in lens {
        if len as usize > sh.max_record {
            return -1;
        }
        end += record_span(len as usize);
        if end > sh.capacity as usize {
            return -1;
        }
    }
    let mut at = idx;
    for &len in lens {
        // The payload and the mark were written before this call, in program order.
        sh.commit_word(at).store(REC_COMMITTED | len, Release);
        at += record_span(len as usize);
    }
    i32::from(sh.wake_consumer())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::{Channel, Config, Mode};
    use super::*;

    /// A channel of 64 bytes in a region of its own, returned first: bind both, the region
    /// first (`let (_region, channel) = ...`), so that it is dropped after the channel.
    fn channel_in(mode: Mode) -> (Vec<u64>, Channel) {
        channel_of(64, mode)
    }

    /// [`channel_in`] of `capacity` bytes.
    fn channel_of(capacity: u32, mode: Mode) -> (Vec<u64>, Channel) {
        let mut region = vec![0u64; region_size(capacity) / 8];
        let config = Config { capacity, mode };
        // SAFETY: the region is 8-aligned and ours alone; its heap buffer does not move with
        // the `Vec`, which the caller keeps until after the channel is dropped.
        let channel =
            unsafe { Channel::create_raw(region.as_mut_ptr().cast(), region.len() * 8, config) }
                .unwrap();
        (region, channel)
    }

    /// A producer that stalled before its claim's first CAS long enough for its reservation to be
    /// swept and the ring to lap finds a live producer's mark at its index, a lap later: it
    /// leaves it, where it would take over a stale mark at its own place.
    #[test]
    fn a_claim_never_takes_over_the_mark_of_a_later_lap() {
        let (_region, channel) = channel_in(Mode::Mpsc);
        let sh = &*channel.shared;
        // Position 0 was the stalled producer's, swept; 64..80 is slot 1's, claimed.
        for word in [sh.head(), sh.zeroing()] {
            word.store(64, SeqCst);
        }
        sh.tail().store(80, SeqCst);
        let live = mark_word(1, 16);
        sh.commit_word(0).store(live, SeqCst);
        let stalled = Producer::new(sh, 0, 80);
        // No sweep since its `sweeps` load as far as its first look goes: it goes on to the CAS.
        let sweeps = sh.sweeps().load(SeqCst);
        assert!(!stalled.claim(sh, 0, 0, mark_word(0, 16), sweeps).unwrap());
        assert_eq!(
            sh.commit_word(0).load(SeqCst),
            live,
            "the live mark is left"
        );
        // The same word, stale (its place not consumed): taken over.
        for word in [sh.head(), sh.zeroing(), sh.tail()] {
            word.store(0, SeqCst);
        }
        sh.tail().store(16, SeqCst);
        assert!(stalled.claim(sh, 0, 0, mark_word(0, 16), sweeps).unwrap());
        assert_eq!(sh.commit_word(0).load(SeqCst), mark_word(0, 16));
    }

    /// A committed record where a producer has just reserved is a later lap's where its position
    /// was consumed (it stalled, and was swept), and else proof that `tail` went back over
    /// records not read yet: `EBADMSG`, with nothing written.
    #[test]
    fn a_claim_on_a_committed_record_not_consumed_is_corruption() {
        let (_region, channel) = channel_in(Mode::Mpsc);
        let sh = &*channel.shared;
        let record = REC_COMMITTED | 400;
        sh.commit_word(0).store(record, SeqCst);
        // A later lap's record: position 0 consumed (head past it).
        for word in [sh.head(), sh.zeroing()] {
            word.store(64, SeqCst);
        }
        sh.tail().store(80, SeqCst);
        let producer = Producer::new(sh, 0, 80);
        let sweeps = sh.sweeps().load(SeqCst);
        assert!(!producer.claim(sh, 0, 0, mark_word(0, 16), sweeps).unwrap());
        // Not read yet: position 0 is at `head`.
        for word in [sh.head(), sh.zeroing()] {
            word.store(0, SeqCst);
        }
        sh.tail().store(16, SeqCst);
        let err = producer
            .claim(sh, 0, 0, mark_word(0, 16), sweeps)
            .unwrap_err();
        assert_eq!(super::super::error_code(&err), libc::EBADMSG, "{err}");
        assert_eq!(sh.commit_word(0).load(SeqCst), record, "nothing written");
        // The receiver's own words there (a sweep, a drop) are not corruption.
        sh.commit_word(0).store(SWEPT, SeqCst);
        assert!(!producer.claim(sh, 0, 0, mark_word(0, 16), sweeps).unwrap());
    }

    /// The batch send's commit publishes a run its sender marked and wrote, whole, in order; a
    /// run it cannot take as described is refused before anything is written.
    #[test]
    fn commit_run_commits_the_whole_run_or_nothing() {
        let (mut region, channel) = channel_in(Mode::Spsc);
        let sh = &*channel.shared;
        let base = region.as_mut_ptr().cast::<u8>();
        // Three records reserved back to back, marked and written as the TypeScript sender does.
        let lens = [3u32, 0, 9];
        let mut at = 0;
        for (i, &len) in lens.iter().enumerate() {
            let span = record_span(len as usize);
            sh.commit_word(at).store(mark_word(0, span as u32), Relaxed);
            let payload = vec![i as u8 + 1; len as usize];
            // SAFETY: inside the record reserved above.
            unsafe { sh.mem.write(Producer::payload_offset(at), &payload) };
            at += span;
        }
        sh.tail().store(at as u32, SeqCst);
        let state = PutState {
            capacity: 64,
            ..PutState::default()
        };
        let marks: Vec<u32> = [0, 16, 24].map(|i| sh.commit_word(i).load(SeqCst)).into();
        let refused: [(PutState, u32, &[u32]); 4] = [
            (PutState { tag: 1, ..state }, 0, &lens), // a sender of many
            (state, 4, &lens),                        // not a record's place
            (state, 0, &[3, 0, 25]),                  // longer than a record holds
            (state, 48, &[8, 0]),                     // past the end of the data area
        ];
        for (state, idx, lens) in refused {
            // SAFETY: the region is a live channel of capacity 64.
            let got = unsafe { commit_run(base, &state, idx, lens) };
            assert_eq!(got, -1, "{idx} {lens:?}");
        }
        let now: Vec<u32> = [0, 16, 24].map(|i| sh.commit_word(i).load(SeqCst)).into();
        assert_eq!(now, marks, "nothing written");
        // SAFETY: as above.
        assert_eq!(unsafe { commit_run(base, &state, 0, &lens) }, 0);
        let mut consumer = Consumer::new(0);
        for (i, &len) in lens.iter().enumerate() {
            let Ok(Peek::Message {
                idx,
                len: got,
                kind: 0,
            }) = consumer.peek(sh)
            else {
                panic!("record {i} is not a message");
            };
            assert_eq!(got, len as usize);
            // SAFETY: the record is committed, inside the data area.
            let payload = unsafe { sh.mem.slice(Consumer::payload_offset(idx), got) };
            assert!(
                payload.iter().all(|&b| b == i as u8 + 1),
                "record {i}: {payload:?}"
            );
            consumer.release(sh, idx, got);
        }
        assert!(matches!(consumer.peek(sh), Ok(Peek::Empty)));
    }

    /// Takes the message of `len` bytes at `at` (at `head`) and returns the `head` stored.
    fn take(consumer: &mut Consumer, sh: &Shared, at: usize, len: usize) -> u32 {
        let peek = consumer.peek(sh);
        let Ok(Peek::Message { idx, len: got, .. }) = peek else {
            panic!("no message at {at}: {peek:?}");
        };
        assert_eq!((idx, got), (at, len));
        consumer.release(sh, idx, len);
        sh.head().load(SeqCst)
    }

    /// A look after a release that finds the producer parked with less than half the ring
    /// free leaves it parked, and remembers the wake it skipped (`looked` short of `head`) for
    /// the next wait ([`Consumer::wake_pending`], which a receiver calls before it spins or
    /// parks, and a peek that finds nothing to take). A look that finds half the ring free
    /// wakes.
    #[test]
    fn a_look_short_of_half_the_ring_leaves_the_wake_to_the_next_wait() {
        let (_region, channel) = channel_in(Mode::Spsc);
        let sh = &*channel.shared;
        // Two messages of 8 bytes (records of 16: a look's distance in a ring of 64), then one
        // of 24 (a record of 32).
        for idx in [0, 16] {
            sh.commit_word(idx).store(REC_COMMITTED | 8, SeqCst);
        }
        sh.commit_word(32).store(REC_COMMITTED | 24, SeqCst);
        sh.tail().store(64, SeqCst);
        sh.tx_waiting().store(1, SeqCst);
        let mut consumer = Consumer::new(0);
        assert_eq!(take(&mut consumer, sh, 0, 8), 16, "head stored");
        assert_eq!(
            sh.tx_waiting().load(SeqCst),
            1,
            "16 of 64 free: left parked"
        );
        consumer.wake_pending(sh);
        assert_eq!(sh.tx_waiting().load(SeqCst), 0, "woken before a wait");
        sh.tx_waiting().store(1, SeqCst);
        consumer.wake_pending(sh);
        assert_eq!(sh.tx_waiting().load(SeqCst), 1, "no look due: no look");
        assert_eq!(take(&mut consumer, sh, 16, 8), 32);
        assert_eq!(sh.tx_waiting().load(SeqCst), 0, "32 of 64 free: woken");
    }

    /// A skip record stepped over hands its room back as a release does: short of half the
    /// ring free, the parked producer of one is left to the next wait.
    #[test]
    fn a_skip_record_stepped_over_wakes_only_as_a_release_does() {
        let (_region, channel) = channel_in(Mode::Spsc);
        let sh = &*channel.shared;
        // A skip record of 16 bytes, then messages of 8 and 24 (records of 16 and 32).
        sh.commit_word(0)
            .store(REC_COMMITTED | REC_SKIP | 8, SeqCst);
        sh.commit_word(16).store(REC_COMMITTED | 8, SeqCst);
        sh.commit_word(32).store(REC_COMMITTED | 24, SeqCst);
        sh.tail().store(64, SeqCst);
        sh.tx_waiting().store(1, SeqCst);
        let mut consumer = Consumer::new(0);
        let peek = consumer.peek(sh);
        assert!(
            matches!(
                peek,
                Ok(Peek::Message {
                    idx: 16,
                    len: 8,
                    ..
                })
            ),
            "{peek:?}"
        );
        assert_eq!(sh.head().load(SeqCst), 16, "stepped over");
        assert_eq!(
            sh.tx_waiting().load(SeqCst),
            1,
            "16 of 64 free: left parked"
        );
        consumer.wake_pending(sh);
        assert_eq!(sh.tx_waiting().load(SeqCst), 0, "woken before a wait");
    }

    /// A consumer that takes over owes a wake: the one before it may have left one owed
    /// ([`Consumer::look`]). Its first look at an empty ring wakes a parked producer.
    #[test]
    fn a_new_consumer_wakes_a_parked_producer_at_its_first_wait() {
        let (_region, channel) = channel_in(Mode::Spsc);
        let sh = &*channel.shared;
        for word in [sh.head(), sh.zeroing(), sh.tail()] {
            word.store(48, SeqCst);
        }
        sh.tx_waiting().store(1, SeqCst);
        let mut consumer = Consumer::new(48);
        assert!(matches!(consumer.peek(sh), Ok(Peek::Empty)));
        assert_eq!(sh.tx_waiting().load(SeqCst), 0, "woken");
    }

    /// After a look short of half the ring, the next comes once half could be free, not a
    /// whole look's distance on; a release with no message committed after it wakes the
    /// producer whatever the room (the receiver may not receive again for a while).
    #[test]
    fn the_look_after_a_short_one_comes_once_half_the_ring_could_be_free() {
        // A look every 64 bytes; half is 128. Messages of 8 bytes (records of 16) up to 192,
        // then the producer's reservation up to 224, not committed yet.
        let (_region, channel) = channel_of(256, Mode::Spsc);
        let sh = &*channel.shared;
        for idx in (0..192).step_by(16) {
            sh.commit_word(idx).store(REC_COMMITTED | 8, SeqCst);
        }
        sh.tail().store(224, SeqCst);
        sh.tx_waiting().store(1, SeqCst);
        let mut consumer = Consumer::new(0);
        for at in (0..80).step_by(16) {
            take(&mut consumer, sh, at, 8);
            // At 64 taken: 96 free, 32 short of half.
            assert_eq!(sh.tx_waiting().load(SeqCst), 1, "{} taken", at + 16);
        }
        assert_eq!(take(&mut consumer, sh, 80, 8), 96);
        assert_eq!(
            sh.tx_waiting().load(SeqCst),
            0,
            "128 free: woken at the next look"
        );
        // One message, then a reservation of all but 32 bytes of the ring.
        let (_region, channel) = channel_of(256, Mode::Spsc);
        let sh = &*channel.shared;
        sh.commit_word(0).store(REC_COMMITTED | 8, SeqCst);
        sh.tail().store(224, SeqCst);
        sh.tx_waiting().store(1, SeqCst);
        let mut consumer = Consumer::new(0);
        assert_eq!(take(&mut consumer, sh, 0, 8), 16);
        assert_eq!(
            sh.tx_waiting().load(SeqCst),
            0,
            "48 free, nothing committed next: woken"
        );
    }

    /// One producer's unmarked reservation is stepped over only while the word at `head` is
    /// still 0: the look that found it unmarked may be older than the dead producer's last mark
    /// and commit, whose messages must not be skipped.
    #[test]
    fn skip_to_leaves_a_reservation_marked_since_the_look() {
        let (_region, channel) = channel_in(Mode::Spsc);
        let sh = &*channel.shared;
        sh.tail().store(32, SeqCst);
        sh.commit_word(0).store(REC_COMMITTED | 8, SeqCst);
        let mut consumer = Consumer::new(0);
        assert!(!consumer.skip_to(sh, 32));
        assert_eq!((consumer.head, sh.head().load(SeqCst)), (0, 0));
        assert!(matches!(
            consumer.peek(sh),
            Ok(Peek::Message { idx: 0, len: 8, .. })
        ));
        sh.commit_word(0).store(0, SeqCst);
        assert!(consumer.skip_to(sh, 32));
        assert_eq!((consumer.head, sh.head().load(SeqCst)), (32, 32));
    }
}
