// SPDX-License-Identifier: GPL-2.0

//! REVOKE's return is a barrier: one thread per CPU, each pinned to its CPU
//! and holding its own import of one ivshmem buffer, asks for page frames
//! (GET_PFN) and walks (WALK) without pause while the main thread revokes
//! and restores the BAR, round after round. The main thread announces each
//! transition before the ioctl and again once it has returned; a call that
//! started after REVOKE returned and ended before RESTORE began must fail
//! with ENODEV, one that no transition overlapped must succeed, and every
//! answer given is the one the request and sysfs imply. Each thread must
//! have succeeded, and been refused, a minimum of times in every round.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{case, ensure, must, Case, Context, Failure, Outcome, Which};
use crate::expect::{self, ranges, Buffer, ByteRange, PAGE};
use crate::exporter::ExportRequest;
use crate::importer::Importer;
use crate::sys;

const BAR: u32 = 2;
const ROUNDS: u64 = 6;
/// Calls each thread must see succeed while live, and refused after REVOKE
/// returned, in every round.
const MINIMUM: u64 = 10;
/// How long a round's phase may take to reach the minimum.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) fn cases() -> Vec<Case> {
    vec![case(
        format!(
            "REVOKE is a barrier: GET_PFN and WALK on every CPU (one pinned thread each) racing {ROUNDS} REVOKEs of ivshmem BAR2; nothing succeeds after REVOKE returns"
        ),
        run,
    )]
}

/// Several ranges, so that a walk takes several calls and a REVOKE can land
/// in the middle of one.
fn slice() -> Vec<ByteRange> {
    ranges(&[
        (5 * PAGE, 7 * PAGE),
        ((2 << 20) + 3 * PAGE, 1 << 20),
        ((64 << 20) + PAGE, 33 * PAGE),
        (0, 2 << 20),
        ((1 << 30) - 3 * PAGE, 3 * PAGE),
    ])
}

/// The CPUs this process may run on.
fn cpus() -> Result<Vec<usize>, Failure> {
    // SAFETY: an all-zero cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid for the write of one cpu_set_t.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } < 0 {
        return Err(Failure::Fail(format!(
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: CPU_ISSET reads the set, for CPUs below its size.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread to `cpu` and checks it runs there.
fn pin(cpu: usize) -> Result<(), String> {
    // SAFETY: an all-zero cpu_set_t is an empty set; CPU_SET writes in it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t; 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } < 0 {
        return Err(format!(
            "sched_setaffinity to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: no arguments.
    let on = unsafe { libc::sched_getcpu() };
    if on != cpu as i32 {
        return Err(format!("pinned to CPU {cpu}, running on {on}"));
    }
    Ok(())
}

/// What one thread saw, per round: calls that succeeded while nothing
/// changed, calls refused after REVOKE had returned, and the others.
#[derive(Default)]
struct Tally {
    live: [AtomicU64; ROUNDS as usize + 1],
    refused: [AtomicU64; ROUNDS as usize + 1],
    overlapped: AtomicU64,
}

struct Shared {
    buffer: Buffer,
    expected: Vec<expect::Entry>,
    /// 4r: live (RESTORE of round r-1 returned); 4r+1: REVOKE under way;
    /// 4r+2: REVOKE returned; 4r+3: RESTORE under way.
    phase: AtomicU64,
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, message: String) {
        self.failure.lock().unwrap().get_or_insert(message);
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn worker(s: &Shared, importer: &Importer, cpu: usize, tally: &Tally) {
    if let Err(e) = pin(cpu) {
        return s.fail(e);
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ cpu as u64;
    let mut n = 0u64;
    while !s.stop.load(Ordering::SeqCst) {
        n += 1;
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let walk = n.is_multiple_of(2);
        let pgoff = state % s.buffer.pages();
        let p0 = s.phase.load(Ordering::SeqCst);
        // Ok(true): the answer was right; Err: the errno.
        let result: Result<(), i32> = if walk {
            match importer.walk(0, s.expected.len()) {
                Ok(w) => {
                    if let Err(e) = expect::compare(&w.table, &s.expected) {
                        return s.fail(format!("CPU {cpu}: WALK: {e}"));
                    }
                    if w.calls != s.expected.len() as u64 {
                        return s.fail(format!(
                            "CPU {cpu}: WALK made {} calls for {} entries",
                            w.calls,
                            s.expected.len()
                        ));
                    }
                    Ok(())
                }
                Err(e) => Err(e.raw_os_error().unwrap_or(0)),
            }
        } else {
            match importer.get_pfn(pgoff) {
                Ok(got) => {
                    if Some(got) != s.buffer.get_pfn(pgoff) {
                        return s.fail(format!(
                            "CPU {cpu}: GET_PFN of page {pgoff:#x}: {got:x?}, expected {:x?}",
                            s.buffer.get_pfn(pgoff)
                        ));
                    }
                    Ok(())
                }
                Err(e) => Err(e.raw_os_error().unwrap_or(0)),
            }
        };
        let p1 = s.phase.load(Ordering::SeqCst);
        let what = if walk { "WALK" } else { "GET_PFN" };
        let round = (p0 / 4) as usize;
        match (p0 == p1, p0 % 4, result) {
            (true, 2, Err(libc::ENODEV)) => {
                tally.refused[round].fetch_add(1, Ordering::Relaxed);
            }
            (true, 2, other) => {
                return s.fail(format!(
                "CPU {cpu}: {what} that started after REVOKE {} returned gave {}, expected ENODEV",
                round + 1,
                match other {
                    Ok(()) => "success".to_owned(),
                    Err(e) => sys::name(e),
                }
            ))
            }
            (true, 0, Ok(())) => {
                tally.live[round].fetch_add(1, Ordering::Relaxed);
            }
            (true, 0, Err(e)) => {
                return s.fail(format!(
                    "CPU {cpu}: {what} with the BAR live and nothing changing: {}",
                    sys::name(e)
                ))
            }
            (_, _, Ok(()) | Err(libc::ENODEV)) => {
                tally.overlapped.fetch_add(1, Ordering::Relaxed);
            }
            (_, _, Err(libc::EAGAIN)) if walk => {
                tally.overlapped.fetch_add(1, Ordering::Relaxed);
            }
            (_, _, Err(e)) => {
                return s.fail(format!(
                    "CPU {cpu}: {what} across a transition: {}",
                    sys::name(e)
                ))
            }
        }
    }
}

/// Waits until `done` holds, the race fails, or the phase times out.
fn wait_for(s: &Shared, what: &str, done: impl Fn() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !done() {
        if s.stop.load(Ordering::SeqCst) {
            return Err(String::new());
        }
        if start.elapsed() > PHASE_TIMEOUT {
            return Err(format!("{what}: not within {} s", PHASE_TIMEOUT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn run(ctx: &mut Context) -> Outcome {
    let cpus = cpus()?;
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    ctx.note(format!("CPUs {cpus:?} (online: {online})"));
    ensure!(cpus.len() >= 2, "{} CPU(s): no race to run", cpus.len());
    let device = ctx.device(Which::Ivshmem)?;
    let exporter = &device.exporter;
    let buffer = Buffer::new(&slice(), device.bar(BAR))?;
    let dmabuf = must(
        "EXPORT",
        exporter.export(&ExportRequest::new(BAR, &slice())),
    )?;
    let mut importers = Vec::new();
    for _ in &cpus {
        let importer = Importer::open()?;
        must("IMPORT", importer.import(std::os::fd::AsFd::as_fd(&dmabuf)))?;
        importers.push(importer);
    }
    let shared = Shared {
        expected: buffer.walk(),
        buffer,
        phase: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        failure: Mutex::new(None),
    };
    let tallies: Vec<Tally> = cpus.iter().map(|_| Tally::default()).collect();
    let mut driven = Ok(());
    std::thread::scope(|scope| {
        let s = &shared;
        for ((&cpu, importer), tally) in cpus.iter().zip(&importers).zip(&tallies) {
            scope.spawn(move || worker(s, importer, cpu, tally));
        }
        driven = drive(s, exporter, &importers, &tallies);
        s.stop.store(true, Ordering::SeqCst);
    });
    // The BAR is left live whatever happened.
    let restored = must("RESTORE", exporter.restore(BAR));
    for (cpu, tally) in cpus.iter().zip(&tallies) {
        let live: Vec<u64> = tally
            .live
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        let refused: Vec<u64> = tally
            .refused
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        ctx.note(format!(
            "CPU {cpu}: succeeded while live {live:?}, refused after REVOKE {:?} (by round), {} across a transition",
            &refused[..ROUNDS as usize],
            tally.overlapped.load(Ordering::Relaxed)
        ));
    }
    if let Some(message) = shared.failure.into_inner().unwrap() {
        return Err(Failure::Fail(message));
    }
    driven.map_err(Failure::Fail)?;
    restored?;
    for importer in importers {
        must("closing an importer", importer.close())?;
    }
    must("closing the dma-buf", sys::close(dmabuf))
}

/// The main thread's rounds: REVOKE once every thread has succeeded enough,
/// then check every import was told and dropped its table, RESTORE once
/// every thread has been refused enough.
fn drive(
    s: &Shared,
    exporter: &crate::exporter::Exporter,
    importers: &[Importer],
    tallies: &[Tally],
) -> Result<(), String> {
    let result = (|| {
        for round in 0..ROUNDS as usize {
            wait_for(
                s,
                &format!("round {}: successes on every CPU", round + 1),
                || {
                    tallies
                        .iter()
                        .all(|t| t.live[round].load(Ordering::Relaxed) >= MINIMUM)
                },
            )?;
            s.phase.fetch_add(1, Ordering::SeqCst);
            exporter
                .revoke(BAR)
                .map_err(|e| format!("REVOKE: {}", sys::describe(&e)))?;
            s.phase.fetch_add(1, Ordering::SeqCst);
            for (i, importer) in importers.iter().enumerate() {
                let c = importer
                    .counters()
                    .map_err(|e| format!("COUNTERS: {}", sys::describe(&e)))?;
                if c.invalidations != round as u64 + 1 || c.table_segments != 0 {
                    return Err(format!(
                        "importer {i} after REVOKE {}: COUNTERS {c:?}, expected {} invalidations and no table",
                        round + 1,
                        round + 1
                    ));
                }
            }
            wait_for(
                s,
                &format!("round {}: refusals on every CPU", round + 1),
                || {
                    tallies
                        .iter()
                        .all(|t| t.refused[round].load(Ordering::Relaxed) >= MINIMUM)
                },
            )?;
            s.phase.fetch_add(1, Ordering::SeqCst);
            exporter
                .restore(BAR)
                .map_err(|e| format!("RESTORE: {}", sys::describe(&e)))?;
            s.phase.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    })();
    match result {
        // An empty message: a worker failed, and said why.
        Err(e) if e.is_empty() => Ok(()),
        other => other,
    }
}
