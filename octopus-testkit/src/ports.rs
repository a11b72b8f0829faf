//! Loopback ports for servers the tests start as child processes (etcd,
//! etcd's gRPC proxy, PostgreSQL).
//!
//! Binding port 0 hands out a port from the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`), the range outgoing connections
//! take their local ports from. A port found that way and given to a child is
//! free when it is found, but a client's connection can take it before the
//! child binds it, or while a test has the child stopped and means to restart
//! it on the same port. [`free_port`] takes ports from below that range
//! instead, where only another listener can collide: it checks that the port
//! binds, never hands one port out twice in a process, and picks at random so
//! that concurrent test processes rarely try the same one.

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::sync::Mutex;

/// The lowest port [`free_port`] hands out.
const LOW: u16 = 20_000;

/// Ports already handed out by this process.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free loopback port outside the kernel's ephemeral range, for a child
/// process to listen on (see the module's documentation).
///
/// # Panics
///
/// If no port in the range binds after many tries.
pub fn free_port() -> u16 {
    let high = ephemeral_low().unwrap_or(32_768).max(LOW + 1_000);
    let span = u64::from(high - LOW);
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1_000 {
        let port = LOW + u16::try_from(random() % span).expect("span fits in u16");
        if taken.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        taken.insert(port);
        return port;
    }
    panic!("no free loopback port in {LOW}..{high} after 1,000 tries");
}

/// The first port of the kernel's ephemeral range, where it can be read.
fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// A random number: the standard library seeds its hash keys from the
/// operating system's randomness once per thread; a counter makes each call's
/// number differ.
fn random() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_repeat() {
        let low = ephemeral_low().unwrap_or(32_768);
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        assert!(
            ports.iter().all(|&p| (LOW..low.max(LOW + 1_000)).contains(&p)),
            "{ports:?}"
        );
        let unique: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        for p in ports {
            TcpListener::bind(("127.0.0.1", p)).expect("a port handed out binds");
        }
    }
}
