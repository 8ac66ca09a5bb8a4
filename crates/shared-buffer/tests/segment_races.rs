//! Creating, opening and unlinking one segment from many threads at once: `open_or_create`
//! always ends with a segment of the asked size, whoever wins each race, and a replacing create
//! never fails because another thread removed what it was replacing.
//!
//! Threads race through the same system calls as processes do (`shm_open`, `shmget`), so the
//! kernel interleaves them the same way, only faster. Two interleavings matter: another thread
//! unlinks the segment between this one's failed exclusive create and its open (the open finds
//! nothing, and the create must be tried again), and another thread has created the segment but
//! not sized it yet (the open must wait for the size instead of reporting a zero-length segment).

use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};

use shared_buffer::{Options, Segment, SegmentError, SegmentId};
use test_support::Scratch;

const THREADS: usize = 8;
const ROUNDS: usize = 3000;
const SIZE: usize = 8192;

/// Runs `round(0..rounds)` on THREADS threads that start together; returns how many rounds
/// returned true.
fn race(rounds: usize, round: impl Fn(usize) -> bool + Sync) -> usize {
    let count = AtomicUsize::new(0);
    let start = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                start.wait();
                for r in 0..rounds {
                    if round(r) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    count.into_inner()
}

/// Removes `id`, which another thread may have removed already.
fn unlink_unless_gone(id: &SegmentId, round: usize) {
    match Segment::unlink(id) {
        Err(err) if !matches!(err, SegmentError::NotFound) => {
            panic!("round {round}: unlink: {err}")
        }
        _ => {}
    }
}

/// Runs THREADS threads that each open-or-create, write, close and unlink `id` ROUNDS times,
/// and returns how many rounds created the segment. Panics on the first failed round.
fn churn(id: &SegmentId) -> usize {
    race(ROUNDS, |round| {
        let seg = Segment::open_or_create(id, SIZE, &Options::default())
            .unwrap_or_else(|err| panic!("round {round}: open_or_create: {err}"));
        assert_eq!(seg.len(), SIZE);
        let created = seg.created();
        seg.atomic_u32(0).fetch_add(1, Ordering::Relaxed);
        drop(seg);
        unlink_unless_gone(id, round);
        created
    })
}

#[test]
fn open_or_create_survives_racing_creators_and_unlinkers_named() {
    let id = Scratch::named("race");
    let created = churn(&id.0);
    assert!(created > 0 && created <= THREADS * ROUNDS, "{created}");
}

#[test]
fn open_or_create_survives_racing_creators_and_unlinkers_keyed() {
    let id = Scratch::keyed();
    let created = churn(&id.0);
    assert!(created > 0 && created <= THREADS * ROUNDS, "{created}");
}

/// A replacing create among threads that replace and unlink the same id: each call ends with a
/// fresh segment of its own, or (after as many lost rounds as it allows) `AlreadyExists`; never
/// with the `NotFound` of a segment another thread removed between its failed create and its
/// check. Returns how many calls made a segment.
fn replace_churn(id: &SegmentId) -> usize {
    let replace = Options {
        replace: true,
        ..Options::default()
    };
    race(ROUNDS / 3, |round| {
        let made = match Segment::create(id, SIZE, &replace) {
            Ok(seg) => {
                assert!(seg.created());
                assert_eq!(seg.len(), SIZE);
                true
            }
            Err(SegmentError::AlreadyExists) => false,
            Err(err) => panic!("round {round}: create(replace): {err}"),
        };
        if round % 2 == 0 {
            unlink_unless_gone(id, round);
        }
        made
    })
}

#[test]
fn replace_survives_racing_replacers_and_unlinkers_named() {
    assert!(replace_churn(&Scratch::named("race").0) > 0);
}

#[test]
fn replace_survives_racing_replacers_and_unlinkers_keyed() {
    assert!(replace_churn(&Scratch::keyed().0) > 0);
}

/// Swaps what `swapped_in` makes in at a fresh segment's name (an atomic `rename` over it, as a
/// process of the same user may) while `remove` removes that segment, ROUNDS times; `is_it`
/// must still find it at the name afterwards, whichever came first.
#[cfg(target_os = "linux")]
fn swap_rounds(
    swapped_in: impl Fn(&str),
    remove: impl Fn(&SegmentId, Segment) + Sync,
    is_it: impl Fn(&str) -> bool,
) {
    let scratch = Scratch::named("swap");
    let id = &scratch.0;
    let SegmentId::Name(name) = id else {
        unreachable!("a named scratch")
    };
    let path = format!("/dev/shm{}", name.to_str().unwrap());
    let swap = format!("{path}.swap");
    for round in 0..ROUNDS {
        let seg = Segment::create(id, SIZE, &Options::default())
            .unwrap_or_else(|err| panic!("round {round}: create: {err}"));
        swapped_in(&swap);
        let start = Barrier::new(2);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                start.wait();
                std::fs::rename(&swap, &path).unwrap();
            });
            start.wait();
            remove(id, seg);
        });
        assert!(is_it(&path), "round {round}: what was swapped in is gone");
        std::fs::remove_file(&path).unwrap();
    }
}

/// `unlink_own` never removes a file swapped in at the name after its look: it used to look and
/// then remove in two steps, and removed the swapped-in file when the swap came between them.
#[cfg(target_os = "linux")]
#[test]
fn unlink_own_leaves_a_file_swapped_in() {
    const MARK: &[u8] = b"not the segment";
    swap_rounds(
        |at| std::fs::write(at, MARK).unwrap(),
        // Removed before the swap, or found the file swapped in (ENOENT).
        |id, seg| match seg.unlink_own(id) {
            Ok(()) | Err(SegmentError::NotFound) => {}
            Err(err) => panic!("unlink_own: {err}"),
        },
        |at| std::fs::read(at).is_ok_and(|got| got == MARK),
    );
}

/// A replacing create never removes a symbolic link swapped in at the name, which it refuses to
/// remove: it used to check and then remove in two steps, and removed the link when the swap
/// came between them.
#[cfg(target_os = "linux")]
#[test]
fn replace_leaves_a_link_swapped_in() {
    let replace = Options {
        replace: true,
        ..Options::default()
    };
    swap_rounds(
        |at| std::os::unix::fs::symlink("/nonexistent", at).unwrap(),
        |id, seg| {
            drop(seg);
            // Replaced before the swap (which then took the new segment's name), or refused.
            match Segment::create(id, SIZE, &replace) {
                Ok(_) | Err(SegmentError::Symlink) => {}
                Err(err) => panic!("create(replace): {err}"),
            }
        },
        |at| std::fs::symlink_metadata(at).is_ok_and(|m| m.file_type().is_symlink()),
    );
}
