//! Native anchor for the attach benchmark: the cost of opening, mapping and unmapping a small and
//! a large segment that already exist, with no page touched.
//!
//! Variants, each timed on both segments in alternating blocks:
//! - `raw_key`: `shmget(key, 0, 0)` + `shmctl(IPC_STAT)` + `shmat` + `shmdt` straight from libc;
//! - `raw_name`: `shm_open` + `fstat` + `mmap` + `close` + `munmap` of a POSIX name, from libc;
//! - `segment_key` and `segment_name`: the same through `shared_buffer::Segment::open` and drop.
//!
//! The segments come from the environment (`SB_BENCH_KEY_SMALL`, `SB_BENCH_KEY_LARGE`,
//! `SB_BENCH_NAME_SMALL`, `SB_BENCH_NAME_LARGE`, as `bench/segment.ts` sets them); without it the
//! benchmark creates, populates and removes its own 4 KiB and 1 GiB segments. Timing knobs:
//! `SB_BENCH_BLOCKS` (blocks per size and variant, default 8) and `SB_BENCH_BLOCK_MS` (target
//! length of one block, default 10). It prints one JSON object on stdout and asserts nothing
//! about timing.
//!
//! With the argument `throughput` it runs the native anchor of the throughput benchmark instead
//! (see [`throughput`]).
//!
//! Run alone with `cargo bench --bench native_segment [-- throughput]`.

use std::ffi::CStr;
use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use shared_buffer::{Options, Segment, SegmentError, SegmentId};

const SMALL: usize = 4096;
const LARGE: usize = 1 << 30;

/// The two segments of one kind (keyed or named) under test.
struct Pair {
    small: SegmentId,
    large: SegmentId,
}

/// Segments this process created and must remove on the way out.
struct Owned(Vec<(SegmentId, Segment)>);

impl Drop for Owned {
    fn drop(&mut self) {
        for (id, _) in self.0.drain(..) {
            // Cleanup of our own segments; nothing useful can be done if it fails.
            let _ = Segment::unlink(&id);
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn segments(owned: &mut Owned) -> io::Result<(Pair, Pair)> {
    let var = |name: &str| std::env::var(name).ok();
    if let (Some(ks), Some(kl), Some(ns), Some(nl)) = (
        var("SB_BENCH_KEY_SMALL"),
        var("SB_BENCH_KEY_LARGE"),
        var("SB_BENCH_NAME_SMALL"),
        var("SB_BENCH_NAME_LARGE"),
    ) {
        let key = |s: String| {
            s.parse::<u32>()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
                .and_then(|k| Ok(SegmentId::key(k)?))
        };
        let keys = Pair {
            small: key(ks)?,
            large: key(kl)?,
        };
        let names = Pair {
            small: SegmentId::name(&ns)?,
            large: SegmentId::name(&nl)?,
        };
        return Ok((keys, names));
    }
    let pid = std::process::id();
    let base = 0x5bbe_0000 | ((pid & 0x7fff) << 1);
    let keys = Pair {
        small: SegmentId::key(base)?,
        large: SegmentId::key(base + 1)?,
    };
    let names = Pair {
        small: SegmentId::name(&format!("/sbbench-native-{pid}-small"))?,
        large: SegmentId::name(&format!("/sbbench-native-{pid}-large"))?,
    };
    let options = Options {
        populate: true,
        ..Options::default()
    };
    for pair in [&keys, &names] {
        for (id, size) in [(&pair.small, SMALL), (&pair.large, LARGE)] {
            let segment = Segment::create(id, size, &options)?;
            owned.0.push((id.clone(), segment));
        }
    }
    Ok((keys, names))
}

/// `shmget` + `IPC_STAT` + `shmat` + `shmdt`, as the library's keyed open and close do them.
fn raw_attach(key: u32) {
    // SAFETY: shmget takes plain integers; size 0 and no flags look the key up.
    let id = unsafe { libc::shmget(key as libc::key_t, 0, 0) };
    assert!(id >= 0, "shmget: {}", io::Error::last_os_error());
    // SAFETY: shmid_ds is plain old data; all-zero is a valid value to be overwritten.
    let mut stat: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is a valid, writable shmid_ds.
    let rc = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut stat) };
    assert!(rc == 0, "shmctl: {}", io::Error::last_os_error());
    // SAFETY: a null address lets the kernel choose; checked below.
    let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    assert!(addr as isize != -1, "shmat: {}", io::Error::last_os_error());
    black_box((addr, stat.shm_segsz));
    // SAFETY: `addr` is the attachment just made, and nothing refers into it.
    unsafe { libc::shmdt(addr) };
}

/// `shm_open` + `fstat` + `mmap` + `close` + `munmap`, as the library's named open and close do
/// them.
fn raw_map(name: &CStr) {
    // SAFETY: `name` is a valid C string.
    let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
    assert!(fd >= 0, "shm_open: {}", io::Error::last_os_error());
    // SAFETY: `stat` is plain old data; all-zero is valid and fstat overwrites it.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we own and a valid, writable stat buffer.
    let rc = unsafe { libc::fstat(fd, &mut stat) };
    assert!(rc == 0, "fstat: {}", io::Error::last_os_error());
    let len = stat.st_size as usize;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a null hint lets the kernel choose; checked below.
    let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, 0) };
    assert!(
        addr != libc::MAP_FAILED,
        "mmap: {}",
        io::Error::last_os_error()
    );
    // SAFETY: `fd` is ours and used no more; the mapping keeps the memory.
    unsafe { libc::close(fd) };
    black_box(addr);
    // SAFETY: exactly the range mmap returned, and nothing refers into it.
    unsafe { libc::munmap(addr, len) };
}

fn segment_attach(id: &SegmentId) {
    let segment = Segment::open(id, None, &Options::default()).expect("Segment::open");
    black_box((segment.as_ptr(), segment.len()));
}

/// Runs `op` `iters` times and returns the nanoseconds per call.
fn block(iters: u64, op: &dyn Fn()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        op();
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// The iteration count that makes one block last about `target`.
fn calibrate(target: Duration, op: &dyn Fn()) -> u64 {
    let mut iters = 16u64;
    loop {
        let start = Instant::now();
        for _ in 0..iters {
            op();
        }
        let spent = start.elapsed();
        if spent >= target / 4 || iters >= 1 << 24 {
            let scale = target.as_secs_f64() / spent.as_secs_f64().max(1e-9);
            return ((iters as f64 * scale) as u64).max(16);
        }
        iters *= 4;
    }
}

struct Variant<'a> {
    name: &'static str,
    small: Box<dyn Fn() + 'a>,
    large: Box<dyn Fn() + 'a>,
}

fn json_list(values: &[f64], decimals: usize) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:.decimals$}")).collect();
    format!("[{}]", items.join(","))
}

/// The native anchor of the throughput benchmark: the same two kernels as `bench/segment.ts`
/// (a sum of f64s and a 64 MiB copy in) over a populated 64 MiB keyed segment and over a plain
/// heap buffer (anonymous memory), one phase per kernel with the buffers alternating, printed in
/// the same JSON shape.
fn throughput() -> io::Result<()> {
    const BYTES: usize = 64 << 20;
    const PASSES: u32 = 3;
    let reps = env_u64("SB_BENCH_TP_REPS", 9) as usize;
    let options = Options {
        populate: true,
        ..Options::default()
    };
    let base = 0x5b80_0000 | ((std::process::id() & 0x3fff) << 4);
    let mut shared = None;
    for key in base..base + 16 {
        match Segment::create(&SegmentId::key(key)?, BYTES, &options) {
            Ok(segment) => {
                // The mapping stays; removing the key now leaves nothing behind on a crash.
                Segment::unlink(&SegmentId::key(key)?)?;
                shared = Some(segment);
                break;
            }
            Err(SegmentError::AlreadyExists) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let shared = shared.ok_or_else(|| io::Error::other("no free key for the segment"))?;
    // SAFETY: the segment was just made by this process and its key removed: nobody else can
    // map it, and this slice is the only reference to its bytes.
    let shared: &mut [u8] = unsafe { shared.as_mut_slice() };
    let mut plain = vec![0u8; BYTES];
    let mut source = vec![0u8; BYTES];
    for buffer in [&mut source[..], &mut shared[..], &mut plain[..]] {
        for (i, chunk) in buffer.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&((i & 1023) as f64).to_ne_bytes());
        }
    }
    let sum = |bytes: &[u8]| -> f64 {
        bytes
            .chunks_exact(8)
            .map(|c| f64::from_ne_bytes(c.try_into().expect("8 bytes")))
            .sum()
    };
    let expected = sum(&source);
    let mut gbps: [[Vec<f64>; 2]; 2] = Default::default();
    let buffers = [shared, &mut plain[..]];
    // One phase per kernel, the two buffers alternating within it, as the runtimes measure.
    for (kernel, rates) in gbps.iter_mut().enumerate() {
        for rep in 0..reps + 1 {
            let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
            for which in order {
                let buffer = &mut *buffers[which];
                let start = Instant::now();
                for _ in 0..PASSES {
                    if kernel == 0 {
                        assert_eq!(black_box(sum(black_box(&*buffer))), expected);
                    } else {
                        black_box(&mut *buffer).copy_from_slice(black_box(&source));
                    }
                }
                let time = start.elapsed();
                if rep > 0 {
                    rates[which].push((PASSES as usize * BYTES) as f64 / time.as_secs_f64() / 1e9);
                }
            }
        }
    }
    let kernel = |k: usize| {
        format!(
            "{{\"shared_gbps\":{},\"plain_gbps\":{}}}",
            json_list(&gbps[k][0], 3),
            json_list(&gbps[k][1], 3)
        )
    };
    println!(
        "{{\"impl\":\"native\",\"version\":\"rust\",\"bytes\":{BYTES},\"passes\":{PASSES},\"kernels\":{{\"f64_sum\":{},\"u8_set\":{}}}}}",
        kernel(0),
        kernel(1)
    );
    Ok(())
}

fn main() -> io::Result<()> {
    // `cargo bench` passes `--bench`; anything else but `throughput` is ignored.
    if std::env::args().any(|arg| arg == "throughput") {
        return throughput();
    }
    let blocks = env_u64("SB_BENCH_BLOCKS", 8).max(1) as usize;
    let target = Duration::from_millis(env_u64("SB_BENCH_BLOCK_MS", 10).max(1));
    let mut owned = Owned(Vec::new());
    let (keys, names) = segments(&mut owned)?;
    let (key_small, key_large) = match (&keys.small, &keys.large) {
        (SegmentId::Key(s), SegmentId::Key(l)) => (*s, *l),
        _ => unreachable!("SegmentId::key makes keys"),
    };
    let (name_small, name_large) = match (&names.small, &names.large) {
        (SegmentId::Name(s), SegmentId::Name(l)) => (s.as_c_str(), l.as_c_str()),
        _ => unreachable!("SegmentId::name makes names"),
    };
    let variants = [
        Variant {
            name: "raw_key",
            small: Box::new(move || raw_attach(key_small)),
            large: Box::new(move || raw_attach(key_large)),
        },
        Variant {
            name: "raw_name",
            small: Box::new(move || raw_map(name_small)),
            large: Box::new(move || raw_map(name_large)),
        },
        Variant {
            name: "segment_key",
            small: Box::new(|| segment_attach(&keys.small)),
            large: Box::new(|| segment_attach(&keys.large)),
        },
        Variant {
            name: "segment_name",
            small: Box::new(|| segment_attach(&names.small)),
            large: Box::new(|| segment_attach(&names.large)),
        },
    ];

    // Warm every path, size the blocks of each variant, then run the blocks round-robin over
    // variants and sizes so that drift on this shared machine hits all of them alike.
    let mut iters = Vec::new();
    for variant in &variants {
        block(64, &*variant.small);
        block(64, &*variant.large);
        // One count for both sizes, sized on the small one, as the JavaScript children do.
        let count = calibrate(target, &*variant.small);
        iters.push([count, count]);
    }
    let mut per_op = vec![[Vec::new(), Vec::new()]; variants.len()];
    for b in 0..blocks {
        let order = if b % 2 == 0 { [0, 1] } else { [1, 0] };
        for (v, variant) in variants.iter().enumerate() {
            for which in order {
                let op = if which == 0 {
                    &*variant.small
                } else {
                    &*variant.large
                };
                per_op[v][which].push(block(iters[v][which], op));
            }
        }
    }
    let out: Vec<String> = variants
        .iter()
        .enumerate()
        .map(|(v, variant)| {
            format!(
                "\"{}\":{{\"small\":{{\"iters\":{},\"ns_per_op\":{}}},\"large\":{{\"iters\":{},\"ns_per_op\":{}}}}}",
                variant.name,
                iters[v][0],
                json_list(&per_op[v][0], 1),
                iters[v][1],
                json_list(&per_op[v][1], 1),
            )
        })
        .collect();
    println!(
        "{{\"impl\":\"native\",\"small_bytes\":{SMALL},\"large_bytes\":{LARGE},\"variants\":{{{}}}}}",
        out.join(",")
    );
    drop(owned);
    Ok(())
}
