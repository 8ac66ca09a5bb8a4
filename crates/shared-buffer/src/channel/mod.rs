//! A bounded channel of byte messages inside a shared-memory region, between processes.
//!
//! One side creates the channel in a region (usually a [`Segment`] of [`region_size`] bytes),
//! the other opens it; the capacity is fixed at creation. Messages are byte strings of
//! `0..=`[`layout::MAX_MESSAGE_LEN`] bytes, delivered whole and in order, never dropped: a full
//! ring makes senders wait (or fail with `EAGAIN` in the `try_` forms). Two modes: one producer
//! and one consumer ([`Mode::Spsc`]), or up to [`layout::MAX_PRODUCERS`] producers and one
//! consumer ([`Mode::Mpsc`]), whose messages are ordered per producer.
//!
//! A message of up to [`max_record`] (`capacity / 2 - 8`) bytes travels as one record of the
//! ring; a longer one is split into fragments of that size, which the receiver puts back together
//! (see [`layout`], *Messages and fragments*). So a message may be longer than the ring itself:
//! the sender then waits for room fragment by fragment. Zero-copy sends ([`Sender::reserve`])
//! and non-waiting sends ([`Sender::try_send`]) take one record at most.
//!
//! The same protocol is implemented in TypeScript over an `Int32Array` with `Atomics`, so it is
//! deliberately simple: 32-bit little-endian words, positions counting modulo 2^31. The byte
//! layout and the protocol are in [`layout`] (rendered from `docs/channel.md`).
//!
//! # Waiting, and peers that die
//!
//! A blocking call first re-checks the ring [`WaitOptions::spin`] times, then parks on a futex
//! word after announcing itself in the header; the other side makes a system call only when that
//! word says someone is parked, so two busy peers exchange messages without any system call.
//! A parked call wakes at least every [`WaitOptions::liveness_interval`] to check that its peer
//! processes still exist (pids in the header, `kill(pid, 0)`). A sender whose receiver died gets
//! `ECONNRESET`. A receiver frees a dead sender's slot, drops what it left unfinished, keeps
//! delivering the other senders' messages and reports the dead one
//! ([`Receiver::take_dead_senders`]); it fails with `ECONNRESET` only when the ring is empty, no
//! sender is attached, and one died with no sender attached since. The protocol, word by
//! word: [`layout`] (`docs/channel.md`).
//!
//! # Errors
//!
//! Errors are [`ChannelError`]s, which convert into `io::Error`; [`error_code`] gives their
//! errno:
//!
//! | errno | when |
//! | --- | --- |
//! | `EAGAIN` | `try_*` found the ring full (send) or empty (receive); open found the header not initialised yet; a sender's place is held by a dead process the receiver has not freed yet |
//! | `ETIMEDOUT` | a blocking call's timeout passed |
//! | `EMSGSIZE` | a message longer than [`layout::MAX_MESSAGE_LEN`]; a reservation or `try_send` longer than [`Channel::max_record`]; a fragmented message beyond the receiver's [`Limits`] (dropped) |
//! | `EPIPE` | sending after the receiver closed the channel, or after a sender closed it (the message says which); opening a closed channel |
//! | `ECONNRESET` | the consumer died (a sender waiting for room); no sender attached and one died (a receiver on an empty ring) |
//! | `EBUSY` | a second consumer, a second live SPSC producer, or all 64 MPSC producer slots taken by live ones |
//! | `EBADMSG` | the header or the ring is corrupt (wrong magic, out-of-range fields or positions, a bad record, a fragmented message longer than [`layout::MAX_MESSAGE_LEN`]) |
//! | `EPROTONOSUPPORT` | the header has another layout version |
//! | `EXDEV` | the channel was made in another pid namespace (peers are told alive or dead by pid) |
//! | `EINVAL` | a bad capacity or mode, or a region too small |
//!
//! # Examples
//!
//! ```
//! use shared_buffer::channel::{region_size, Channel, Config, Mode, WaitOptions};
//! use shared_buffer::{Options, Segment, SegmentId};
//!
//! let id = SegmentId::name(&format!("/doc-channel-{}", std::process::id()))?;
//! let config = Config { capacity: 4096, mode: Mode::Spsc };
//! let segment = Segment::create(&id, region_size(config.capacity), &Options::default())?;
//! let channel = Channel::create(segment, config)?;
//! // Normally in another process: Channel::open(Segment::open(&id, None, &options)?)
//! let mut rx = channel.receiver(WaitOptions::default())?;
//! let mut tx = channel.sender(WaitOptions::default())?;
//! tx.send(b"hello", None)?;
//! tx.close();
//! assert_eq!(rx.recv(None)?.as_deref(), Some(&b"hello"[..]));
//! assert_eq!(rx.recv(None)?, None); // end of stream
//! Segment::unlink(&id)?;
//! # Ok::<(), std::io::Error>(())
//! ```

// Under loom only the models use the protocol, and the shared-memory entry points are left out.
#![cfg_attr(loom, allow(dead_code))]

mod error;
pub mod layout;
pub mod liveness;
mod mem;
mod park;
mod ring;

#[cfg(all(test, loom))]
mod loom_tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(not(loom))]
use crate::Segment;

pub use error::{ChannelError, ClosedBy, Result, error_code};
pub use layout::{max_record, region_size};

use error::{corrupt, os};

use layout::{
    MAGIC, MAX_MESSAGE_LEN, MAX_PRODUCERS, MODE_MPSC, MODE_SPSC, OFF_MAGIC, ORPHAN_ENTRIES,
    POS_MASK, REC_ABORT, REC_CONT, REC_MORE,
};
use mem::{Mem, Ordering::*, fence};
use ring::{Consumer, FRAGMENT_STEP_BYTES, Peek, Producer, STEP_LIMIT, Shared};

/// The fast paths of endpoints that run the protocol elsewhere (the TypeScript one, through
/// the C ABI): not for Rust programs, which use [`Sender`] and [`Receiver`].
#[cfg(not(loom))]
#[doc(hidden)]
pub mod foreign {
    pub use super::ring::{
        PUT_CLOSED, PUT_FULL, PUT_SENT, PutState, TakeState, commit_run, put_from, scan_run,
        take_into,
    };
}

/// How many producers a channel has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One producer, one consumer.
    Spsc,
    /// Up to [`layout::MAX_PRODUCERS`] producers, one consumer. Producers reserve space with a
    /// compare-and-swap and may commit out of order; the consumer reads in reservation order.
    Mpsc,
}

impl Mode {
    fn code(self) -> u32 {
        match self {
            Self::Spsc => MODE_SPSC,
            Self::Mpsc => MODE_MPSC,
        }
    }
}

/// What [`Channel::create`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Config {
    /// Bytes of the data area: a power of two in `64..=2^28`. A message of up to
    /// `capacity / 2 - 8` bytes takes one record of `8 + round_up(len, 8)` bytes; a longer one is
    /// sent in fragments of that size.
    pub capacity: u32,
    /// One producer or many.
    pub mode: Mode,
}

/// How a [`Sender`] or [`Receiver`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WaitOptions {
    /// How many times a blocking call re-checks the ring before it parks. Default 64 (a few
    /// microseconds); 0 parks at once. Not 0: a send that finds the ring of a one-sender
    /// channel full also waits, up to 1 ms, for a quarter of it to be free while the receiver
    /// keeps taking messages ([`Sender::send`]).
    pub spin: u32,
    /// How often a parked call wakes to check that the peer process is alive. Default 100 ms;
    /// a dead peer is reported within about this time (twice it for an MPSC producer that died
    /// while holding a reservation). At least 1 ms is used. A sender waiting for room also looks
    /// for it again at least every 100 ms, whatever this interval: a receiver wakes parked senders
    /// only now and then (once half the ring is free in a channel of one sender, every 4 KiB it
    /// hands back in one of many, and when it runs out of messages).
    pub liveness_interval: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        Self {
            spin: 64,
            liveness_interval: Duration::from_millis(100),
        }
    }
}

/// `EPIPE` for a closed channel, saying who closed it: the receiver, or a sender (the end of
/// the stream).
pub(crate) fn closed(sh: &Shared) -> ChannelError {
    ChannelError::Closed(if sh.rx_closed() {
        ClosedBy::Receiver
    } else {
        ClosedBy::Sender
    })
}

/// `EPIPE` if the channel is closed.
fn check_open(sh: &Shared) -> Result<()> {
    if sh.rx_closed() || sh.tail_closed() {
        return Err(closed(sh));
    }
    Ok(())
}

/// `EBADMSG` if a peer overwrote the header's magic since the channel was opened: its flags would
/// be read as whatever the peer wrote (all ones read as closed, `EPIPE`).
fn check_magic(sh: &Shared) -> Result<()> {
    let magic = sh.mem.word(OFF_MAGIC).load(Acquire);
    if magic != MAGIC {
        return Err(corrupt(format!(
            "the channel's header was overwritten since it was opened (magic {magic:#010x})"
        )));
    }
    Ok(())
}

/// `EBUSY` if `mem` holds a channel (its magic) with an endpoint of a live process: a pid in the
/// receiver's word or a sender's slot. `EXDEV` if it has endpoints of another pid namespace,
/// whose pids say nothing here. Another process may attach right after this look; the look keeps
/// a program from remaking a channel its peers are using.
#[cfg(not(loom))]
fn refuse_live_endpoints(mem: &Mem) -> Result<()> {
    if mem.len() < layout::HEADER_SIZE || mem.word(layout::OFF_MAGIC).load(Acquire) != layout::MAGIC
    {
        return Ok(());
    }
    let receiver = mem.word(layout::OFF_CONSUMER_PID).load(Acquire);
    let senders: Vec<u32> = (0..MAX_PRODUCERS)
        .map(|slot| mem.word(layout::OFF_PRODUCER_PIDS + 4 * slot).load(Acquire))
        .filter(|&pid| pid != 0)
        .collect();
    if receiver == 0 && senders.is_empty() {
        return Ok(());
    }
    let theirs = mem.word(layout::OFF_PID_NAMESPACE).load(Acquire);
    let ours = liveness::pid_namespace();
    if theirs != ours && theirs != 0 && ours != 0 {
        return Err(ChannelError::OtherPidNamespace { theirs, ours });
    }
    let busy = |who: String| {
        Err(ChannelError::Busy(format!(
            "the segment holds a channel whose {who} is alive; a channel is made again once its \
             endpoints have detached (or in a new segment)"
        )))
    };
    if receiver != 0 && liveness::alive(receiver) {
        return busy(format!("receiver (pid {receiver})"));
    }
    match senders.into_iter().find(|&pid| liveness::alive(pid)) {
        Some(pid) => busy(format!("sender (pid {pid})")),
        None => Ok(()),
    }
}

/// `ECONNRESET`: the peer died.
fn peer_died(message: &'static str) -> ChannelError {
    ChannelError::PeerDied(message)
}

/// A channel in a shared-memory region. Cheap to clone; make a [`Sender`] or [`Receiver`] from
/// it. The region stays mapped while any of them lives.
///
/// The region's bytes are the protocol's: the channel copies payloads into and out of the ring
/// with plain copies, as fast as memory allows, and what it hands out of the ring is read and
/// written through atomics or copies ([`MessageRef`], [`Reservation`]). Another process that
/// breaks the protocol costs only the channel's own data. Within this process the channel is the
/// only way to its bytes: [`Channel::create`] and [`Channel::open`] take the [`Segment`] itself,
/// so no other handle of this mapping (an atomic or a slice of it, a second channel initialised
/// over the first) can race with an endpoint's copies. A second [`Segment::open`] of the same
/// segment is another mapping, which the channel takes for another process's.
///
/// ```compile_fail,E0382
/// # use shared_buffer::channel::{region_size, Channel, Config, Mode};
/// # use shared_buffer::{Options, Segment, SegmentId};
/// # let id = SegmentId::name("/doc-moved")?;
/// # let config = Config { capacity: 4096, mode: Mode::Spsc };
/// let segment = Segment::create(&id, region_size(4096), &Options::default())?;
/// let channel = Channel::create(segment, config)?;
/// segment.atomic_u32(1024); // the segment moved into the channel
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Channel {
    shared: Arc<Shared>,
}

impl Channel {
    /// Initialises a channel in `segment`, which must have at least [`region_size`] bytes, and
    /// keeps the segment mapped while the channel or any endpoint made from it lives. Any
    /// previous content is lost: the segment is zeroed first, unless this process created it
    /// and handed none of its bytes out since ([`Segment::as_ptr`], [`Segment::atomic_u32`], a
    /// slice), so that it is still as the system made it, all zero.
    ///
    /// A segment that holds a channel with a live endpoint (a sender or the receiver of a process
    /// that still runs, this one included) is refused: its peers would go on over bytes zeroed
    /// under them. Once they have detached or died it may be made again; a dead endpoint's pid
    /// that an unrelated process took over since looks alive as well: start over in a new segment
    /// then ([`crate::Options::replace`]). On an error the segment is dropped (unmapped).
    ///
    /// # Errors
    /// `EINVAL` for a capacity that is not a power of two in `64..=2^28`, or a segment that is
    /// too small; `EBUSY` for a channel with a live endpoint in the segment; `EXDEV` for one with
    /// endpoints of another pid namespace, which cannot be told alive or dead from here.
    #[cfg(not(loom))]
    pub fn create(segment: Segment, config: Config) -> Result<Self> {
        // Decided before the pointer below is taken, which counts as handing the bytes out.
        // Others may still look at old bytes of a segment that is not fresh: zero them atomically.
        let zero = if segment.untouched() {
            ring::ZeroData::No
        } else {
            ring::ZeroData::Atomic
        };
        // SAFETY: the segment is mapped for len bytes (page aligned) while it lives, and it is
        // kept in Shared.
        let mem = unsafe { Mem::new(segment.as_ptr(), segment.len()) }
            .ok_or_else(|| ChannelError::Invalid("a null or misaligned region".into()))?;
        // Also over a segment this process just created and never touched: another process
        // may have opened it and made a channel there since.
        refuse_live_endpoints(&mem)?;
        // SAFETY: a fresh segment is zero; the header is written only through atomics.
        unsafe { ring::init(&mem, config.capacity, config.mode.code(), zero)? };
        Ok(Self::from_mem(
            mem,
            config.capacity,
            config.mode.code(),
            Some(ring::Owner {
                _keep: Arc::new(segment),
            }),
        ))
    }

    /// Opens the channel in `segment`, validating its header, and keeps the segment mapped while
    /// the channel or any endpoint made from it lives. On an error the segment is dropped.
    ///
    /// # Errors
    /// `EAGAIN` if the header is not initialised yet; `EBADMSG` for a wrong magic, an
    /// out-of-range field, or a capacity larger than the segment; `EPROTONOSUPPORT` for another
    /// layout version; `EXDEV` if it was made in another pid namespace.
    #[cfg(not(loom))]
    pub fn open(segment: Segment) -> Result<Self> {
        // SAFETY: as in create.
        let mem = unsafe { Mem::new(segment.as_ptr(), segment.len()) }
            .ok_or_else(|| ChannelError::Invalid("a null or misaligned region".into()))?;
        let (capacity, mode) = ring::validate(&mem)?;
        Ok(Self::from_mem(
            mem,
            capacity,
            mode,
            Some(ring::Owner {
                _keep: Arc::new(segment),
            }),
        ))
    }

    /// Initialises a channel in `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes and 8-byte aligned for as long as
    /// the channel and every sender and receiver made from it live; nobody else may use the bytes
    /// during this call, and afterwards only through this protocol.
    ///
    /// # Errors
    /// As [`Channel::create`]; `EINVAL` also for a null or misaligned pointer.
    #[cfg(not(loom))]
    pub unsafe fn create_raw(ptr: *mut u8, len: usize, config: Config) -> Result<Self> {
        // SAFETY: forwarded from the caller.
        let mem = unsafe { Mem::new(ptr, len) }
            .ok_or_else(|| ChannelError::Invalid("a null or misaligned region".into()))?;
        // SAFETY: the caller promises exclusive use during this call.
        unsafe {
            ring::init(
                &mem,
                config.capacity,
                config.mode.code(),
                ring::ZeroData::Plain,
            )?
        };
        Ok(Self::from_mem(
            mem,
            config.capacity,
            config.mode.code(),
            None,
        ))
    }

    /// Opens the channel in `len` bytes at `ptr`, validating its header.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes and 8-byte aligned for as long as
    /// the channel and every sender and receiver made from it live, and others may use the bytes
    /// only through this protocol.
    ///
    /// # Errors
    /// As [`Channel::open`]; `EINVAL` also for a null or misaligned pointer.
    #[cfg(not(loom))]
    pub unsafe fn open_raw(ptr: *mut u8, len: usize) -> Result<Self> {
        // SAFETY: forwarded from the caller.
        let mem = unsafe { Mem::new(ptr, len) }
            .ok_or_else(|| ChannelError::Invalid("a null or misaligned region".into()))?;
        let (capacity, mode) = ring::validate(&mem)?;
        Ok(Self::from_mem(mem, capacity, mode, None))
    }

    /// A channel in loom-modelled memory.
    #[cfg(loom)]
    pub(crate) fn model(config: Config) -> Self {
        let mem = Mem::new_model(region_size(config.capacity));
        // SAFETY: the memory is new and ours alone.
        unsafe {
            ring::init(
                &mem,
                config.capacity,
                config.mode.code(),
                ring::ZeroData::Plain,
            )
        }
        .unwrap();
        Self::from_mem(mem, config.capacity, config.mode.code(), None)
    }

    /// The channel over `mem`, with the capacity and mode that `ring::init` wrote or
    /// `ring::validate` checked: never read from the header again, where a peer could have
    /// changed them since, and every bound of the data area follows from them.
    fn from_mem(mem: Mem, capacity: u32, mode: u32, owner: Option<ring::Owner>) -> Self {
        assert!(
            capacity.is_power_of_two() && region_size(capacity) <= mem.len(),
            "a channel's capacity is checked against its region before use"
        );
        Self {
            shared: Arc::new(Shared {
                mem,
                capacity,
                mask: capacity - 1,
                max_record: max_record(capacity),
                mode,
                _owner: owner,
            }),
        }
    }

    /// Bytes of the data area.
    pub fn capacity(&self) -> u32 {
        self.shared.capacity
    }

    /// The largest payload of one record: `capacity / 2 - 8` bytes. Longer messages are sent in
    /// fragments; reservations and `try_send` take at most this many bytes.
    pub fn max_record(&self) -> usize {
        self.shared.max_record
    }

    /// One producer or many.
    pub fn mode(&self) -> Mode {
        if self.shared.mode == MODE_SPSC {
            Mode::Spsc
        } else {
            Mode::Mpsc
        }
    }

    /// True once a sender has closed the channel (messages may still wait to be received).
    pub fn is_closed(&self) -> bool {
        self.shared.tail_closed()
    }

    /// Attaches a producer: records this process's pid in a free producer slot. In
    /// [`Mode::Mpsc`] it also commits an abort record if there is room (else it does before its
    /// first message), which drops any message the slot's previous producer left unfinished (see
    /// [`layout`], *Aborts*).
    ///
    /// # Errors
    /// `EBADMSG` if a peer overwrote the header since the open (its magic); `EPIPE` if the
    /// channel is closed (by a sender, or by the receiver); `EBUSY` if the SPSC
    /// channel already has a live producer or every MPSC slot is taken by a live one; `EAGAIN`
    /// if the place is held by a dead producer that the receiver has not reclaimed yet (it does
    /// within its liveness interval, while it receives or waits; with more than
    /// [`layout::ORPHAN_ENTRIES`] dead producers' records ahead, once it has received past the
    /// dead one's or has room to record it).
    pub fn sender(&self, options: WaitOptions) -> Result<Sender> {
        let sh = &*self.shared;
        check_magic(sh)?;
        check_open(sh)?;
        sh.join_pid_namespace()?;
        let me = liveness::own_pid();
        let slots = if sh.mode == MODE_SPSC {
            1
        } else {
            MAX_PRODUCERS
        };
        let mut dead = None;
        let mut slot = None;
        for candidate in 0..slots {
            match sh
                .producer_pid(candidate)
                .compare_exchange(0, me, AcqRel, Acquire)
            {
                Ok(_) => {
                    slot = Some(candidate);
                    break;
                }
                Err(pid) if dead.is_none() && !liveness::alive(pid) => dead = Some(pid),
                Err(_) => {}
            }
        }
        let Some(slot) = slot else {
            return Err(match dead {
                Some(pid) => ChannelError::PlaceHeldByDead(pid),
                None if sh.mode == MODE_SPSC => ChannelError::Busy(format!(
                    "the one-sender channel already has a live sender; a channel created \
                         with many producers takes up to {MAX_PRODUCERS}"
                )),
                None => ChannelError::Busy(format!("all {MAX_PRODUCERS} sender slots are taken")),
            });
        };
        // The one sender starts at `tail`, which a peer may have rewritten since `open` checked
        // it: a position off a record boundary would index a misaligned word.
        let tail = sh.tail().load(Acquire);
        if sh.mode == MODE_SPSC && tail & 7 != 0 {
            let _ = sh
                .producer_pid(slot)
                .compare_exchange(me, 0, AcqRel, Relaxed);
            return Err(corrupt(format!("corrupt channel tail {tail:#x}")));
        }
        let mut sender = Sender {
            producer: Producer::new(sh, slot, tail),
            shared: Arc::clone(&self.shared),
            slot,
            pid: me,
            options,
            closed: false,
            // An MPSC slot may have been left by a producer that still owed an abort record.
            owes_abort: sh.mode == MODE_MPSC,
        };
        // Pay it now if there is room, else before the first record (an error here comes back
        // from the first send).
        let _ = sender.pay_abort(None);
        Ok(sender)
    }

    /// Attaches the consumer: records this process's pid. A consumer that died may be replaced.
    ///
    /// # Errors
    /// `EPIPE` if a receiver closed the channel before; `EBUSY` if a live consumer is attached;
    /// `EBADMSG` if a peer overwrote the header since the open (its magic).
    pub fn receiver(&self, options: WaitOptions) -> Result<Receiver> {
        let sh = &*self.shared;
        check_magic(sh)?;
        if sh.rx_closed() {
            return Err(closed(sh));
        }
        sh.join_pid_namespace()?;
        let me = liveness::own_pid();
        let word = sh.consumer_pid();
        let mut current = 0;
        let mut attached = false;
        // A few rounds settle a race with another process attaching or leaving at this moment.
        for _ in 0..8 {
            match word.compare_exchange(current, me, AcqRel, Acquire) {
                Ok(_) => {
                    attached = true;
                    break;
                }
                Err(pid) if pid == 0 || !liveness::alive(pid) => current = pid,
                Err(_) => break,
            }
        }
        if !attached {
            return Err(ChannelError::Busy(
                "a live process already receives from this channel".into(),
            ));
        }
        // A receiver that closed between the check above and its pid's release: its close is
        // final (see `layout`, *Close*), so this one must not receive, nor ever park.
        if sh.rx_closed() {
            let _ = word.compare_exchange(me, 0, AcqRel, Relaxed);
            return Err(closed(sh));
        }
        // The receiver starts at `head`, which a peer may have rewritten since `open` checked
        // it: a position that is not a multiple of 8 would index a misaligned word.
        let head = sh.head().load(Acquire);
        if head & !(POS_MASK & !7) != 0 {
            let _ = word.compare_exchange(me, 0, AcqRel, Relaxed);
            return Err(corrupt(format!("corrupt channel head {head:#x}")));
        }
        // A receiver killed while it zeroed what it had consumed left `zeroing` ahead of `head`:
        // finish its job before receiving (after ending its sweep, if it was sweeping).
        ring::end_dead_sweep(sh);
        let head = match ring::finish_zeroing(sh, head) {
            Ok(head) => head,
            Err(err) => {
                let _ = word.compare_exchange(me, 0, AcqRel, Relaxed);
                return Err(err);
            }
        };
        let slots = if sh.mode == MODE_SPSC {
            1
        } else {
            MAX_PRODUCERS
        };
        let orphans = load_orphans(sh, head, slots);
        // Dead senders its predecessor found (their records ahead, or passed with none attached
        // since: `bereaved`): it would have failed once the ring was empty with no sender alive,
        // and so does this one, unless a sender attaches after this moment.
        let bereaved = !orphans.is_empty() || sh.bereaved().load(Acquire) != 0;
        if bereaved {
            // What this receiver knows, for the one that may take over from it in turn: its
            // predecessor may have died between recording an orphan and storing the word.
            sh.bereaved().store(1, Release);
        }
        let survivors = if bereaved {
            (0..slots)
                .map(|slot| (slot, sh.producer_pid(slot).load(Acquire)))
                .filter(|&(_, pid)| pid != 0)
                .collect()
        } else {
            Vec::new()
        };
        Ok(Receiver {
            consumer: Consumer::new(head),
            shared: Arc::clone(&self.shared),
            pid: me,
            options,
            limits: Limits::default(),
            pending: None,
            stuck: None,
            next_check: later(Instant::now(), liveness_interval(&options)),
            next_busy_check: Instant::now(),
            // The first receive looks, and learns the pace from there.
            countdown: 1,
            looked_after: 1,
            last_look: Instant::now(),
            partials: vec![Vec::new(); slots],
            pending_bytes: 0,
            bereaved,
            survivors,
            alive: Vec::new(),
            orphans,
            dead: Vec::new(),
            assembled: Vec::new(),
        })
    }
}

/// Where a blocking call gives up, and when it next checks on the peer.
struct Clock {
    deadline: Option<Instant>,
    next_check: Instant,
    interval: Duration,
    spins: u32,
}

/// What [`Receiver::reassemble`] did with a data record.
enum Reassembled {
    /// A whole message.
    Got(Got),
    /// A fragment, kept with the others of its message.
    Collected,
    /// Consumed, and a message dropped: an abort record, a fragment of a message this receiver
    /// did not see begin (or dropped for a limit), or a first fragment that ends its sender's
    /// unfinished message.
    Dropped,
}

/// What a blocking call does next.
enum Step {
    /// Look again (still spinning).
    Spin,
    /// Check on the peer (a liveness check is due), then look again.
    Check,
    /// Park for at most this long.
    Park(Duration),
}

impl Clock {
    /// Spin rounds between two looks at the clock.
    const CLOCK_EVERY: u32 = 64;

    /// Whether the deadline or the next liveness check has come at `now`.
    fn due(&self, now: Instant) -> bool {
        now >= self.next_check || self.deadline.is_some_and(|deadline| now >= deadline)
    }

    fn new(timeout: Option<Duration>, options: &WaitOptions) -> Self {
        let now = Instant::now();
        let interval = liveness_interval(options);
        Self {
            deadline: timeout.and_then(|t| now.checked_add(t)),
            next_check: later(now, interval),
            interval,
            spins: 0,
        }
    }

    /// The first liveness check at `at` (or as soon as the spin ends, if it has passed) instead
    /// of an interval from now: a receiver's checks go on from one wait to the next.
    fn checking_at(mut self, at: Instant) -> Self {
        self.next_check = at;
        self
    }

    /// The next step; `ETIMEDOUT` when the deadline has passed. A spin (up to `u32::MAX`
    /// rounds) looks at the clock every [`Self::CLOCK_EVERY`] rounds, and ends at the deadline
    /// or the next liveness check.
    fn next(&mut self, spin: u32) -> Result<Step> {
        if self.spins < spin {
            self.spins += 1;
            if self.spins % Self::CLOCK_EVERY != 0 || !self.due(Instant::now()) {
                std::hint::spin_loop();
                return Ok(Step::Spin);
            }
            self.spins = spin; // the spin is over: the rest goes by the clock
        }
        let now = Instant::now();
        if let Some(deadline) = self.deadline {
            if now >= deadline {
                return Err(ChannelError::Timeout);
            }
        }
        if now >= self.next_check {
            self.next_check = later(now, self.interval);
            return Ok(Step::Check);
        }
        let mut slice = self.next_check.saturating_duration_since(now);
        if let Some(deadline) = self.deadline {
            slice = slice.min(deadline.saturating_duration_since(now));
        }
        Ok(Step::Park(slice.max(Duration::from_micros(1))))
    }
}

/// The longest a producer waiting for room parks before it looks again on its own, whatever its
/// liveness interval: a consumer looks for parked producers only now and then (every 4 KiB it
/// hands back, and with one producer wakes it once half the ring is free: see
/// `ring::WAKE_LOOK_BYTES` and `ring::WAKE_ROOM_DIVISOR`), so one that takes less than half a
/// full ring (less than 4 KiB with many producers) and stops while messages still wait wakes
/// nobody. The TypeScript sender's `PARK_MS`.
const SENDER_PARK_MAX: Duration = Duration::from_millis(100);

/// A send that finds the ring full, in a channel of one sender, resumes once this fraction of
/// the ring (1 / the divisor) is free, not at the first record that fits, as long as the
/// receiver keeps taking messages ([`Sender::gather_room`]). Resumed at the first room, the sender
/// writes each record right behind the receiver, into the cache lines it has just read and
/// zeroed, and reads `head` after every one: the lines holding both cross between the two cores
/// for every message. Here the cost of that depends on which two host cores the two CPUs land
/// on (a cache line's round trip between CPU 0 and 1 of this VM measured 55-80 ns in some
/// seconds and 340-390 ns in others): the Rust ring's 64 B stream between two cores made 13-14
/// M messages/s in the first state and 3.8-4.4 M in the second; gathering a quarter of a 256 KiB
/// ring, 30-34 M and 24-29 M (4 KiB messages 4.2-4.3 M → 6.5-6.9 M). The TypeScript sender does
/// the same in a wait that spins (`ROOM_GATHER_DIVISOR` in `ring.ts`); this one whenever `spin`
/// is not 0, one core included, where it costs a look 2 µs after the first at each full ring
/// (its one-core figures did not move).
const ROOM_GATHER_DIVISOR: u32 = 4;

/// How often [`Sender::gather_room`] looks at `head`: rarely enough that the receiver's stores
/// of it mostly find the line still its own (2 µs; looking every 0.3-1 µs gave 19-25 M messages
/// a second in the slower state above, every 3 µs 26-29 M), often enough that a receiver that
/// stops costs the sender at most a few microseconds.
const ROOM_GATHER_POLL: Duration = Duration::from_micros(2);

/// The longest [`Sender::gather_room`] waits: a peer that writes `head` back and forth (it looks
/// like a receiver at work) delays each wait for room (each fragment's) at most this long.
const ROOM_GATHER_MAX: Duration = Duration::from_millis(1);

/// The time between two liveness checks: at least 1 ms.
fn liveness_interval(options: &WaitOptions) -> Duration {
    options.liveness_interval.max(Duration::from_millis(1))
}

/// `interval` after `now`; an interval too long for the clock (`Duration::MAX`) is a year.
fn later(now: Instant, interval: Duration) -> Instant {
    now.checked_add(interval)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

/// The sending end. Made by [`Channel::sender`].
///
/// In [`Mode::Spsc`], dropping the sender closes the channel (the receiver sees the end of the
/// stream after the last message). In [`Mode::Mpsc`], dropping a sender only frees its slot;
/// [`Sender::close`] ends the stream for every producer.
#[derive(Debug)]
pub struct Sender {
    shared: Arc<Shared>,
    producer: Producer,
    slot: usize,
    pid: u32,
    options: WaitOptions,
    closed: bool,
    /// An abort record is owed before this sender's next record (see [`layout`], *Aborts*).
    owes_abort: bool,
}

impl Sender {
    /// The largest payload of one record: `capacity / 2 - 8` bytes. [`Sender::send`] splits
    /// longer messages into fragments; [`Sender::try_send`] and [`Sender::reserve`] take at most
    /// this many bytes.
    pub fn max_record(&self) -> usize {
        self.shared.max_record
    }

    /// Sends `msg`, waiting while the ring is full: forever with `None`, else at most `timeout`
    /// in all. A message longer than [`Sender::max_record`] goes in fragments, each waiting for
    /// room in turn; if the send fails after some fragments went out, the receiver is told to
    /// drop them (an abort record, now or before this sender's next message), so it never gets
    /// part of a message. In [`Mode::Spsc`], a send that finds the ring full writes again once
    /// a quarter of it is free while the receiver keeps taking messages (unless `spin` is 0):
    /// writing right behind the receiver made both cores trade the same cache lines.
    ///
    /// # Errors
    /// `EMSGSIZE` if `msg` is longer than [`layout::MAX_MESSAGE_LEN`]; `ETIMEDOUT`; `EPIPE` if
    /// the channel was closed or the receiver went away; `ECONNRESET` if the consumer process
    /// died while the ring was full; `EBADMSG` if the positions are corrupt, or if a message in
    /// fragments (in [`Mode::Spsc`], any message) finds this sender's slot holding another pid
    /// (a peer wrote the header).
    pub fn send(&mut self, msg: &[u8], timeout: Option<Duration>) -> Result<()> {
        if msg.len() <= self.shared.max_record && !self.owes_abort {
            let idx = self.reserve_idx(msg.len(), Some(timeout))?;
            return self.write_commit(idx, msg, 0);
        }
        self.send_slow(msg, timeout)
    }

    /// Sends `msg` if there is room now, all of it or nothing: it must fit in one record.
    ///
    /// # Errors
    /// `EAGAIN` if the ring is full; `EMSGSIZE` if `msg` is longer than [`Sender::max_record`]
    /// (use [`Sender::send`] for those); otherwise as [`Sender::send`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        if msg.len() > self.shared.max_record {
            return Err(too_long(msg.len(), self.shared.max_record, "try_send"));
        }
        self.pay_abort(None)?;
        let idx = self.reserve_idx(msg.len(), None)?;
        self.write_commit(idx, msg, 0)
    }

    /// Reserves room for a `len`-byte message and returns it to be filled in place; it is sent
    /// by [`Reservation::commit`], and dropped uncommitted it is skipped by the receiver. Waits
    /// as [`Sender::send`] does. The bytes start out zero.
    ///
    /// # Errors
    /// `EMSGSIZE` if `len` is more than one record ([`Sender::max_record`]): send longer
    /// messages with [`Sender::send`]. Otherwise as [`Sender::send`].
    #[cfg(not(loom))]
    pub fn reserve(&mut self, len: usize, timeout: Option<Duration>) -> Result<Reservation<'_>> {
        if len > self.shared.max_record {
            return Err(too_long(len, self.shared.max_record, "reserve"));
        }
        // A reservation's commit reports nothing, so the close is looked for here.
        check_open(&self.shared)?;
        let idx = if self.owes_abort {
            let deadline = deadline_after(timeout);
            self.pay_abort(Some(remaining(deadline)))?;
            self.reserve_idx(len, Some(remaining(deadline)))?
        } else {
            self.reserve_idx(len, Some(timeout))?
        };
        Ok(Reservation {
            sender: self,
            idx,
            len,
        })
    }

    /// Reserves room for a `len`-byte message if there is room now.
    ///
    /// # Errors
    /// `EAGAIN` if the ring is full; otherwise as [`Sender::reserve`].
    #[cfg(not(loom))]
    pub fn try_reserve(&mut self, len: usize) -> Result<Reservation<'_>> {
        if len > self.shared.max_record {
            return Err(too_long(len, self.shared.max_record, "try_reserve"));
        }
        check_open(&self.shared)?;
        self.pay_abort(None)?;
        let idx = self.reserve_idx(len, None)?;
        Ok(Reservation {
            sender: self,
            idx,
            len,
        })
    }

    /// Closes the channel for every producer: later sends fail with `EPIPE`, and the receiver
    /// gets the end of the stream once it has received everything sent before. In
    /// [`Mode::Spsc`], not if this sender's place holds another pid (a peer cleared it, and
    /// another sender attached): the stream is that sender's now.
    pub fn close(mut self) {
        self.close_now();
    }

    fn close_now(&mut self) {
        if !self.closed {
            self.closed = true;
            if self.shared.mode == MODE_SPSC && self.check_slot().is_err() {
                return;
            }
            self.producer.close(&self.shared);
        }
    }

    /// Writes `msg` into the record reserved at `idx` and commits it as `kind`.
    ///
    /// # Errors
    /// `EPIPE` if the receiver closed the channel without reading it ([`Producer::commit`]).
    #[inline]
    fn write_commit(&mut self, idx: usize, msg: &[u8], kind: u32) -> Result<()> {
        let sh = &*self.shared;
        // SAFETY: the reservation gave this producer the record's bytes, which lie inside the
        // data area (idx + 8 + len <= capacity).
        unsafe { sh.mem.write(Producer::payload_offset(idx), msg) };
        self.producer.commit(sh, idx, msg.len(), kind)
    }

    /// A message that needs fragments or an abort record first.
    #[cold]
    fn send_slow(&mut self, msg: &[u8], timeout: Option<Duration>) -> Result<()> {
        if msg.len() > MAX_MESSAGE_LEN {
            return Err(too_long(msg.len(), MAX_MESSAGE_LEN, "send"));
        }
        let deadline = deadline_after(timeout);
        self.pay_abort(Some(remaining(deadline)))?;
        let max = self.shared.max_record;
        if msg.len() <= max {
            let idx = self.reserve_idx(msg.len(), Some(remaining(deadline)))?;
            return self.write_commit(idx, msg, 0);
        }
        let count = msg.len().div_ceil(max);
        for (i, fragment) in msg.chunks(max).enumerate() {
            let idx = match self.reserve_idx(fragment.len(), Some(remaining(deadline))) {
                Ok(idx) => idx,
                Err(err) => {
                    if i > 0 {
                        self.break_off();
                    }
                    return Err(err);
                }
            };
            let more = if i + 1 < count { REC_MORE } else { 0 };
            let kind = if i > 0 { more | REC_CONT } else { more };
            // The receiver puts fragments together by the slot they name: a slot a peer made
            // another sender's would mix the two senders' messages. No abort record is owed
            // then: one would drop the other's message.
            if let Err(err) = self.check_slot() {
                self.producer.abandon(&self.shared, idx, fragment.len());
                return Err(err);
            }
            // A fragment the receiver will never read: the channel is closed for good, so no
            // abort record is owed.
            self.write_commit(idx, fragment, kind)?;
        }
        Ok(())
    }

    /// `EBADMSG` if this sender's slot no longer holds its pid: a peer wrote the header, and
    /// another sender may hold the slot now.
    fn check_slot(&self) -> Result<()> {
        let holder = self.shared.producer_pid(self.slot).load(Acquire);
        if holder == self.pid {
            return Ok(());
        }
        let which = if self.shared.mode == MODE_SPSC {
            "every send fails so, and dropping this sender does not end the stream"
        } else {
            "messages of more than max_record bytes fail so"
        };
        Err(corrupt(format!(
            "this sender's slot holds {} instead of its pid {} (a peer wrote the channel's \
             header): the message was not sent; {which}",
            holder_of(holder),
            self.pid
        )))
    }

    /// A fragmented send failed after committing some fragments: commit an abort record now if
    /// there is room, else owe it.
    #[cold]
    fn break_off(&mut self) {
        self.owes_abort = true;
        // Failing here only leaves the abort owed; the caller reports the first error.
        let _ = self.pay_abort(None);
    }

    /// Commits the owed abort record, if any: `wait` None = try once, Some(timeout) = block.
    #[inline]
    fn pay_abort(&mut self, wait: Option<Option<Duration>>) -> Result<()> {
        if self.owes_abort {
            let idx = self.reserve_idx(0, wait)?;
            self.owes_abort = false;
            // Not for a slot that is another sender's now (see `send_slow`): skipped instead.
            if self.check_slot().is_err() {
                self.producer.abandon(&self.shared, idx, 0);
                return Ok(());
            }
            self.producer.commit(&self.shared, idx, 0, REC_ABORT)?;
        }
        Ok(())
    }

    /// Reserves a record: `wait` None = try once, Some(timeout) = block.
    ///
    /// In [`Mode::Spsc`], only while this sender's place holds its pid: a peer that clears the
    /// word lets a second sender attach, and two senders writing the ring from tails of their
    /// own would overwrite each other's records. The place is looked at before each try
    /// ([`Sender::check_place`]).
    #[inline]
    fn reserve_idx(&mut self, len: usize, wait: Option<Option<Duration>>) -> Result<usize> {
        self.check_place()?;
        if let Some(idx) = self.producer.try_reserve(&self.shared, len)? {
            return Ok(idx);
        }
        match wait {
            None => Err(ChannelError::Full),
            Some(timeout) => self.reserve_slow(len, timeout),
        }
    }

    /// In [`Mode::Spsc`], [`Sender::check_slot`]: a reservation moves `tail` from this sender's
    /// own copy, over what a sender that took the place meanwhile wrote. Not under loom, where
    /// every thread is one process and no peer writes the header: the load would only add a
    /// step to every model.
    #[inline]
    fn check_place(&self) -> Result<()> {
        if !cfg!(loom) && self.shared.mode == MODE_SPSC {
            self.check_slot()?;
        }
        Ok(())
    }

    #[cold]
    fn reserve_slow(&mut self, len: usize, timeout: Option<Duration>) -> Result<usize> {
        let sh = Arc::clone(&self.shared);
        let mut clock = Clock::new(timeout, &self.options);
        if sh.mode == MODE_SPSC && self.options.spin != 0 {
            self.gather_room(&sh, len, clock.deadline);
        }
        loop {
            self.check_place()?;
            if let Some(idx) = self.producer.try_reserve(&sh, len)? {
                return Ok(idx);
            }
            let slice = match clock.next(self.options.spin)? {
                Step::Spin => continue,
                Step::Check => {
                    check_consumer(&sh)?;
                    continue;
                }
                Step::Park(slice) => slice,
            };
            let word = sh.tx_waiting();
            word.swap(1, SeqCst);
            fence(SeqCst);
            if !self.producer.should_wake(&sh) {
                park::wait(word, 1, Some(slice.min(SENDER_PARK_MAX))).map_err(os)?;
            }
            if sh.mode == MODE_SPSC {
                // The only producer: nobody else relies on the flag.
                word.swap(0, Relaxed);
            }
        }
    }

    /// Run by a send that found the ring full, in a channel of one sender: waits, while the
    /// receiver keeps taking messages, until a quarter of the ring is free
    /// ([`ROOM_GATHER_DIVISOR`]), looking at `head` every [`ROOM_GATHER_POLL`]. It stops as soon
    /// as `head` stood still between two looks (the receiver stopped, died, or cannot run while
    /// this thread spins on its core), after [`ROOM_GATHER_MAX`] and at the deadline; the wait
    /// for room then goes on as before, taking any room that fits.
    fn gather_room(&self, sh: &Shared, len: usize, deadline: Option<Instant>) {
        let want = (sh.capacity / ROOM_GATHER_DIVISOR).max(layout::record_span(len) as u32);
        let start = Instant::now();
        let mut last = None;
        while let Some((head, free)) = self.producer.room_now(sh) {
            if free >= want || last == Some(head) {
                return;
            }
            last = Some(head);
            let look = Instant::now();
            if look.duration_since(start) >= ROOM_GATHER_MAX || deadline.is_some_and(|d| look >= d)
            {
                return;
            }
            while look.elapsed() < ROOM_GATHER_POLL {
                std::hint::spin_loop();
            }
        }
    }
}

/// When a call given `timeout` must end (None: never, also for a timeout too long to add).
fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// The time left until `deadline` (None: no limit).
fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// `EMSGSIZE` for a `len`-byte message or reservation where `max` bytes is the limit.
fn too_long(len: usize, max: usize, call: &str) -> ChannelError {
    let hint = if max == MAX_MESSAGE_LEN {
        String::new()
    } else {
        "; use send, which splits longer messages into fragments".to_owned()
    };
    ChannelError::TooLong(format!("{call}: {len} bytes, at most {max} fit{hint}"))
}

/// Fails if the consumer process died.
fn check_consumer(sh: &Shared) -> Result<()> {
    let pid = sh.consumer_pid().load(Acquire);
    if pid != 0 && !liveness::alive(pid) {
        return Err(peer_died(if pid & layout::PID_GONE == 0 {
            "the consumer process died without closing the channel"
        } else {
            "the consumer (a JavaScript endpoint) went without closing the channel: its \
             Worker ended, or its engine collected it"
        }));
    }
    Ok(())
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.shared.mode == MODE_SPSC {
            self.close_now();
        }
        // Free the slot (if it is still ours: a corrupt header may say otherwise).
        let _ = self
            .shared
            .producer_pid(self.slot)
            .compare_exchange(self.pid, 0, AcqRel, Relaxed);
    }
}

/// What a place's pid word `word` holds, for an error: a pid, or one marked gone.
fn holder_of(word: u32) -> String {
    if word & layout::PID_GONE == 0 {
        word.to_string()
    } else {
        format!(
            "{} marked gone (an endpoint of it went without closing)",
            word & !layout::PID_GONE
        )
    }
}

/// A record reserved by [`Sender::reserve`], filled in place, sent by [`Reservation::commit`]
/// and abandoned when dropped. Its bytes start out zero.
///
/// The record lies in the shared ring, where a misbehaving peer process could write it too. So,
/// as with [`MessageRef`], it is written through copies ([`Reservation::copy_from_slice`],
/// [`Reservation::write_at`], [`Reservation::fill`]) and atomics
/// ([`Reservation::as_atomic`]), never handed out as `&mut [u8]`: what another process writes
/// meanwhile comes out as some mix of its bytes and ours. (Within this process, see
/// [`Channel`]: the ring is the channel's alone.) [`Reservation::as_mut_bytes`] gives a plain
/// slice to a caller who vouches that no peer touches it.
#[cfg(not(loom))]
#[derive(Debug)]
pub struct Reservation<'a> {
    sender: &'a mut Sender,
    idx: usize,
    len: usize,
}

#[cfg(not(loom))]
impl Reservation<'_> {
    /// Sends the message. (The receiver's close was looked for when the room was reserved; one
    /// that comes after it is noticed by the sender's next call.)
    pub fn commit(self) {
        let mut this = std::mem::ManuallyDrop::new(self);
        let (idx, len) = (this.idx, this.len);
        let sender = &mut *this.sender;
        let _ = sender.producer.commit(&sender.shared, idx, len, 0);
    }

    /// The reserved length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a reservation of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload's first byte, `len` bytes inside the data area (`ptr_at` checks it).
    fn payload(&self) -> *const u8 {
        self.sender
            .shared
            .mem
            .ptr_at(Producer::payload_offset(self.idx), self.len)
    }

    /// The first byte of the record's payload (for FFI; writing through it is the caller's
    /// responsibility, as with [`Reservation::as_mut_bytes`]).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.payload().cast_mut()
    }

    /// The bytes as atomics.
    pub fn as_atomic(&self) -> &[std::sync::atomic::AtomicU8] {
        // SAFETY: the payload is len bytes inside the mapped data area, kept mapped by the
        // sender this borrows; AtomicU8 has the layout of u8, and every access through the slice
        // is atomic, so a peer's concurrent writes are no data race.
        unsafe { std::slice::from_raw_parts(self.payload().cast(), self.len) }
    }

    /// Copies `src` to byte `offset` of the payload.
    ///
    /// # Panics
    /// If `src` does not fit there.
    pub fn write_at(&mut self, offset: usize, src: &[u8]) {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        assert!(
            offset <= self.len && self.len - offset >= src.len(),
            "write_at: {} bytes at {offset} of a reservation of {}",
            src.len(),
            self.len
        );
        let atoms = &self.as_atomic()[offset..offset + src.len()];
        // Byte by byte up to an 8-byte boundary, then word by word, then the rest.
        let head = atoms.as_ptr().align_offset(8).min(src.len());
        let words = (src.len() - head) / 8;
        for (atom, &byte) in atoms[..head].iter().zip(src) {
            atom.store(byte, Relaxed);
        }
        for i in 0..words {
            let at = head + 8 * i;
            let bytes: [u8; 8] = src[at..at + 8].try_into().expect("8 bytes");
            // SAFETY: 8 bytes inside the payload (bounds above), 8-aligned (head); an atomic
            // store never races.
            let word = unsafe { AtomicU64::from_ptr(atoms[at..].as_ptr().cast_mut().cast()) };
            word.store(u64::from_ne_bytes(bytes), Relaxed);
        }
        let tail = head + 8 * words;
        for (atom, &byte) in atoms[tail..].iter().zip(&src[tail..]) {
            atom.store(byte, Relaxed);
        }
    }

    /// Copies `src`, which must be exactly [`Reservation::len`] bytes long, into the payload.
    ///
    /// # Panics
    /// If `src.len() != self.len()`.
    pub fn copy_from_slice(&mut self, src: &[u8]) {
        assert_eq!(src.len(), self.len, "copy_from_slice: length mismatch");
        self.write_at(0, src);
    }

    /// Sets every byte of the payload to `byte`.
    pub fn fill(&mut self, byte: u8) {
        for atom in self.as_atomic() {
            atom.store(byte, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The payload as a plain mutable slice.
    ///
    /// # Safety
    /// No other thread or process may read or write these bytes while the slice lives: every
    /// peer follows the channel protocol (none touches another's reservation), and no other
    /// handle of this process's reaches them (such as [`crate::Segment::atomic_u32`]).
    pub unsafe fn as_mut_bytes(&mut self) -> &mut [u8] {
        // SAFETY: the reservation gives this producer the record's bytes, inside the data area,
        // kept mapped by the sender this borrows; &mut self makes this the only slice of them
        // here, and nobody else touches them, as the caller promises.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), self.len) }
    }
}

#[cfg(not(loom))]
impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let sender = &mut *self.sender;
        sender.producer.abandon(&sender.shared, self.idx, self.len);
    }
}

/// How much a [`Receiver`] holds of messages that come in fragments. A hostile or broken sender
/// could otherwise make it buffer up to 2 GiB per sender slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// The longest message put back together from fragments. Default 64 MiB. (A message of
    /// one record, at most [`Channel::max_record`] bytes, is delivered in place whatever this
    /// says.)
    pub max_message: usize,
    /// All partial messages together, of every sender: the fragments received of messages whose
    /// last fragment has not come yet. Default 256 MiB.
    pub max_pending: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message: 64 << 20,
            max_pending: 256 << 20,
        }
    }
}

/// A sender process that died without closing or detaching, found by the [`Receiver`] while it
/// waited; see [`Receiver::take_dead_senders`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeadSender {
    /// The dead process's id; with [`layout::PID_GONE`] set, that of a live process whose
    /// JavaScript sender went without closing (its Worker ended, or its engine collected it).
    pub pid: u32,
    /// The producer slot it held (0 in [`Mode::Spsc`]), free again for a new sender (with more
    /// than [`layout::ORPHAN_ENTRIES`] dead senders' records ahead, once the receiver has passed
    /// this one's or has room to record it).
    pub slot: usize,
}

/// A sender slot reclaimed from a dead process: its records all lie before `end`, the tail
/// position when the slot was reclaimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Orphan {
    slot: usize,
    end: u32,
    /// The dead sender's pid while it still holds the slot: every entry of the region was taken
    /// by dead senders whose records are ahead, so the slot is freed once its records are passed
    /// (a receiver taking over from this one finds it dead, as this one did), not before.
    held: Option<u32>,
}

/// An entry of the region's orphan record (see [`layout::Header::orphans`]) as
/// [`record_orphan`] found it, to put back if the slot was not reclaimed after all.
struct OrphanEntry {
    index: usize,
    tag: u32,
    end: u32,
}

impl OrphanEntry {
    fn undo(&self, sh: &Shared) {
        // The tag first: halfway, the entry is the old one's or holds the new end, which is
        // still true of a tag that was the slot's already.
        let (tag, end) = sh.orphan(self.index);
        tag.store(self.tag, Relaxed);
        end.store(self.end, Relaxed);
    }
}

/// Records in the region that the records of the dead sender in `slot` end before `end`: in
/// the slot's entry if it has one (an earlier sender of it died with records still ahead, which
/// end before `end` too), else in the first empty one; `None` if every entry is taken.
///
/// Relaxed, as `zeroing` (see `Consumer::announce`): read only by a receiver that takes over
/// from this one, after this one detached (its CAS of `consumer_pid` orders them) or died (a
/// killed process's stores are all in memory before it is seen dead). The end goes first, so
/// that an entry killed halfway is empty or holds an end that is still true.
fn record_orphan(sh: &Shared, slot: usize, end: u32) -> Option<OrphanEntry> {
    let tag = slot as u32 + 1;
    let held = |i: usize| sh.orphan(i).0.load(Relaxed);
    let index = (0..ORPHAN_ENTRIES)
        .find(|&i| held(i) == tag)
        .or_else(|| (0..ORPHAN_ENTRIES).find(|&i| held(i) == 0))?;
    let (tag_word, end_word) = sh.orphan(index);
    let before = OrphanEntry {
        index,
        tag: tag_word.load(Relaxed),
        end: end_word.load(Relaxed),
    };
    end_word.store(end, Relaxed);
    std::sync::atomic::compiler_fence(SeqCst);
    tag_word.store(tag, Relaxed);
    Some(before)
}

/// Empties the region's entries that no orphan of `known` (this receiver's) accounts for. The
/// receiver alone writes entries, and it loaded those of the receivers before it when it
/// attached: any other is a peer's, which would keep a dead sender of this receiver's unrecorded.
fn forget_strangers(sh: &Shared, known: &[Orphan]) {
    for i in 0..ORPHAN_ENTRIES {
        let (tag, end) = sh.orphan(i);
        let (t, e) = (tag.load(Relaxed), end.load(Relaxed));
        let ours = |o: &Orphan| o.held.is_none() && o.slot as u32 + 1 == t && o.end == e;
        if t != 0 && !known.iter().any(ours) {
            tag.store(0, Relaxed);
        }
    }
}

/// Empties the region's entry for `orphan` once its records are behind `head` (not one that a
/// later death of a sender of the slot moved on).
fn forget_orphan(sh: &Shared, orphan: Orphan) {
    for i in 0..ORPHAN_ENTRIES {
        let (tag, end) = sh.orphan(i);
        if tag.load(Relaxed) == orphan.slot as u32 + 1 && end.load(Relaxed) == orphan.end {
            tag.store(0, Relaxed);
        }
    }
}

/// The orphans that the receivers before this one recorded in the region, whose records are
/// still ahead of `head`; empties the entries that are not (left by a receiver killed as it
/// passed their end, or written by a peer). A receiver never records one slot twice: of a
/// peer's second entry for a slot, the one whose end is further ahead is kept (taking a live
/// sender's mark for a dead one's loses a message; the other way round reads a payload as
/// records), the other emptied.
fn load_orphans(sh: &Shared, head: u32, slots: usize) -> Vec<Orphan> {
    let used = (sh.tail().load(Acquire) & POS_MASK).wrapping_sub(head) & POS_MASK;
    let ahead = |end: u32| end.wrapping_sub(head) & POS_MASK;
    let mut found: Vec<(usize, Orphan)> = Vec::new();
    for i in 0..ORPHAN_ENTRIES {
        let (tag, end) = sh.orphan(i);
        let (slot, end) = (tag.load(Relaxed) as usize, end.load(Relaxed));
        if slot == 0 {
            continue;
        }
        if !(slot <= slots
            && end & !(POS_MASK & !7) == 0
            && ahead(end) != 0
            && ahead(end) <= used.min(sh.capacity))
        {
            tag.store(0, Relaxed);
            continue;
        }
        let orphan = Orphan {
            slot: slot - 1,
            end,
            held: None,
        };
        match found.iter_mut().find(|(_, o)| o.slot == orphan.slot) {
            None => found.push((i, orphan)),
            Some(kept) => {
                let emptied = if ahead(end) > ahead(kept.1.end) {
                    std::mem::replace(kept, (i, orphan)).0
                } else {
                    i
                };
                sh.orphan(emptied).0.store(0, Relaxed);
            }
        }
    }
    found.into_iter().map(|(_, orphan)| orphan).collect()
}

/// Liveness checks in a row at which the record at `head` is reserved and unmarked, with no dead
/// sender's records ahead, before it is swept: a live sender's reservation whose claim failed
/// (a peer wrote its commit word) is never marked, and one that stalls this long before its
/// claim loses only the reservation (it reserves again).
const LIVE_SWEEP_CHECKS: u32 = 10;

/// The most receives (calls, whatever they return) between two looks at the clock by a receiver
/// that does not wait: when a liveness check is due, it checks on its senders all the same (see
/// `Receiver::look_busy`).
const BUSY_LOOK_EVERY: u32 = 1024;

/// The receiving end. Made by [`Channel::receiver`]; dropping it closes the channel for the
/// senders (their sends fail with `EPIPE`).
///
/// Every [`WaitOptions::liveness_interval`] it checks that the senders' processes still exist:
/// while it waits for a message, and between messages when it never waits (it looks at the
/// clock about four times an interval at the pace it receives, and at least every 1,024
/// receives). A dead one's slot is reclaimed (a new sender may take it), the messages it
/// completed are still delivered, its unfinished message and any record it reserved but never
/// committed are dropped, and [`Receiver::take_dead_senders`] reports it.
/// Receiving fails with `ECONNRESET` only when the ring is empty, no sender is attached, and one
/// died with no sender attached since (the others may have closed or detached, before or after
/// it died).
#[derive(Debug)]
pub struct Receiver {
    shared: Arc<Shared>,
    consumer: Consumer,
    pid: u32,
    options: WaitOptions,
    limits: Limits,
    /// The message handed out by reference and not released yet: (idx, len).
    pending: Option<(usize, usize)>,
    /// The head at which an unmarked record was seen at the last liveness check, and at how
    /// many checks in a row (see `check_senders`).
    stuck: Option<(u32, u32)>,
    /// When the next liveness check is due, whether this receiver waits or not ...
    next_check: Instant,
    /// ... and, for one that does not wait, when it may reap again (see `look_busy`).
    next_busy_check: Instant,
    /// Receives left before one that does not wait looks at the clock (see `look_busy`) ...
    countdown: u32,
    /// ... counted down from this many, since this last look.
    looked_after: u32,
    last_look: Instant,
    /// Fragmented messages being put back together, by producer slot (one in SPSC).
    partials: Vec<Vec<u8>>,
    /// The bytes of all partial messages.
    pending_bytes: usize,
    /// Slots reclaimed from dead senders whose records are still ahead of `head`.
    orphans: Vec<Orphan>,
    /// Dead senders not yet taken by the user.
    dead: Vec<DeadSender>,
    /// A sender died and no sender has attached since (see `reap`).
    bereaved: bool,
    /// The senders (slot, pid) alive at the check that last found one dead: a sender seen alive
    /// later that is not among them attached since.
    survivors: Vec<(usize, u32)>,
    /// The senders alive at this check (kept to spare an allocation per check).
    alive: Vec<(usize, u32)>,
    /// The last reassembled message handed out by reference.
    assembled: Vec<u8>,
}

/// A message found by [`Receiver::next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    /// A one-record message, in the ring (now pending): (idx, len).
    InPlace(usize, usize),
    /// A reassembled message, complete in `partials[slot]`.
    Assembled(usize),
}

/// What one look at the ring gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poll {
    Got(Got),
    End,
    /// Nothing complete yet: the ring is empty, or the record at `head` is not committed.
    Wait(Peek),
}

/// A message received in place by [`Receiver::recv_ref`]: valid until the next receive or
/// [`Receiver::release`].
///
/// A one-record message stays in the shared ring, where a misbehaving peer process could still
/// change it. So its bytes are read only through copies ([`MessageRef::to_vec`],
/// [`MessageRef::copy_to_slice`], [`MessageRef::get`]) and atomics ([`MessageRef::as_atomic`]),
/// never handed out as `&[u8]`; what another process changes meanwhile comes out as some mix
/// of old and new bytes. (Within this process, see [`Channel`]: the ring is the channel's alone.)
/// [`MessageRef::as_bytes`] gives a plain slice to a caller who vouches that no peer writes it.
#[derive(Debug)]
pub struct MessageRef<'a> {
    ptr: *const u8,
    len: usize,
    _borrow: std::marker::PhantomData<&'a [std::sync::atomic::AtomicU8]>,
}

impl MessageRef<'_> {
    /// The message's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty message.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes as atomics, read with [`std::sync::atomic::Ordering::Relaxed`] loads.
    pub fn as_atomic(&self) -> &[std::sync::atomic::AtomicU8] {
        // SAFETY: ptr is valid for len bytes while the borrow of the receiver lasts (see
        // Receiver::hand_out); AtomicU8 has the layout of u8, and every access through the
        // slice is atomic, so a peer's concurrent writes are no data race.
        unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len) }
    }

    /// The address of the first byte (for pointer comparisons or FFI; reading through it is the
    /// caller's responsibility, as with [`MessageRef::as_bytes`]).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// The byte at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<u8> {
        self.as_atomic()
            .get(index)
            .map(|b| b.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Copies the message into `dst`, which must be exactly [`MessageRef::len`] bytes long.
    ///
    /// # Panics
    /// If `dst.len() != self.len()`.
    pub fn copy_to_slice(&self, dst: &mut [u8]) {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        assert_eq!(dst.len(), self.len, "copy_to_slice: length mismatch");
        // The payload starts 8-byte aligned (records are 8-aligned, the payload follows an
        // 8-byte header; a reassembled message is read the same way): copy word by word.
        let words = if self.ptr as usize % 8 == 0 {
            self.len / 8
        } else {
            0
        };
        for i in 0..words {
            // SAFETY: in bounds and 8-aligned (checked above); an atomic load never races.
            let word = unsafe { AtomicU64::from_ptr(self.ptr.add(8 * i).cast_mut().cast()) };
            dst[8 * i..8 * i + 8].copy_from_slice(&word.load(Relaxed).to_ne_bytes());
        }
        let atoms = self.as_atomic();
        for i in 8 * words..self.len {
            dst[i] = atoms[i].load(Relaxed);
        }
    }

    /// The message as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.len];
        self.copy_to_slice(&mut out);
        out
    }

    /// The bytes as a plain slice.
    ///
    /// # Safety
    /// No other thread or process may write these bytes while the slice lives: every sender
    /// follows the channel protocol (none writes a committed record).
    pub unsafe fn as_bytes(&self) -> &[u8] {
        // SAFETY: valid for len bytes while the borrow lasts; unchanging, as the caller promises.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Receiver {
    /// Receives the next message, waiting while the ring is empty: forever with `None`, else at
    /// most `timeout`. `Ok(None)` is the end of the stream: a sender closed the channel and
    /// every message was received. A message that came in fragments is returned whole.
    ///
    /// # Errors
    /// `ETIMEDOUT`; `ECONNRESET` if the ring is empty, no sender is attached and one died (see
    /// the type's docs); `EMSGSIZE` if a fragmented message grew beyond a [`Limits`] bound (that message
    /// is dropped, the next call goes on); `EBADMSG` if the ring is corrupt, or if this
    /// receiver's place holds another pid (a peer wrote the header). After `ETIMEDOUT`
    /// the fragments received so far are kept, and the next call goes on with the same message.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        Ok(self.recv_into(&mut buf, timeout)?.map(|_| buf))
    }

    /// Receives the next message if all of it is there now.
    ///
    /// # Errors
    /// `EAGAIN` if no whole message is ready (fragments that are there are collected), or after
    /// 1,024 records that deliver nothing in a row (abandoned reservations, aborted messages,
    /// fragments of a message not complete yet, a step per 64 KiB of them), which it consumes:
    /// a message behind more of them, or of more fragments, takes more calls; otherwise as
    /// [`Receiver::recv`].
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        Ok(self.copy_next(&mut buf, None)?.map(|_| buf))
    }

    /// As [`Receiver::recv`], into `buf` (cleared first); returns the length.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn recv_into(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Option<usize>> {
        self.copy_next(buf, Some(timeout))
    }

    /// Receives the next message in place: a one-record message stays in the ring, valid until
    /// the next receive or [`Receiver::release`], which frees its room for the senders; a
    /// message that came in fragments is in a buffer of the receiver, valid until the next
    /// receive. See [`MessageRef`] for how its bytes are read.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    #[cfg(not(loom))]
    pub fn recv_ref(&mut self, timeout: Option<Duration>) -> Result<Option<MessageRef<'_>>> {
        let next = self.next(Some(timeout))?;
        Ok(next.map(|got| self.hand_out(got)))
    }

    /// As [`Receiver::recv_ref`], if all of the next message is there now.
    ///
    /// # Errors
    /// `EAGAIN` if no whole message is ready; otherwise as [`Receiver::recv`].
    #[cfg(not(loom))]
    pub fn try_recv_ref(&mut self) -> Result<Option<MessageRef<'_>>> {
        let next = self.next(None)?;
        Ok(next.map(|got| self.hand_out(got)))
    }

    /// Sets the bounds on messages that come in fragments (see [`Limits`]).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The sender processes found dead since the last call (see the type's docs), oldest first.
    pub fn take_dead_senders(&mut self) -> Vec<DeadSender> {
        std::mem::take(&mut self.dead)
    }

    #[cfg(not(loom))]
    fn hand_out(&mut self, got: Got) -> MessageRef<'_> {
        let (ptr, len) = match got {
            Got::InPlace(idx, len) => (
                self.shared.mem.ptr_at(Consumer::payload_offset(idx), len),
                len,
            ),
            Got::Assembled(slot) => {
                self.assembled.clear();
                std::mem::swap(&mut self.assembled, &mut self.partials[slot]);
                (self.assembled.as_ptr(), self.assembled.len())
            }
        };
        // The record stays unreleased (and so unwritten by any sender that follows the
        // protocol) until the next receive, which needs &mut self: not while the borrow lasts.
        MessageRef {
            ptr,
            len,
            _borrow: std::marker::PhantomData,
        }
    }

    /// Releases the message handed out by [`Receiver::recv_ref`] (the next receive does it too).
    /// Not into a ring whose receiver's place holds another pid (see [`Receiver::recv`]): its
    /// `head` is that receiver's.
    pub fn release(&mut self) {
        if self.check_place().is_ok() {
            self.hand_back();
        }
    }

    /// [`Receiver::release`] once the place was looked at.
    fn hand_back(&mut self) {
        if let Some((idx, len)) = self.pending.take() {
            self.consumer.release(&self.shared, idx, len);
        }
    }

    /// `EBADMSG` unless this receiver's place holds its pid: a peer that cleared the word let a
    /// second receiver attach, and two receivers taking from one `head` would deliver messages
    /// twice and move `head` back and forth.
    fn check_place(&self) -> Result<()> {
        // Not under loom (see `Sender::check_place`).
        if cfg!(loom) {
            return Ok(());
        }
        let holder = self.shared.consumer_pid().load(Relaxed);
        if holder == self.pid {
            return Ok(());
        }
        Err(corrupt(format!(
            "this receiver's place holds {} instead of its pid {} (a peer wrote the channel's \
             header): nothing was received; every receive fails so, and dropping this receiver \
             does not close the channel",
            holder_of(holder),
            self.pid
        )))
    }

    /// Closes the receiving end (as dropping it does).
    pub fn close(self) {}

    fn copy_next(
        &mut self,
        buf: &mut Vec<u8>,
        wait: Option<Option<Duration>>,
    ) -> Result<Option<usize>> {
        let Some(got) = self.next(wait)? else {
            return Ok(None);
        };
        buf.clear();
        match got {
            Got::InPlace(idx, len) => {
                // SAFETY: the record is valid and unchanging until released (as in hand_out);
                // buf has room for len bytes, which the copy initialises before set_len.
                unsafe {
                    buf.reserve(len);
                    self.shared
                        .mem
                        .read(Consumer::payload_offset(idx), buf.as_mut_ptr(), len);
                    buf.set_len(len);
                }
                self.release();
            }
            // The caller gets the reassembled buffer; its old one collects the next message.
            Got::Assembled(slot) => std::mem::swap(buf, &mut self.partials[slot]),
        }
        Ok(Some(buf.len()))
    }

    /// The next message: `wait` None = try once, Some(timeout) = block.
    #[inline]
    fn next(&mut self, wait: Option<Option<Duration>>) -> Result<Option<Got>> {
        // Before the message handed out last is released: its room is another receiver's then.
        self.check_place()?;
        self.hand_back();
        self.countdown -= 1;
        if self.countdown == 0 {
            self.look_busy();
        }
        match (self.poll()?, wait) {
            (Poll::Got(got), _) => Ok(Some(got)),
            (Poll::End, _) => Ok(None),
            (Poll::Wait(_), None) => {
                // Nothing ready (a reservation, or skip records that delivered nothing).
                self.consumer.wake_pending(&self.shared);
                Err(ChannelError::Empty)
            }
            (Poll::Wait(_), Some(timeout)) => self.next_slow(timeout),
        }
    }

    #[cold]
    fn next_slow(&mut self, timeout: Option<Duration>) -> Result<Option<Got>> {
        let sh = Arc::clone(&self.shared);
        let mut clock = Clock::new(timeout, &self.options).checking_at(self.next_check);
        loop {
            self.check_place()?;
            let state = match self.poll()? {
                Poll::Got(got) => return Ok(Some(got)),
                Poll::End => return Ok(None),
                Poll::Wait(state) => state,
            };
            // Before spinning or parking (Consumer::peek did, for an empty ring).
            self.consumer.wake_pending(&sh);
            // After records that delivered nothing (a peer writing them as fast as they are
            // consumed, see STEP_LIMIT), no spin: the deadline is checked at once.
            let spin = if state == Peek::Busy {
                0
            } else {
                self.options.spin
            };
            let slice = match clock.next(spin)? {
                Step::Spin => continue,
                Step::Check => {
                    self.next_check = clock.next_check;
                    self.check_senders(state)?;
                    continue;
                }
                Step::Park(slice) => slice,
            };
            let word = sh.rx_waiting();
            word.swap(1, SeqCst);
            fence(SeqCst);
            if !self.consumer.should_wake(&sh) {
                park::wait(word, 1, Some(slice)).map_err(os)?;
            }
            word.swap(0, Relaxed);
        }
    }

    /// Consumes records until a whole message is there (a one-record message is left in the
    /// ring, pending), the stream ends, or nothing more is committed.
    #[inline]
    fn poll(&mut self) -> Result<Poll> {
        let mut steps = 0;
        loop {
            let peek = self
                .consumer
                .peek_within(&self.shared, STEP_LIMIT.saturating_sub(steps))?;
            steps += self.consumer.stepped;
            if !self.orphans.is_empty() {
                self.settle_orphans();
            }
            match peek {
                Peek::Message { idx, len, kind } => {
                    if kind == 0 {
                        self.pending = Some((idx, len));
                        return Ok(Poll::Got(Got::InPlace(idx, len)));
                    }
                    match self.reassemble(idx, len, kind)? {
                        Reassembled::Got(got) => return Ok(Poll::Got(got)),
                        // Counted, with the bytes copied: a peer writing such records as fast
                        // as they are consumed must not keep this look going (see
                        // STEP_LIMIT).
                        Reassembled::Collected | Reassembled::Dropped => {
                            steps +=
                                1 + u32::try_from(len / FRAGMENT_STEP_BYTES).unwrap_or(STEP_LIMIT);
                        }
                    }
                }
                Peek::End => {
                    // Messages cut off by the end of the stream are never completed.
                    self.partials.iter_mut().for_each(|p| *p = Vec::new());
                    self.pending_bytes = 0;
                    for orphan in std::mem::take(&mut self.orphans) {
                        self.let_go(orphan);
                    }
                    return Ok(Poll::End);
                }
                state => return Ok(Poll::Wait(state)),
            }
        }
    }

    /// Drops the partial message of every reclaimed slot whose records are all behind `head`:
    /// its sender is dead, so it can never be completed.
    #[cold]
    fn settle_orphans(&mut self) {
        let (head, cap) = (self.consumer.head, self.shared.capacity);
        let mut i = 0;
        while i < self.orphans.len() {
            let orphan = self.orphans[i];
            let ahead = orphan.end.wrapping_sub(head) & POS_MASK;
            if ahead == 0 || ahead > cap {
                self.drop_partial(orphan.slot);
                self.orphans.swap_remove(i);
                self.let_go(orphan);
            } else {
                i += 1;
            }
        }
    }

    /// Done with `orphan`, whose records are all behind `head`: empties its entry in the
    /// region, or frees the slot it still held for want of one.
    fn let_go(&self, orphan: Orphan) {
        match orphan.held {
            // Nothing of it is ahead: nothing to record. A failed CAS is a peer's write.
            Some(pid) => {
                let _ = self
                    .shared
                    .producer_pid(orphan.slot)
                    .compare_exchange(pid, 0, AcqRel, Relaxed);
            }
            None => forget_orphan(&self.shared, orphan),
        }
    }

    /// True if the reclaimed `slot`'s records are still ahead of `head`.
    fn orphaned(&self, slot: usize) -> Option<Orphan> {
        let (head, cap) = (self.consumer.head, self.shared.capacity);
        self.orphans.iter().copied().find(|o| {
            let ahead = o.end.wrapping_sub(head) & POS_MASK;
            o.slot == slot && ahead != 0 && ahead <= cap
        })
    }

    /// Forgets the unfinished message of `slot`, if any.
    fn drop_partial(&mut self, slot: usize) {
        let partial = &mut self.partials[slot];
        if !partial.is_empty() {
            self.pending_bytes -= partial.len();
            *partial = Vec::new();
        }
    }

    /// Applies the reassembly rules (see [`layout`]) to the fragment or abort record at `idx`.
    /// On an `EBADMSG` error the record stays unconsumed, so the same error comes again; on
    /// `EMSGSIZE` (a limit) it is consumed and the sender's message dropped.
    #[cold]
    fn reassemble(&mut self, idx: usize, len: usize, kind: u32) -> Result<Reassembled> {
        let sh = Arc::clone(&self.shared);
        let slot = self.consumer.producer_slot(&sh, idx)?;
        let mut outcome = Reassembled::Collected;
        if kind == REC_ABORT {
            self.drop_partial(slot);
            self.consumer.release(&sh, idx, len);
            return Ok(Reassembled::Dropped);
        }
        if kind & REC_CONT == 0 {
            // A first fragment. An honest sender ends what it began with its last fragment or
            // an abort record; one that died in the middle of a message ends it here.
            if !self.partials[slot].is_empty() {
                self.drop_partial(slot);
                outcome = Reassembled::Dropped;
            }
        } else if self.partials[slot].is_empty() {
            // The rest of a message this receiver did not see begin: a receiver that died
            // consumed its first fragments, or it was dropped for a limit.
            self.consumer.release(&sh, idx, len);
            return Ok(Reassembled::Dropped);
        }
        let total = self.partials[slot].len() + len;
        if total > MAX_MESSAGE_LEN {
            return Err(corrupt(format!(
                "a fragmented message of producer slot {slot} grows beyond {MAX_MESSAGE_LEN} bytes"
            )));
        }
        let limits = self.limits;
        let more = kind & REC_MORE != 0;
        if total > limits.max_message || (more && self.pending_bytes + len > limits.max_pending) {
            // Its remaining fragments find no message begun, and are dropped.
            self.drop_partial(slot);
            self.consumer.release(&sh, idx, len);
            return Err(over_limit(slot, total, &limits));
        }
        let partial = &mut self.partials[slot];
        partial.reserve(len);
        let at = partial.len();
        // SAFETY: peek validated the record inside the data area and nobody writes it until
        // release; the partial buffer has room for len more bytes, initialised before set_len.
        unsafe {
            sh.mem.read(
                Consumer::payload_offset(idx),
                partial.as_mut_ptr().add(at),
                len,
            );
            partial.set_len(at + len);
        }
        self.consumer.release(&sh, idx, len);
        if more {
            self.pending_bytes += len;
            return Ok(outcome);
        }
        self.pending_bytes -= at;
        Ok(Reassembled::Got(Got::Assembled(slot)))
    }

    /// A receive counted down `countdown` receives: a receiver that never waits checks on its
    /// senders all the same once a check is due, so a dead sender's slot is freed for a new one
    /// while the others keep it busy. The next look comes after as many receives as take about
    /// a quarter of the interval at the pace of those since the last look, no more than twice
    /// as many as last time, and no more than [`BUSY_LOOK_EVERY`]: a receiver that spends long
    /// on each message still checks on time.
    #[cold]
    fn look_busy(&mut self) {
        let now = Instant::now();
        let spent = now.saturating_duration_since(self.last_look).as_nanos();
        let each = (spent / u128::from(self.looked_after)).max(1);
        let quarter = liveness_interval(&self.options).as_nanos() / 4;
        // At most twice as many as last time: one fast stretch says little of the next.
        let most = (2 * self.looked_after).min(BUSY_LOOK_EVERY);
        self.looked_after = (quarter / each).clamp(1, u128::from(most)) as u32;
        self.countdown = self.looked_after;
        self.last_look = now;
        // A wait's checks keep their own schedule (the steps after reaping are theirs alone).
        if now >= self.next_check && now >= self.next_busy_check {
            self.next_busy_check = later(now, liveness_interval(&self.options));
            self.reap();
        }
    }

    /// Reclaims the slots of dead senders (their records still ahead become orphans); returns
    /// how many senders are alive.
    ///
    /// A receive fails with `ECONNRESET` once the ring is empty and no sender is attached, if one
    /// died and no sender has attached since, as far as the checks can tell: the senders alive
    /// when a death is found are remembered, and a sender seen alive later that is not among them
    /// (another pid, or another slot) attached after it. Senders that outlived a dead one and
    /// then left cleanly (a pool whose workers detach when done) no longer hide its death,
    /// whenever the checks ran, as they did when any sender seen alive cleared it. What the
    /// checks cannot see: a sender that attached after the death but before the check that found
    /// it counts as one that outlived it (a pool that respawns a crashed worker at once), and one
    /// that attached and left between two checks is never seen.
    #[cold]
    fn reap(&mut self) -> u32 {
        let sh = Arc::clone(&self.shared);
        let slots = if sh.mode == MODE_SPSC {
            1
        } else {
            MAX_PRODUCERS
        };
        let mut live = 0;
        let mut died = false;
        self.alive.clear();
        for slot in 0..slots {
            let word = sh.producer_pid(slot);
            let pid = word.load(Acquire);
            if pid == 0 {
                continue;
            }
            // Found dead before and holding its slot for want of an entry: it tries again. Not
            // probed again: its number may belong to a new process by now, which no sender slot
            // holds (a sender takes only a free one).
            let held = self
                .orphans
                .iter()
                .position(|o| o.slot == slot && o.held == Some(pid));
            if held.is_none() && liveness::alive(pid) {
                live += 1;
                self.alive.push((slot, pid));
                continue;
            }
            let end = match held {
                Some(i) => self.orphans[i].end,
                // Loaded after the probe found the sender dead (every record it reserved lies
                // before this position: a killed process's stores are all in memory before it
                // is seen dead) and before the reclaiming CAS (a sender that takes the slot
                // reserves at or after it). Loaded before the probe, it missed a record
                // reserved between the two by a sender killed right after, whose mark then held
                // up the ring for good.
                None => sh.tail().load(Acquire) & POS_MASK,
            };
            // The death in the header before the entry, for a receiver that takes over from this
            // one: never an entry without it (see `Header::bereaved`).
            if held.is_none() {
                sh.bereaved().store(1, Release);
            }
            // In the region first, for a receiver that takes over from this one (see
            // `Header::orphans`). Entries this receiver did not write are a peer's: with every
            // entry taken, those go.
            let entry = record_orphan(&sh, slot, end).or_else(|| {
                forget_strangers(&sh, &self.orphans);
                record_orphan(&sh, slot, end)
            });
            // With no entry, every entry is a dead sender's whose records are ahead: the slot
            // stays held, by a dead pid that a receiver taking over finds as this one did,
            // until this one passes its records (`let_go`) or an entry frees up. Freed
            // unrecorded, its mark looked stale to a receiver taking over, which stepped onto
            // its payload.
            let freed = entry.as_ref().is_some_and(|entry| {
                let freed = word.compare_exchange(pid, 0, AcqRel, Relaxed).is_ok();
                if !freed {
                    entry.undo(&sh); // a peer changed the slot's word
                }
                freed
            });
            match held {
                Some(i) if freed => self.orphans[i].held = None,
                Some(_) => {}
                None if freed || entry.is_none() => {
                    let held = (!freed).then_some(pid);
                    self.orphans.push(Orphan { slot, end, held });
                    self.dead.push(DeadSender { pid, slot });
                    died = true;
                }
                None => {}
            }
        }
        if died {
            self.bereaved = true;
            // The header says so already: stored before each death's entry, above.
            std::mem::swap(&mut self.survivors, &mut self.alive);
        } else if self.bereaved
            && self
                .alive
                .iter()
                .any(|sender| !self.survivors.contains(sender))
        {
            self.bereaved = false;
            self.shared.bereaved().store(0, Release);
        }
        live
    }

    /// The liveness check of a waiting receiver: reclaims the slots of dead senders, steps over
    /// a record at `head` that a dead sender reserved, and fails when no sender is left and one
    /// died.
    #[cold]
    fn check_senders(&mut self, state: Peek) -> Result<()> {
        let sh = Arc::clone(&self.shared);
        let live = self.reap();
        let head = self.consumer.head;
        match state {
            Peek::Reserved { idx, span, slot } => {
                let mark = layout::mark_word(slot, span);
                let many = sh.mode == MODE_MPSC;
                // Loaded after the mark: it covers every record marked by then.
                let tail = sh.tail().load(Acquire) & POS_MASK;
                let past_tail = span > tail.wrapping_sub(head) & POS_MASK;
                let checks = match self.stuck {
                    Some((at, checks)) if at == head => checks + 1,
                    _ => 1,
                };
                self.stuck = None;
                if self.orphaned(slot).is_some() && !past_tail {
                    // The dead sender's own reservation, whole if its producer word says so.
                    let owner = many.then_some(slot as u32 + 1);
                    self.consumer.drop_mark(&sh, idx, mark, span, owner);
                } else if many && (past_tail || sh.producer_pid(slot).load(Acquire) == 0) {
                    // A mark that no live sender can have made here: it runs past `tail` (a
                    // sender marks only inside what it reserved), or its slot is free with no
                    // records of a dead sender of it ahead. It is stale, left by a sender killed
                    // in its claim after losing its place (see `Producer::claim`), on a
                    // reservation whose own sender takes it over, unless it died (or stalls):
                    // found so at two checks in a row, its word is taken alone, the rest swept.
                    if checks >= 2 {
                        let word = layout::RECORD_ALIGN as u32;
                        self.consumer.drop_mark(&sh, idx, mark, word, None);
                    } else {
                        self.stuck = Some((head, checks));
                    }
                }
            }
            Peek::InFlight if sh.mode == MODE_SPSC => {
                // The only sender's last reservation, never marked: it ends at the orphan's end.
                if let Some(orphan) = self.orphaned(0) {
                    // A record boundary, unless a peer wrote `tail`.
                    if orphan.end & 7 != 0 {
                        return Err(corrupt(format!(
                            "corrupt channel tail {:#x}: not on a record boundary",
                            orphan.end
                        )));
                    }
                    // Not if it has been marked since the look that found it: the next look
                    // takes what the sender committed before it died.
                    let _ = self.consumer.skip_to(&sh, orphan.end);
                }
            }
            Peek::InFlight => {
                // Unmarked for a whole interval while a dead sender's records are still ahead:
                // it may be that sender's, killed between reserving and marking, whose length
                // is unknown. A sweep takes back the zero words up to the next record, no
                // further than the dead sender's records go. With nobody dead, only after
                // LIVE_SWEEP_CHECKS checks.
                let checks = match self.stuck {
                    Some((at, checks)) if at == head => checks + 1,
                    _ => 1,
                };
                self.stuck = Some((head, checks));
                let ahead = |end: u32| end.wrapping_sub(head) & POS_MASK;
                let dead_until = self
                    .orphans
                    .iter()
                    .map(|o| o.end)
                    .filter(|&end| ahead(end) != 0 && ahead(end) <= sh.capacity)
                    .max_by_key(|&end| ahead(end));
                let until = match dead_until {
                    Some(end) if checks >= 2 => end,
                    // A live sender's claim failed (a peer wrote its word) and it reserved
                    // again, or it stalls before its claim: swept as far as the ring goes.
                    _ if checks >= LIVE_SWEEP_CHECKS => head.wrapping_add(sh.capacity) & POS_MASK,
                    _ => return Ok(()),
                };
                // A sweep cut short (by its bound, or by the end of the data area) goes on at
                // the next check.
                let taken = self.consumer.sweep(&sh, until)?;
                let wrapped = taken > 0 && self.consumer.head & sh.mask == 0;
                self.stuck =
                    (taken == ring::SWEEP_MAX || wrapped).then_some((self.consumer.head, checks));
            }
            Peek::Empty if self.bereaved && live == 0 => {
                return Err(peer_died(
                    "no sender is attached, and one died without closing the channel, with none attached since (those that left closed or detached); a sender that attaches later is received",
                ));
            }
            _ => self.stuck = None,
        }
        Ok(())
    }
}

/// `EMSGSIZE`: a fragmented message grew beyond the receiver's limits; it was dropped.
fn over_limit(slot: usize, total: usize, limits: &Limits) -> ChannelError {
    let what = if total > limits.max_message {
        format!(
            "a message of at least {total} bytes is longer than the receiver's limit of {} \
             bytes (Limits::max_message)",
            limits.max_message
        )
    } else {
        format!(
            "the partial messages of all senders would exceed the receiver's limit of {} bytes \
             (Limits::max_pending)",
            limits.max_pending
        )
    };
    ChannelError::OverLimit(format!(
        "{what}; the message of sender slot {slot} was dropped"
    ))
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // A place another receiver holds now (see `check_place`): the channel is that one's.
        if self.check_place().is_err() {
            return;
        }
        // `head` first: a sender that sees the close mark reads it to learn whether its last
        // message was consumed.
        self.hand_back();
        let sh = &*self.shared;
        sh.close_consumer();
        let _ = sh
            .consumer_pid()
            .compare_exchange(self.pid, 0, AcqRel, Relaxed);
        sh.wake_producers();
    }
}
