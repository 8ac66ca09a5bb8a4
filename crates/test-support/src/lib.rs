//! What the workspace's tests and benchmarks share, so that each test file holds only its tests.
//! A dev-dependency of the crates whose tests use it; never published.
//!
//! - **Segments a test owns.** [`Scratch`] is a segment id ([`unique`] in this process and on
//!   this machine) that is removed when the test ends, however it ends; [`TestSeg`] is a named
//!   4 KiB segment made on such an id, with its 32-bit words at hand.
//! - **Memory without a segment.** [`Heap`]: an 8-byte-aligned region on the heap, for channels
//!   tested in one process.
//! - **Child processes.** A test binary starts copies of itself as children: [`rerun`] runs only
//!   the named test (an entry point that does nothing unless the child's environment gives it a
//!   role), and [`Kids`] kills and reaps every child when the test ends. [`echo`] is the child's
//!   side of a ping-pong through two words of a segment, shared by the wait/notify tests and the
//!   wait benchmark.
//! - **Waiting for conditions, not for time.** [`await_value`] parks until a word holds a value;
//!   [`LONG`] is the hang guard of every wait, far beyond any healthy run, never a measure.
//! - **Process-wide state.** [`serial`] serialises the tests of one binary that read or change
//!   something the whole process shares (the handle count, the umask).

use std::env;
use std::ops::Deref;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use shared_buffer::sync::{WaitOutcome, wait, wait_spin};
use shared_buffer::{Options, Segment, SegmentId};

/// How long a test waits for something that should happen at once before it fails: a guard
/// against hangs (a lost wake-up, a child that never answers), not a bound on speed.
pub const LONG: Duration = Duration::from_secs(10);

/// A number that no other call in this process returns (and, mixing in the pid, most likely no
/// other process on the machine): for segment names and System V keys.
pub fn unique() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::process::id().wrapping_mul(4096) ^ NEXT.fetch_add(1, Ordering::Relaxed) ^ 0x6a00_0000
}

/// Serialises the tests of one test binary that read or change process-wide state: hold the
/// guard for the whole test. A test that panicked while holding it does not block the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static GLOBAL: Mutex<()> = Mutex::new(());
    GLOBAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A segment id that this test owns: removed (if it exists) when the value drops, however the
/// test ends.
#[derive(Debug)]
pub struct Scratch(pub SegmentId);

impl Scratch {
    /// A name `/sb-<tag>-<unique>`, removed first in case a crashed earlier run left it.
    pub fn named(tag: &str) -> Self {
        let id = SegmentId::name(&format!("/sb-{tag}-{:08x}", unique())).expect("a valid name");
        let _ = Segment::unlink(&id);
        Self(id)
    }

    /// A System V key, removed first in case a crashed earlier run left it.
    pub fn keyed() -> Self {
        let id = SegmentId::key(unique()).expect("a valid key");
        let _ = Segment::unlink(&id);
        Self(id)
    }

    /// One of each kind: the tests that hold for both run over this.
    pub fn both(tag: &str) -> [Self; 2] {
        [Self::keyed(), Self::named(tag)]
    }

    /// The name of a named id, as a child process is told it.
    ///
    /// # Panics
    /// For a keyed id.
    pub fn name(&self) -> &str {
        match &self.0 {
            SegmentId::Name(name) => name.to_str().expect("names are made from UTF-8"),
            SegmentId::Key(key) => panic!("key {key} has no name"),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Segment::unlink(&self.0);
    }
}

/// A named 4 KiB segment that this test created and removes when it drops. Derefs to the
/// [`Segment`].
#[derive(Debug)]
pub struct TestSeg {
    seg: Segment,
    id: Scratch,
}

impl TestSeg {
    /// Creates the segment; `tag` (the test's name, say) goes into its name.
    pub fn new(tag: &str) -> Self {
        let id = Scratch::named(tag);
        let seg = Segment::create(&id.0, 4096, &Options::default()).expect("create a segment");
        Self { seg, id }
    }

    /// The segment's name, for a child process to open it by.
    pub fn name(&self) -> &str {
        self.id.name()
    }

    /// The segment's id.
    pub fn id(&self) -> &SegmentId {
        &self.id.0
    }

    /// The 32-bit word at `index` (byte offset `4 * index`).
    pub fn word(&self, index: usize) -> &AtomicU32 {
        self.seg.atomic_u32(index * 4)
    }
}

impl Deref for TestSeg {
    type Target = Segment;
    fn deref(&self) -> &Segment {
        &self.seg
    }
}

/// An 8-byte-aligned, zeroed region on the heap: memory for a channel tested within one
/// process, or for bytes built by hand.
#[derive(Debug)]
pub struct Heap(Vec<u64>);

impl Heap {
    /// `len` bytes, rounded up to a multiple of 8.
    pub fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(8)])
    }

    /// The first byte.
    pub fn ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr().cast()
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.0.len() * 8
    }

    /// True for a region of no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the Vec owns len() initialised bytes; u8 has no alignment or validity
        // requirements, and &self keeps the bytes from changing meanwhile.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.len()) }
    }

    /// The bytes, to change.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        // SAFETY: as in bytes; &mut self makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), len) }
    }
}

/// This test binary run again as a child process that runs only its test `entry`, with stdout
/// discarded (set it to `Stdio::piped()` to read it). The entry test does nothing in a normal run;
/// the environment variables the caller sets give the child its role.
pub fn rerun(entry: &str) -> Command {
    let mut cmd = Command::new(env::current_exe().expect("the path of this test binary"));
    cmd.args([entry, "--exact", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::null());
    cmd
}

/// Child processes of one test, killed and reaped when the value drops, so that none outlives
/// its test whatever happens.
#[derive(Debug, Default)]
pub struct Kids(pub Vec<Child>);

impl Kids {
    /// Starts `cmd`; returns the child's index.
    pub fn spawn(&mut self, cmd: &mut Command) -> usize {
        self.0.push(cmd.spawn().expect("start a child process"));
        self.0.len() - 1
    }

    /// Kills the last child started (SIGKILL on Unix) and reaps it.
    pub fn kill_last(&mut self) {
        let mut child = self.0.pop().expect("a child to kill");
        child.kill().expect("kill the child");
        child.wait().expect("reap the child");
    }

    /// Waits for every child and asserts that each succeeded.
    pub fn join_all(&mut self) {
        for mut child in self.0.drain(..) {
            let status = child.wait().expect("reap the child");
            assert!(status.success(), "child failed: {status}");
        }
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parks until `word` holds `want`; fails after [`LONG`].
pub fn await_value(word: &AtomicU32, want: u32) {
    let start = Instant::now();
    loop {
        let now = word.load(Ordering::Acquire);
        if now == want {
            return;
        }
        assert!(start.elapsed() < LONG, "word stuck at {now}, wanted {want}");
        wait(word, now, Some(Duration::from_millis(100))).expect("wait on the word");
    }
}

/// The child's side of a ping-pong: copies every new value of word 0 of `seg` into word 1 and
/// notifies it, until word 0 reads `u32::MAX`. Waits with [`wait_spin`] and `spins`; fails if a
/// wait lasts [`LONG`] (a lost wake-up).
pub fn echo(seg: &Segment, spins: u32) {
    let (ping, pong) = (seg.atomic_u32(0), seg.atomic_u32(4));
    let mut last = 0;
    loop {
        let now = ping.load(Ordering::Acquire);
        if now == last {
            let outcome = wait_spin(ping, last, Some(LONG), spins).expect("wait for a ping");
            assert_ne!(outcome, WaitOutcome::TimedOut, "lost wake-up in the echo");
            continue;
        }
        if now == u32::MAX {
            return;
        }
        last = now;
        pong.store(now, Ordering::Release);
        shared_buffer::sync::notify(pong, 1).expect("notify the pong");
    }
}
