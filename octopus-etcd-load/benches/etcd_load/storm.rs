//! Scenario 5, `storm`: many registrations coming back after an etcd restart,
//! and how their retries spread over time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use octopus::core::{JitterRng, LeaseRegistry};
use octopus::{BackoffPolicy, RegisterOptions, Registry};
use octopus_testkit::etcd::EtcdServer;
use tokio::time::{sleep, timeout, Instant};

use crate::helpers::{backend, instance, layout, ms};

/// Records when each "retrying registration" attempt is due (event time + delay).
pub(crate) struct Attempts(pub(crate) Arc<Mutex<Vec<Instant>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Attempts {
    /// Only the registration's retry event (the one with a `delay` and a
    /// `ceiling`): every other callsite (h2's and tonic's trace events among
    /// them) stays disabled, so that neither side of a scenario pays for events
    /// nobody reads.
    fn register_callsite(&self, m: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        let fields = m.fields();
        if m.is_event()
            && m.target().starts_with("octopus_discovery_core")
            && fields.field("delay").is_some()
            && fields.field("ceiling").is_some()
        {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Delay(Option<Duration>, bool);
        impl tracing::field::Visit for Delay {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                match f.name() {
                    "delay" => self.0 = debug_duration(&format!("{v:?}")),
                    "message" => self.1 = format!("{v:?}") == "retrying registration",
                    _ => {}
                }
            }
        }
        let mut d = Delay(None, false);
        event.record(&mut d);
        if let (Some(delay), true) = (d.0, d.1) {
            self.0.lock().unwrap().push(Instant::now() + delay);
        }
    }
}

/// A `Duration` back from its `Debug` text, which the retry event carries:
/// `1.5s`, `200ms`, `850µs`, `12ns`.
pub(crate) fn debug_duration(text: &str) -> Option<Duration> {
    let unit_at = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(unit_at);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => number,
        "ms" => number / 1e3,
        "µs" => number / 1e6,
        "ns" => number / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

pub(crate) async fn storm(attempts: Arc<Mutex<Vec<Instant>>>) {
    const N: usize = 1000;
    let ttl = Duration::from_secs(2);
    let (base, cap) = (Duration::from_millis(200), Duration::from_secs(5));
    println!("\n## 5. Recovery storm: {N} registrations, etcd killed for 2 TTLs then restarted\n");
    let mut server = EtcdServer::start().await;
    let registry = Arc::new(LeaseRegistry::new(Arc::new(backend(&server).await), layout()));
    let opts = RegisterOptions::default()
        .ttl(ttl)
        .retry(BackoffPolicy::new(base, cap).unwrap());
    let mut regs = Vec::with_capacity(N);
    for n in 0..N {
        let reg = registry
            .register(
                instance(&format!("storm{:03}", n % 100), n),
                opts.clone().jitter_rng(JitterRng::seeded(n as u64)),
            )
            .await
            .unwrap();
        regs.push(reg);
    }
    for r in &regs {
        r.registered().await.unwrap();
    }
    server.kill();
    sleep(ttl * 2).await;
    let restart = Instant::now();
    server.restart(false).await;
    let up = restart.elapsed();
    let mut back = Vec::with_capacity(N);
    for r in &regs {
        let mut rx = r.status();
        let _ = timeout(Duration::from_secs(30), rx.wait_for(|s| s.is_registered())).await;
        back.push(restart.elapsed());
    }
    let all_back = back.iter().max().copied().unwrap_or_default();
    // The attempts that reached etcd: those due once it was serving again.
    let ready = restart + up;
    let mut due: Vec<Duration> = attempts
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t >= ready)
        .map(|t| *t - ready)
        .collect();
    due.sort();
    let mut busiest = 0;
    let mut lo = 0;
    for hi in 0..due.len() {
        while due[hi] - due[lo] >= Duration::from_millis(10) {
            lo += 1;
        }
        busiest = busiest.max(hi - lo + 1);
    }
    println!("| | measured | bound |\n|---|---|---|");
    println!("| etcd serving again after the restart began | {} | — |", ms(up));
    println!(
        "| all {N} registered again, after etcd serves | {} | TTL + max backoff = {} |",
        ms(all_back.saturating_sub(up)),
        ms(ttl + cap)
    );
    println!(
        "| retry attempts after etcd serves | {} | — |\n| busiest 10 ms window | {busiest} = {:.1}% | ≤ 10% |",
        due.len(),
        busiest as f64 * 100.0 / due.len().max(1) as f64
    );
    for r in regs {
        r.abandon().await;
    }
}
