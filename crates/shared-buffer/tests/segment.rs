//! The Rust API and the C layer of segments: ownership, sizes, permissions, errors.

#[cfg(target_os = "linux")]
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;

use shared_buffer::{FileKind, Options, Owner, Segment, SegmentError, SegmentId, SizeMismatch, os};
use test_support::{Scratch, serial};

#[test]
fn create_open_share_and_unlink() {
    for s in Scratch::both("seg") {
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
        assert!(matches!(err, SegmentError::NotFound), "{err:?}");
    }
}

#[test]
fn exclusive_create_and_open_or_create() {
    for s in Scratch::both("seg") {
        let first = Segment::open_or_create(&s.0, 64, &Options::default()).unwrap();
        assert!(first.created());
        first.atomic_u32(0).store(5, Ordering::Relaxed);
        let err = Segment::create(&s.0, 64, &Options::default()).unwrap_err();
        assert!(matches!(err, SegmentError::AlreadyExists), "{err:?}");
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
    for s in Scratch::both("seg") {
        let _a = Segment::create(&s.0, 4096, &Options::default()).unwrap();
        let err = Segment::open_or_create(&s.0, 100, &Options::default()).unwrap_err();
        assert!(
            matches!(
                err,
                SegmentError::SizeMismatch(SizeMismatch {
                    requested: 100,
                    actual: 4096
                })
            ),
            "{err:?}"
        );
        let err = Segment::open(&s.0, Some(8192), &Options::default()).unwrap_err();
        assert!(
            matches!(
                err,
                SegmentError::SizeMismatch(SizeMismatch {
                    requested: 8192,
                    actual: 4096
                })
            ),
            "{err:?}"
        );
        let prefix = Segment::open(&s.0, Some(10), &Options::default()).unwrap();
        assert_eq!(prefix.len(), 10);
        let err = Segment::create(&Scratch::named("seg").0, 0, &Options::default()).unwrap_err();
        assert!(matches!(err, SegmentError::Invalid(_)), "{err:?}");
    }
}

#[test]
fn a_keyed_segment_larger_than_the_system_provides_is_enospc() {
    // Under "always overcommit" (1) the kernel grants any size; otherwise 1 TiB is more than it
    // will commit on any machine this runs on.
    let overcommit = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if overcommit.trim() == "1" {
        eprintln!("skipped: this kernel overcommits without limit");
        return;
    }
    let s = Scratch::keyed();
    let err = Segment::create(&s.0, 1 << 40, &Options::default()).unwrap_err();
    // shmget's ENOMEM, which read as a process out of address space.
    assert!(
        matches!(&err, SegmentError::Os(e) if e.raw_os_error() == Some(libc::ENOSPC)),
        "{err:?}"
    );
    let err = Segment::open(&s.0, None, &Options::default()).unwrap_err();
    assert!(
        matches!(err, SegmentError::NotFound),
        "nothing is left: {err:?}"
    );
}

/// A keyed segment of 200 TiB that reserves no memory (`SHM_NORESERVE`), as a peer can make it:
/// more than a process's address space (128 TiB on x86-64 and arm64).
#[cfg(target_os = "linux")]
#[test]
fn a_keyed_segment_too_large_to_map_whole_says_so_with_its_size() {
    const SHM_NORESERVE: libc::c_int = 0o10000;
    const SIZE: usize = 200 << 40;
    let s = Scratch::keyed();
    let SegmentId::Key(key) = s.0 else {
        unreachable!()
    };
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | 0o600 | SHM_NORESERVE;
    // SAFETY: shmget takes plain integers.
    let id = unsafe { libc::shmget(key as libc::key_t, SIZE, flags) };
    if id < 0 {
        eprintln!(
            "skipped: shmget of 200 TiB: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let err = Segment::open(&s.0, Some(4096), &Options::default()).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::TooLargeToMap {
                size: SIZE,
                requested: 4096
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&SIZE.to_string()) && text.contains("mapped whole"),
        "{text}"
    );
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::OutOfMemory
    );
    // Asked for whole, the error still says how much did not fit.
    let err = Segment::open(&s.0, None, &Options::default()).unwrap_err();
    assert!(
        matches!(err, SegmentError::NoRoomToMap { size: SIZE }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&SIZE.to_string()) && !text.contains("asked for"),
        "{text}"
    );
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::OutOfMemory
    );
    Segment::unlink(&s.0).unwrap();
}

/// What the bindings leave where a segment was while an engine may still write through a pointer
/// into it: writable private memory at the same addresses, which no segment sees, until dropped.
#[cfg(target_os = "linux")]
#[test]
fn a_placeholder_keeps_the_addresses_and_its_writes_reach_no_segment() {
    // A mapping at `addr` that no file backs (another test's segment mapped there since would
    // show its file).
    let listed = |addr: usize| {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().any(|line| {
            line.starts_with(&format!("{addr:08x}-")) && line.split_whitespace().count() == 5
        })
    };
    for s in Scratch::both("placeholder") {
        let a = Segment::create(&s.0, 8192, &Options::default()).unwrap();
        let b = Segment::open(&s.0, None, &Options::default()).unwrap();
        let ptr = a.as_ptr();
        let placeholder = a.into_placeholder().expect("a placeholder");
        // SAFETY: the placeholder holds the 8192 bytes at `ptr`, private and writable, and nothing
        // else reaches them.
        unsafe {
            ptr.write_volatile(7);
            ptr.add(8191).write_volatile(9);
            assert_eq!(ptr.read_volatile(), 7);
        }
        // SAFETY: nothing writes the segment while the slice lives.
        let seen = unsafe { b.as_slice() };
        assert_eq!((seen[0], seen[8191]), (0, 0), "the segment got nothing");
        assert!(
            listed(ptr as usize),
            "the addresses are held, by private memory"
        );
        drop(placeholder);
        assert!(!listed(ptr as usize), "and let go with the placeholder");
    }
}

#[test]
fn default_mode_is_owner_only_whatever_the_umask() {
    let _serial = serial();
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0) };
    let named = Scratch::named("seg");
    let keyed = Scratch::keyed();
    let made = (|| -> Result<(), SegmentError> {
        Segment::create(&named.0, 64, &Options::default())?;
        Segment::create(&keyed.0, 64, &Options::default())?;
        Ok(())
    })();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    made.unwrap();
    let mode = std::fs::metadata(shm_path(&named))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
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
    let _serial = serial();
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o077) };
    let named = Scratch::named("seg");
    let made = Segment::create(
        &named.0,
        64,
        &Options {
            mode: 0o640,
            ..Options::default()
        },
    );
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    made.unwrap();
    let mode = std::fs::metadata(shm_path(&named)).unwrap();
    assert_eq!(mode.permissions().mode() & 0o777, 0o640);
    let err = Segment::create(
        &Scratch::named("seg").0,
        64,
        &Options {
            mode: 0o1000,
            ..Options::default()
        },
    );
    assert!(matches!(err, Err(SegmentError::Invalid(_))));
}

#[test]
fn a_size_no_mapping_can_have_is_invalid_for_both_kinds() {
    // The system's own errors for it differ (EINVAL for a key, EFBIG for a name).
    for s in Scratch::both("huge") {
        for size in [usize::MAX, isize::MAX as usize + 1] {
            for result in [
                Segment::create(&s.0, size, &Options::default()),
                Segment::open_or_create(&s.0, size, &Options::default()),
            ] {
                assert!(
                    matches!(result, Err(SegmentError::Invalid(_))),
                    "{:?}",
                    result.map(|seg| seg.len())
                );
            }
        }
    }
}

#[test]
fn populate_maps_every_page_without_changing_data() {
    for s in Scratch::both("seg") {
        let a = Segment::create(&s.0, 1 << 20, &Options::default()).unwrap();
        a.atomic_u32(4096).store(7, Ordering::Relaxed);
        let b = Segment::open(
            &s.0,
            None,
            &Options {
                populate: true,
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(b.atomic_u32(4096).load(Ordering::Relaxed), 7);
    }
}

#[test]
fn names_and_keys_are_validated() {
    assert!(matches!(SegmentId::key(0), Err(SegmentError::Invalid(_))));
    for bad in ["", "/", "a/b", "/a/b", "a\0b", ".", "/..", ".."] {
        assert!(
            matches!(SegmentId::name(bad), Err(SegmentError::Invalid(_))),
            "{bad:?}"
        );
    }
    let long = "x".repeat(256);
    match SegmentId::name(&long) {
        Err(SegmentError::Os(err)) => assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        SegmentId::name("jobs").unwrap(),
        SegmentId::name("/jobs").unwrap()
    );
    assert_eq!(SegmentId::name("jobs").unwrap().to_string(), "name /jobs");
}

#[test]
fn an_id_built_from_its_variants_is_checked_by_every_call() {
    use std::ffi::CString;
    // Key 0 made a private segment that no unlink could remove; a name with a folder in it
    // reached a file outside the segments' folder, and a replacing create put a segment in its
    // place.
    let folder = Scratch::named("variants");
    let dir = shm_path(&folder);
    std::fs::create_dir(&dir).unwrap();
    let _dir = Planted(dir.clone());
    let kept = format!("{dir}/kept");
    std::fs::write(&kept, b"precious").unwrap();
    let _kept = Planted(kept.clone());
    let inner = CString::new(format!("{}/kept", folder.name())).unwrap();
    let ids = [
        SegmentId::Key(0),
        SegmentId::Name(inner),
        SegmentId::Name(CString::new("/..").unwrap()),
        SegmentId::Name(CString::new("no-slash").unwrap()),
        SegmentId::Name(CString::new("/").unwrap()),
    ];
    let replace = Options {
        replace: true,
        ..Options::default()
    };
    let invalid = |what: &str, result: Result<(), SegmentError>| {
        assert!(
            matches!(result, Err(SegmentError::Invalid(_))),
            "{what}: {result:?}"
        );
    };
    let any = Segment::create(&Scratch::named("any").0, 4096, &Options::default()).unwrap();
    for id in &ids {
        invalid(
            &format!("create {id}"),
            Segment::create(id, 4096, &replace).map(drop),
        );
        invalid(
            &format!("open {id}"),
            Segment::open(id, None, &replace).map(drop),
        );
        invalid(
            &format!("open_or_create {id}"),
            Segment::open_or_create(id, 4096, &replace).map(drop),
        );
        invalid(&format!("unlink {id}"), Segment::unlink(id));
        invalid(&format!("unlink_own {id}"), any.unlink_own(id));
    }
    assert_eq!(std::fs::read(&kept).unwrap(), b"precious");
    // The OS layer beneath refuses them too, given them directly.
    let through_parent = CString::new(format!("/../shm{}/kept", folder.name())).unwrap();
    for name in [
        CString::new(format!("{}/kept", folder.name())).unwrap(),
        through_parent,
        CString::new("/..").unwrap(),
    ] {
        let einval = |what: &str, result: std::io::Result<()>| {
            let err = result.expect_err(what);
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{what} {name:?}");
        };
        einval(
            "posix_create",
            os::posix_create(&name, 4096, 0o600).map(drop),
        );
        einval("posix_open_name", os::posix_open_name(&name).map(drop));
        einval("posix_name_info", os::posix_name_info(&name).map(drop));
        einval("posix_unlink", os::posix_unlink(&name));
        einval(
            "posix_unlink_checked",
            os::posix_unlink_checked(&name, |_| Ok::<(), std::io::Error>(())),
        );
    }
    let private = os::sysv_create(0, 4096, 0o600).map(drop).unwrap_err();
    assert_eq!(private.raw_os_error(), Some(libc::EINVAL));
    assert_eq!(std::fs::read(&kept).unwrap(), b"precious");
}

/// The path under /dev/shm of a named scratch segment.
fn shm_path(s: &Scratch) -> String {
    format!("/dev/shm{}", s.name())
}

/// Removes whatever a test put at a scratch name (a directory included).
struct Planted(String);

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn odd_files_at_a_name_get_their_own_error_at_once() {
    let target = Scratch::named("seg");
    Segment::create(&target.0, 64, &Options::default()).unwrap();

    let link = Scratch::named("seg");
    let _l = Planted(shm_path(&link));
    std::os::unix::fs::symlink(shm_path(&target), shm_path(&link)).unwrap();
    let err = Segment::open(&link.0, None, &Options::default()).unwrap_err();
    assert!(matches!(err, SegmentError::Symlink), "{err:?}");

    let dir = Scratch::named("seg");
    let _d = Planted(shm_path(&dir));
    std::fs::create_dir(shm_path(&dir)).unwrap();
    let err = Segment::open(&dir.0, None, &Options::default()).unwrap_err();
    assert!(
        matches!(err, SegmentError::NotASegment(FileKind::Directory)),
        "{err:?}"
    );

    let fifo = Scratch::named("seg");
    let _f = Planted(shm_path(&fifo));
    let path = std::ffi::CString::new(shm_path(&fifo)).unwrap();
    // SAFETY: a valid C string and a mode.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let err = Segment::open(&fifo.0, None, &Options::default()).unwrap_err();
    assert!(
        matches!(err, SegmentError::NotASegment(FileKind::Fifo)),
        "{err:?}"
    );
    let err = Segment::open_or_create(&fifo.0, 64, &Options::default()).unwrap_err();
    assert!(
        matches!(err, SegmentError::NotASegment(FileKind::Fifo)),
        "{err:?}"
    );
}

#[test]
fn a_name_that_is_a_hard_link_to_another_segment_is_refused() {
    // Another user who may open a segment of ours (mode 0o666) links it at a name we open later:
    // here this user makes the link, which the same check catches.
    let target = Scratch::named("seg");
    let mine = Segment::create(&target.0, 64, &Options::default()).unwrap();
    // SAFETY: the segment is 64 bytes and nobody else maps it.
    unsafe { mine.as_ptr().write(7) };
    let link = Scratch::named("seg");
    let _l = Planted(shm_path(&link));
    std::fs::hard_link(shm_path(&target), shm_path(&link)).unwrap();

    let err = Segment::open(&link.0, None, &Options::default()).unwrap_err();
    assert!(
        matches!(err, SegmentError::HardLinked { links: 2 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("2 names of one file"), "{err}");
    let err = Segment::open_or_create(&link.0, 64, &Options::default()).unwrap_err();
    assert!(
        matches!(err, SegmentError::HardLinked { links: 2 }),
        "{err:?}"
    );
    // Nor under its own name while the other one is there: which name is the segment's own is
    // not for this process to tell.
    let err = Segment::open(&target.0, None, &Options::default()).unwrap_err();
    assert!(matches!(err, SegmentError::HardLinked { .. }), "{err:?}");

    // With the link gone, the segment opens again, with its bytes.
    std::fs::remove_file(shm_path(&link)).unwrap();
    let again = Segment::open(&target.0, None, &Options::default()).unwrap();
    // SAFETY: 64 bytes, written above.
    assert_eq!(unsafe { again.as_ptr().read() }, 7);
}

#[test]
fn an_empty_file_is_refused_as_empty() {
    let s = Scratch::named("seg");
    std::fs::File::create(shm_path(&s)).unwrap();
    // A fresh empty file gets the short wait for a creator that is sizing it, then this.
    let err = Segment::open(&s.0, None, &Options::default()).unwrap_err();
    assert!(matches!(err, SegmentError::Empty), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the name holds an empty file: not a segment, or one whose creator died or stalled before sizing it"
    );
}

/// A named segment appears at its name only once it is sized and its memory reserved: an opener
/// never finds the file of a create in progress, empty or short, nor waits for it.
#[test]
#[cfg(target_os = "linux")]
fn a_named_create_is_never_seen_unsized() {
    const SIZE: usize = 256 << 20; // long enough to reserve that the loop below sees it happen
    let s = Scratch::named("seg");
    let path = shm_path(&s);
    let id = s.0.clone();
    let creator = std::thread::spawn(move || Segment::create(&id, SIZE, &Options::default()));
    let mut absent = 0;
    let seen = loop {
        match std::fs::metadata(&path) {
            Ok(meta) => break meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => absent += 1,
            Err(err) => panic!("{err}"),
        }
    };
    assert_eq!(
        seen.len(),
        SIZE as u64,
        "the first look at the name sees it sized"
    );
    assert!(seen.blocks() * 512 >= SIZE as u64, "and reserved");
    let segment = creator.join().unwrap().unwrap();
    assert_eq!(segment.len(), SIZE);
    assert!(absent > 0, "the loop looked while the create was under way");
    // Mapped through its name, as tools that list mappings (lsof, pmap) show it.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        maps.lines().any(|l| l.ends_with(&format!(" {path}"))),
        "{path} in /proc/self/maps:\n{maps}"
    );
    // A create that fails (the name is taken now) leaves the name to its holder.
    let err = Segment::create(&s.0, 4096, &Options::default()).unwrap_err();
    assert!(matches!(err, SegmentError::AlreadyExists), "{err:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), SIZE as u64);
    Segment::unlink(&s.0).unwrap();
}

/// A file another program sized with `ftruncate` alone (sparse) gets its memory reserved by an
/// open, so that a full `/dev/shm` fails the open rather than a later write (`SIGBUS`); but only
/// as far as the open exposes it.
#[test]
#[cfg(target_os = "linux")]
fn an_open_reserves_what_it_maps_of_a_sparse_file() {
    const SIZE: u64 = 64 << 20;
    let s = Scratch::named("seg");
    let path = shm_path(&s);
    let _p = Planted(path.clone());
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(SIZE).unwrap();
    let allocated = || std::fs::metadata(&path).unwrap().blocks() * 512;
    assert_eq!(allocated(), 0, "sparse");
    let first = Segment::open(&s.0, Some(8192), &Options::default()).unwrap();
    assert_eq!(first.len(), 8192);
    assert!(
        (8192..1 << 20).contains(&allocated()),
        "the first 8 KiB reserved, not the rest: {} bytes",
        allocated()
    );
    let whole = Segment::open(&s.0, None, &Options::default()).unwrap();
    assert_eq!(whole.len() as u64, SIZE);
    assert!(
        allocated() >= SIZE,
        "all of it reserved once all of it is mapped"
    );
    whole
        .atomic_u32(SIZE as usize - 4)
        .store(1, Ordering::Relaxed);
    drop((first, whole));
}

#[test]
fn replace_removes_a_leftover_and_creates_afresh() {
    for s in Scratch::both("seg") {
        let old = Segment::create(&s.0, 64, &Options::default()).unwrap();
        old.atomic_u32(0).store(7, Ordering::Relaxed);
        let err = Segment::create(&s.0, 128, &Options::default()).unwrap_err();
        assert!(matches!(err, SegmentError::AlreadyExists), "{err:?}");
        let replace = Options {
            replace: true,
            ..Options::default()
        };
        let new = Segment::create(&s.0, 128, &replace).unwrap();
        assert!(new.created());
        assert_eq!(new.len(), 128);
        assert_eq!(
            new.atomic_u32(0).load(Ordering::Relaxed),
            0,
            "a fresh segment"
        );
        assert_eq!(
            old.atomic_u32(0).load(Ordering::Relaxed),
            7,
            "the old mapping lives on, cut off from the name"
        );
        let again = Segment::open(&s.0, None, &Options::default()).unwrap();
        assert_eq!(again.len(), 128);
    }
}

/// A segment removes its own key or name only: after another process replaced it, the old
/// one's removal leaves the new one's name alone (a restart's old process exiting cleanly).
#[test]
fn unlink_own_removes_only_the_segment_it_maps() {
    let replace = Options {
        replace: true,
        ..Options::default()
    };
    for s in Scratch::both("seg") {
        let old = Segment::create(&s.0, 64, &Options::default()).unwrap();
        let new = Segment::create(&s.0, 128, &replace).unwrap();
        let err = old.unlink_own(&s.0).unwrap_err();
        assert!(matches!(err, SegmentError::NotFound), "{err:?}");
        let again = Segment::open(&s.0, None, &Options::default()).unwrap();
        assert_eq!(again.len(), 128, "the replacement keeps its {}", s.0);
        new.unlink_own(&s.0).unwrap();
        let err = Segment::open(&s.0, None, &Options::default()).unwrap_err();
        assert!(matches!(err, SegmentError::NotFound), "{err:?}");
        let err = new.unlink_own(&s.0).unwrap_err();
        assert!(matches!(err, SegmentError::NotFound), "{err:?}");
        // A symbolic link at the name is another file too, and stays.
        #[cfg(target_os = "linux")]
        if let SegmentId::Name(name) = &s.0 {
            let path = format!("/dev/shm{}", name.to_str().unwrap());
            std::os::unix::fs::symlink("/nonexistent", &path).unwrap();
            let err = new.unlink_own(&s.0).unwrap_err();
            assert!(matches!(err, SegmentError::NotFound), "{err:?}");
            assert!(std::fs::symlink_metadata(&path).unwrap().is_symlink());
            std::fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
fn owners_are_checked_before_mapping() {
    // As root, the segments this test makes are root's: accepted by default. Another user's
    // segment is made through the setpriv tests of the TypeScript suite; here the policy itself.
    let me = euid_from_proc();
    assert!(Owner::Trusted.accepts(me));
    assert!(Owner::Trusted.accepts(0));
    let stranger = if me == 4242 { 4243 } else { 4242 };
    assert!(!Owner::Trusted.accepts(stranger));
    assert!(Owner::Uid(stranger).accepts(stranger));
    assert!(Owner::Uid(stranger).accepts(me));
    assert!(!Owner::Uid(stranger).accepts(stranger + 1));
    assert!(Owner::Any.accepts(stranger));
    let err = SegmentError::ForeignOwner {
        uid: 0,
        shut_out: false,
    };
    assert_eq!(
        err.to_string(),
        "the segment belongs to another user: uid 0 (root)"
    );
    let err = SegmentError::ForeignOwner {
        uid: 0,
        shut_out: true,
    };
    assert_eq!(
        err.to_string(),
        "the segment belongs to another user: uid 0 (root), and its mode keeps this user out"
    );
}

fn euid_from_proc() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
#[should_panic(expected = "past the segment")]
fn atomic_u32_refuses_an_offset_that_would_wrap() {
    let s = Scratch::named("seg");
    let seg = Segment::create(&s.0, 64, &Options::default()).unwrap();
    // usize::MAX - 3 is a multiple of 4; `+ 4` wrapped to 0 and passed the old bounds check.
    let _ = seg.atomic_u32(usize::MAX - 3);
}
