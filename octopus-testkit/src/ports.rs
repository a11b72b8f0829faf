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

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::ops::Range;
use std::sync::Mutex;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

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
    let range = range();
    let mut rng = SmallRng::from_os_rng();
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1_000 {
        let port = rng.random_range(range.clone());
        if taken.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        taken.insert(port);
        return port;
    }
    panic!("no free loopback port in {range:?} after 1,000 tries");
}

/// The ports [`free_port`] picks from: [`LOW`] up to the kernel's ephemeral
/// range (32,768 where it cannot be read), and at least 1,000 of them.
fn range() -> Range<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    LOW..ephemeral_low.max(LOW + 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_repeat() {
        // Read here again, not through `range`: the test checks it.
        let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .map_or(32_768, |r| r.split_whitespace().next().unwrap().parse().unwrap());
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        assert!(
            ports
                .iter()
                .all(|&p| (LOW..ephemeral_low.max(LOW + 1_000)).contains(&p)),
            "{ports:?}"
        );
        let unique: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        for p in ports {
            TcpListener::bind(("127.0.0.1", p)).expect("a port handed out binds");
        }
    }
}
