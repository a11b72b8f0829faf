//! How a balanced channel chooses an instance for a call: the policies, with
//! ejected instances passed over and slow start's ramp applied.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::endpoints::{nanos_since, Backend, Set};
use super::Policy;
use octopus_discovery_core::JitterRng;

/// What one pick reads.
#[derive(Clone, Copy)]
pub(super) struct Picker<'a> {
    /// The backends in use, sorted by instance id.
    pub(super) all: &'a [Arc<Backend>],
    pub(super) policy: Policy,
    /// Round robin's position.
    pub(super) next: &'a AtomicUsize,
    pub(super) rng: &'a Mutex<JitterRng>,
    pub(super) epoch: Instant,
    /// Slow start's window in nanoseconds (0: off).
    pub(super) slow_start_ns: u64,
    pub(super) service: &'a str,
}

/// Chooses an instance among `set`'s tiers in turn: the caller's zone while it
/// has enough instances available (see
/// [`ZonePreference`](super::ZonePreference)), then every instance not draining,
/// then, when none of those can take the call, a draining one (as Kubernetes
/// uses terminating endpoints when no ready one is left: a drain must not turn
/// into an outage).
pub(super) fn choose(set: &Set, p: &Picker<'_>) -> Result<Arc<Backend>, tonic::Status> {
    if let Some(zone) = &set.zone {
        let local = &set.local;
        let mut now = None;
        let available = local.iter().filter(|b| b.available(&mut now, p.epoch)).count();
        if available > 0
            && available >= zone.min_available
            && available as f64 >= zone.min_available_share * local.len() as f64
        {
            if let Ok(b) = pick(&Picker { all: local, ..*p }) {
                return Ok(b);
            }
        }
    }
    if set.serving.len() < set.all.len() {
        if let Ok(b) = pick(&Picker {
            all: &set.serving,
            ..*p
        }) {
            return Ok(b);
        }
    }
    pick(&Picker { all: &set.all, ..*p })
}

/// Chooses an instance of `p.all` under `p.policy`, or says why none can take a call.
fn pick(p: &Picker<'_>) -> Result<Arc<Backend>, tonic::Status> {
    let all = p.all;
    let n = all.len();
    let epoch = p.epoch;
    let mut now = None; // read the clock only if some instance is ejected or warming
    let window = p.slow_start_ns;
    let rng = p.rng;
    // Slow start: an instance warming up is taken with the share of its full
    // traffic it has reached (a draw); otherwise as if it were not there.
    let declined = std::cell::Cell::new(false);
    let mut up = |b: &Arc<Backend>| {
        b.available(&mut now, epoch)
            && b.warming(&mut now, epoch, window).is_none_or(|share| {
                let draw = rng.lock().unwrap_or_else(|p| p.into_inner()).index(1 << 20);
                let taken = (draw as f64) < share * f64::from(1u32 << 20);
                declined.set(declined.get() || !taken);
                taken
            })
    };
    // Scan from `start`, wrapping: the first available instance.
    let scan = |start: usize, up: &mut dyn FnMut(&Arc<Backend>) -> bool| {
        (0..n).map(|k| &all[(start + k) % n]).find(|b| up(b)).cloned()
    };
    let chosen = match p.policy {
        _ if n == 0 => None,
        Policy::RoundRobin => scan(p.next.fetch_add(1, Ordering::Relaxed), &mut up),
        Policy::PickFirst => scan(0, &mut up),
        Policy::P2c | Policy::P2cEwma if n == 1 => scan(0, &mut up),
        Policy::P2c | Policy::P2cEwma => {
            // Two *distinct* instances (tower's p2c draws with sample_floyd2): a
            // second draw of the first would skip the comparison.
            let (i, j) = {
                let mut rng = p.rng.lock().unwrap_or_else(|p| p.into_inner());
                let i = rng.index(n);
                let j = rng.index(n - 1);
                (i, if j >= i { j + 1 } else { j })
            };
            match (up(&all[i]), up(&all[j])) {
                (true, true) => {
                    let (a, b) = (&all[i], &all[j]);
                    let less = match p.policy {
                        // An instance with no latency yet weighs 0: it gets tried.
                        Policy::P2cEwma => {
                            let t = nanos_since(epoch);
                            b.ewma_load(t) < a.ewma_load(t)
                        }
                        _ => b.in_flight.load(Ordering::Relaxed) < a.in_flight.load(Ordering::Relaxed),
                    };
                    Some(if less { b } else { a }.clone())
                }
                (true, false) => Some(all[i].clone()),
                (false, true) => Some(all[j].clone()),
                (false, false) => scan(i, &mut up),
            }
        }
        Policy::Weighted => {
            // Each instance's effective weight: 0 when ejected, its weight times
            // the share it has reached in slow start. The clock is read once
            // (if at all), so both passes see the same weights.
            let mut clock = None;
            let mut weight = |b: &Arc<Backend>| -> u64 {
                if !b.available(&mut clock, epoch) {
                    return 0;
                }
                let w = u64::from(b.instance.weight);
                b.warming(&mut clock, epoch, window)
                    .map_or(w, |share| (w as f64 * share) as u64)
            };
            let total: u64 = all.iter().map(&mut weight).sum();
            if total == 0 {
                None
            } else {
                let mut ticket = {
                    let mut rng = p.rng.lock().unwrap_or_else(|p| p.into_inner());
                    rng.below(Duration::from_nanos(total - 1)).as_nanos() as u64
                };
                all.iter()
                    .find(|b| {
                        let w = weight(b);
                        let hit = ticket < w;
                        ticket = ticket.saturating_sub(w);
                        hit
                    })
                    .cloned()
            }
        }
    };
    // Every available instance declined by slow start: take one anyway.
    let chosen = chosen.or_else(|| {
        if !declined.get() {
            return None;
        }
        let mut now = None;
        let start = p.next.load(Ordering::Relaxed);
        (0..n)
            .map(|k| &all[(start + k) % n])
            .find(|b| b.available(&mut now, epoch))
            .cloned()
    });
    chosen.ok_or_else(|| {
        let why = if n == 0 {
            "no instance is registered"
        } else if p.policy == Policy::Weighted && all.iter().any(&mut up) {
            "every reachable instance has weight 0"
        } else {
            "every instance is unreachable"
        };
        tonic::Status::unavailable(format!("{}: {why} ({n} known)", p.service))
    })
}
