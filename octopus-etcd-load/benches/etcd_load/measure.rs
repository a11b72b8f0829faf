//! Measuring this process and others: heap counting through the global
//! allocator, and CPU time read from /proc.

use std::sync::Arc;
use std::time::Duration;

/// The system allocator, counting allocation calls and live heap bytes (the
/// `stats_alloc` crate).
#[global_allocator]
static ALLOC: stats_alloc::StatsAlloc<std::alloc::System> = stats_alloc::StatsAlloc::system();

/// Allocation calls so far (alloc, alloc_zeroed and realloc), in this process.
pub(crate) fn allocations() -> u64 {
    let stats = ALLOC.stats();
    (stats.allocations + stats.reallocations) as u64
}

/// Live heap bytes. stats_alloc already adds a realloc's growth to
/// `bytes_allocated` and its shrinking to `bytes_deallocated`, so its
/// `bytes_reallocated` (the same change again) is left out; `main` checks this
/// before any scenario runs.
pub(crate) fn live() -> usize {
    let stats = ALLOC.stats();
    stats.bytes_allocated.saturating_sub(stats.bytes_deallocated)
}

/// Samples the live heap every 200 µs on a thread of its own until dropped, and
/// keeps the largest value seen (the allocator's own peak is the process's).
pub(crate) struct PeakSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl PeakSampler {
    pub(crate) fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = live();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(live());
                std::thread::sleep(Duration::from_micros(200));
            }
            peak
        });
        PeakSampler {
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn finish(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

/// CPU time of this process so far (every thread), from /proc (nanoseconds).
/// CPU time (user + system) of another process so far, from `/proc/PID/stat`
/// (in clock ticks of 10 ms: good enough over a run of seconds).
pub(crate) fn process_cpu(pid: Option<u32>) -> Duration {
    let Some(stat) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok()) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) end with ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, f)| f)
        .split_whitespace()
        .collect();
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10)
}

pub(crate) fn cpu_time() -> Duration {
    threads_cpu("/proc/self/task")
}

/// The CPU time of process `pid`'s threads (a child's), from their schedstat.
pub(crate) fn child_cpu(pid: u32) -> Duration {
    threads_cpu(&format!("/proc/{pid}/task"))
}

fn threads_cpu(dir: &str) -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir(dir) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(total)
}
