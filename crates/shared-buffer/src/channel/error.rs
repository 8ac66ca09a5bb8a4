//! The channel's errors: one type whose variants say what happened, as crossbeam's
//! `TrySendError::{Full, Disconnected}` do, each with one errno ([`ChannelError::errno`]) for
//! callers that speak errno (the C boundary, `io::Error`).

use std::fmt;
use std::io;

use super::layout::PID_GONE;

/// Who closed a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClosedBy {
    /// The receiver closed it (or went away): nothing more can be sent.
    Receiver,
    /// A sender closed it: the stream has ended.
    Sender,
}

/// Why a channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelError {
    /// A non-waiting send or reservation found no room (`EAGAIN`).
    Full,
    /// A non-waiting receive found no whole message ready (`EAGAIN`).
    Empty,
    /// Open found the header not initialised yet: retry (`EAGAIN`).
    NotReady,
    /// A sender's place is held by this dead process; the receiver frees it within its liveness
    /// interval while it receives (`EAGAIN`).
    PlaceHeldByDead(u32),
    /// A blocking call's timeout passed (`ETIMEDOUT`).
    Timeout,
    /// The channel is closed (`EPIPE`).
    Closed(ClosedBy),
    /// The peer process(es) died without closing: the receiver, for a sender waiting for room;
    /// every sender, for a receiver on an empty ring (`ECONNRESET`).
    PeerDied(&'static str),
    /// A second receiver, a second live sender on a one-sender channel, or every sender slot
    /// taken by a live process (`EBUSY`).
    Busy(String),
    /// A message or reservation longer than the call takes (`EMSGSIZE`).
    TooLong(String),
    /// A fragmented message went beyond the receiver's [`Limits`](super::Limits); it was
    /// dropped (`EMSGSIZE`).
    OverLimit(String),
    /// The header or the ring is corrupt (`EBADMSG`).
    Corrupt(String),
    /// The channel has another layout version (`EPROTONOSUPPORT`).
    Version(u32),
    /// The channel's endpoints are in another pid namespace, `theirs`, than this process's,
    /// `ours` (`EXDEV`): peers are told alive or dead by pid, which holds only within one.
    OtherPidNamespace {
        /// The creator's (the header's `pid_namespace`).
        theirs: u32,
        /// This process's.
        ours: u32,
    },
    /// A bad capacity, mode, pointer or region size (`EINVAL`).
    Invalid(String),
    /// Waiting in the kernel failed with this errno.
    Os(i32),
}

impl ChannelError {
    /// The errno (positive) that stands for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Self::Full | Self::Empty | Self::NotReady | Self::PlaceHeldByDead(_) => libc::EAGAIN,
            Self::Timeout => libc::ETIMEDOUT,
            Self::Closed(_) => libc::EPIPE,
            Self::PeerDied(_) => libc::ECONNRESET,
            Self::Busy(_) => libc::EBUSY,
            Self::TooLong(_) | Self::OverLimit(_) => libc::EMSGSIZE,
            Self::Corrupt(_) => libc::EBADMSG,
            Self::Version(_) => libc::EPROTONOSUPPORT,
            Self::OtherPidNamespace { .. } => libc::EXDEV,
            Self::Invalid(_) => libc::EINVAL,
            Self::Os(errno) => *errno,
        }
    }

    /// The channel error inside `err`, if an `io::Error` made from one carries it.
    pub fn find(err: &io::Error) -> Option<&Self> {
        err.get_ref()?.downcast_ref::<Self>()
    }

    fn kind(&self) -> io::ErrorKind {
        match self {
            Self::Full | Self::Empty | Self::NotReady | Self::PlaceHeldByDead(_) => {
                io::ErrorKind::WouldBlock
            }
            Self::Timeout => io::ErrorKind::TimedOut,
            Self::Closed(_) => io::ErrorKind::BrokenPipe,
            Self::PeerDied(_) => io::ErrorKind::ConnectionReset,
            Self::Busy(_) => io::ErrorKind::ResourceBusy,
            Self::TooLong(_) | Self::Invalid(_) => io::ErrorKind::InvalidInput,
            Self::Version(_) | Self::OtherPidNamespace { .. } => io::ErrorKind::Unsupported,
            Self::OverLimit(_) | Self::Corrupt(_) => io::ErrorKind::InvalidData,
            Self::Os(_) => io::ErrorKind::Other,
        }
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("the ring is full"),
            Self::Empty => f.write_str("no whole message is ready"),
            Self::NotReady => f.write_str("channel header not initialised yet (magic is 0)"),
            Self::PlaceHeldByDead(pid) if pid & PID_GONE != 0 => write!(
                f,
                "a sender's place is held by a JavaScript endpoint of process {} that went \
                 without closing it (its Worker ended, or its engine collected it); the receiver \
                 frees it within its liveness interval while it receives",
                pid & !PID_GONE
            ),
            Self::PlaceHeldByDead(pid) => write!(
                f,
                "a sender's place is held by process {pid}, which died; the receiver frees it \
                 within its liveness interval while it receives"
            ),
            Self::Timeout => f.write_str("timed out"),
            Self::Closed(ClosedBy::Receiver) => f.write_str("the receiver closed the channel"),
            Self::Closed(ClosedBy::Sender) => {
                f.write_str("a sender closed the channel: the stream has ended")
            }
            Self::PeerDied(what) => f.write_str(what),
            Self::Busy(what)
            | Self::TooLong(what)
            | Self::OverLimit(what)
            | Self::Corrupt(what)
            | Self::Invalid(what) => f.write_str(what),
            Self::Version(found) => write!(
                f,
                "channel layout version {found}, this library speaks {}",
                super::layout::VERSION
            ),
            Self::OtherPidNamespace { theirs, ours } => write!(
                f,
                "the channel's endpoints are in another pid namespace (pid:[{theirs}]; this \
                 process is in pid:[{ours}]): peers are told alive or dead by pid, which holds \
                 only within one pid namespace; run every endpoint of a channel in one (a \
                 container sharing another's /dev/shm must share its pid namespace too)"
            ),
            Self::Os(errno) => write!(f, "{}", io::Error::from_raw_os_error(*errno)),
        }
    }
}

impl std::error::Error for ChannelError {}

impl From<ChannelError> for io::Error {
    fn from(err: ChannelError) -> Self {
        match err {
            ChannelError::Os(errno) => io::Error::from_raw_os_error(errno),
            err => io::Error::new(err.kind(), err),
        }
    }
}

/// The channel's results.
pub type Result<T> = std::result::Result<T, ChannelError>;

/// The errno of a channel error (positive). Kept for callers that speak errno.
pub fn error_code(err: &ChannelError) -> i32 {
    err.errno()
}

/// `EBADMSG`: the header or ring is corrupt.
pub(crate) fn corrupt(message: String) -> ChannelError {
    ChannelError::Corrupt(message)
}

/// A failed kernel wait.
pub(crate) fn os(err: io::Error) -> ChannelError {
    ChannelError::Os(err.raw_os_error().unwrap_or(libc::EIO))
}
