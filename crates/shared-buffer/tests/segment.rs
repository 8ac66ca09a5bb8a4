//! The Rust API and the C layer of segments: ownership, sizes, permissions, errors.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU32, Ordering};

use shared_buffer::{Options, Segment, SegmentId, SizeMismatch};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Serializes the tests that read process-wide state (the handle count, the umask).
static GLOBAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn global() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unique() -> u32 {
    std::process::id().wrapping_mul(4096) ^ COUNTER.fetch_add(1, Ordering::Relaxed) ^ 0x6a00_0000
}

/// A segment id that is unlinked when the test ends, however it ends.
struct Scratch(SegmentId);

impl Scratch {
    fn named() -> Self {
        Self(SegmentId::name(&format!("/sbrust-{}", unique())).unwrap())
    }
    fn keyed() -> Self {
        Self(SegmentId::key(unique()).unwrap())
    }
    fn both() -> [Self; 2] {
        [Self::keyed(), Self::named()]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Segment::unlink(&self.0);
    }
}

#[test]
fn create_open_share_and_unlink() {
    for s in Scratch::both() {
        let a = Segment::create(&s.0, 4096, &Options::default()).unwrap();
        assert!(a.created());
        let b = Segment::open(&s.0, None, &Options::default()).unwrap();
        assert!(!b.created());
        assert_eq!(b.len(), 4096);
        a.atomic_u32(8).store(99, Ordering::Release);
        assert_eq!(b.atomic_u32(8).load(Ordering::Acquire), 99);
        // SAFETY: nothing writes the segment while the slice lives.
        assert!(unsafe { b.as_slice() }[..8].iter().all(|&x| x == 0));
        Segment::unlink(&s.0).unwrap();
        assert_eq!(
            b.atomic_u32(8).load(Ordering::Acquire),
            99,
            "mapped memory outlives unlink"
        );
        let err = Segment::open(&s.0, None, &Options::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
}

#[test]
fn exclusive_create_and_open_or_create() {
    for s in Scratch::both() {
        let first = Segment::open_or_create(&s.0, 64, &Options::default()).unwrap();
        assert!(first.created());
        first.atomic_u32(0).store(5, Ordering::Relaxed);
        let err = Segment::create(&s.0, 64, &Options::default()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        let second = Segment::open_or_create(&s.0, 64, &Options::default()).unwrap();
        assert!(!second.created());
        assert_eq!(
            second.atomic_u32(0).load(Ordering::Relaxed),
            5,
            "existing data is kept"
        );
    }
}

#[test]
fn sizes_are_checked() {
    for s in Scratch::both() {
        let _a = Segment::create(&s.0, 4096, &Options::default()).unwrap();
        let err = Segment::open_or_create(&s.0, 100, &Options::default()).unwrap_err();
        assert_eq!(
            SizeMismatch::find(&err),
            Some(SizeMismatch {
                requested: 100,
                actual: 4096
            })
        );
        let err = Segment::open(&s.0, Some(8192), &Options::default()).unwrap_err();
        assert_eq!(
            SizeMismatch::find(&err),
            Some(SizeMismatch {
                requested: 8192,
                actual: 4096
            })
        );
        let prefix = Segment::open(&s.0, Some(10), &Options::default()).unwrap();
        assert_eq!(prefix.len(), 10);
        let err = Segment::create(&Scratch::named().0, 0, &Options::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}

#[test]
fn default_mode_is_owner_only_whatever_the_umask() {
    let _serial = global();
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0) };
    let named = Scratch::named();
    let keyed = Scratch::keyed();
    let made = (|| -> std::io::Result<()> {
        Segment::create(&named.0, 64, &Options::default())?;
        Segment::create(&keyed.0, 64, &Options::default())?;
        Ok(())
    })();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    made.unwrap();
    let SegmentId::Name(name) = &named.0 else {
        unreachable!()
    };
    let path = format!("/dev/shm{}", name.to_str().unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let SegmentId::Key(key) = keyed.0 else {
        unreachable!()
    };
    let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&(key as i32).to_string()))
        .expect("segment listed");
    assert_eq!(row.split_whitespace().nth(2), Some("600"));
}

#[test]
fn a_wider_mode_is_applied_exactly_despite_the_umask() {
    let _serial = global();
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o077) };
    let named = Scratch::named();
    let made = Segment::create(
        &named.0,
        64,
        &Options {
            mode: 0o640,
            populate: false,
        },
    );
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    made.unwrap();
    let SegmentId::Name(name) = &named.0 else {
        unreachable!()
    };
    let mode = std::fs::metadata(format!("/dev/shm{}", name.to_str().unwrap())).unwrap();
    assert_eq!(mode.permissions().mode() & 0o777, 0o640);
    let err = Segment::create(
        &Scratch::named().0,
        64,
        &Options {
            mode: 0o1000,
            populate: false,
        },
    );
    assert_eq!(err.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn populate_maps_every_page_without_changing_data() {
    for s in Scratch::both() {
        let a = Segment::create(&s.0, 1 << 20, &Options::default()).unwrap();
        a.atomic_u32(4096).store(7, Ordering::Relaxed);
        let b = Segment::open(
            &s.0,
            None,
            &Options {
                mode: 0o600,
                populate: true,
            },
        )
        .unwrap();
        assert_eq!(b.atomic_u32(4096).load(Ordering::Relaxed), 7);
    }
}

#[test]
fn names_and_keys_are_validated() {
    assert_eq!(
        SegmentId::key(0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    for bad in ["", "/", "a/b", "/a/b", "a\0b"] {
        assert_eq!(
            SegmentId::name(bad).unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
    }
    let long = "x".repeat(256);
    assert_eq!(
        SegmentId::name(&long).unwrap_err().raw_os_error(),
        Some(libc::ENAMETOOLONG)
    );
    assert_eq!(
        SegmentId::name("jobs").unwrap(),
        SegmentId::name("/jobs").unwrap()
    );
    assert_eq!(SegmentId::name("jobs").unwrap().to_string(), "name /jobs");
}
