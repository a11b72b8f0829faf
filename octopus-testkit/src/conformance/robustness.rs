//! Registrations under pressure: bad input, a second registration of the same
//! id, and many registrations at once.

use std::time::Duration;

use tokio::time::timeout;

use octopus_discovery_core::{RegistrationStatus, ServiceInstance};

use super::{instance, namespace, options, until, Harness};

/// Bad input is an error naming the field, and loses nothing already registered.
pub async fn invalid_input_rejected(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("invalid")).await;
    let good = reg.register(instance("svc", "a", 1001), options(h)).await.unwrap();
    let bad = ServiceInstance {
        service: "svc/../other".into(),
        ..instance("svc", "b", 1)
    };
    let err = reg.register(bad, options(h)).await.unwrap_err();
    assert!(err.to_string().contains("invalid service"), "{err}");
    let bad_port = ServiceInstance {
        port: 0,
        ..instance("svc", "b", 1)
    };
    assert!(reg
        .register(bad_port, options(h))
        .await
        .unwrap_err()
        .to_string()
        .contains("invalid port"));
    // Options checked as a whole at registration: a keepalive that does not fit
    // the TTL set after it is an error naming it, and nothing is registered.
    let misfit = options(h)
        .keepalive_interval(Duration::from_secs(3))
        .ttl(Duration::from_secs(4));
    let err = reg.register(instance("svc", "c", 1003), misfit).await.unwrap_err();
    assert!(err.to_string().contains("keepalive_interval"), "{err}");
    let err = good
        .update(ServiceInstance {
            addr: "not a host".into(),
            ..instance("svc", "a", 1001)
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid addr"), "{err}");
    assert!(disc.watch("bad/name").await.is_err());
    assert_eq!(*disc.instances("svc").await.unwrap()[0], instance("svc", "a", 1001));
    assert_eq!(disc.instances("svc").await.unwrap().len(), 1);
    assert!(good.current().is_registered());
    good.deregister().await.unwrap();
}

/// A second registration of the same service/id does not steal the key: it reports
/// a conflict, and takes over once the first one leaves.
pub async fn same_id_conflict(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("conflict")).await;
    let first = reg.register(instance("svc", "a", 1001), options(h)).await.unwrap();
    let second = reg.register(instance("svc", "a", 1002), options(h)).await.unwrap();
    assert!(
        matches!(second.current(), RegistrationStatus::Conflict { .. }),
        "got {}",
        second.current()
    );
    assert_eq!(disc.instances("svc").await.unwrap()[0].port, 1001);
    first.deregister().await.unwrap();
    timeout(h.settle() + h.ttl() * 2, second.registered())
        .await
        .expect("second takes over")
        .unwrap();
    let now = disc.instances("svc").await.unwrap();
    assert_eq!(
        now.iter().map(|i| i.port).collect::<Vec<_>>(),
        [1002],
        "exactly one key per id"
    );
    second.deregister().await.unwrap();
}

/// Many concurrent registrations all become visible, and all go.
pub async fn many_concurrent(h: &impl Harness) {
    let (reg, disc) = h.open(&namespace("many")).await;
    let mut w = disc.watch("svc").await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..100u16 {
        let reg = reg.clone();
        let opts = options(h);
        tasks.push(tokio::spawn(async move {
            reg.register(instance("svc", &format!("i{n:03}"), 3000 + n), opts)
                .await
                .unwrap()
        }));
    }
    let mut regs = Vec::new();
    for t in tasks {
        regs.push(t.await.unwrap());
    }
    until(h, &mut w, Duration::ZERO, "100 instances", |s| s.instances.len() == 100).await;
    let deregs: Vec<_> = regs.into_iter().map(|r| tokio::spawn(r.deregister())).collect();
    for d in deregs {
        d.await.unwrap().unwrap();
    }
    until(h, &mut w, Duration::ZERO, "none left", |s| s.instances.is_empty()).await;
}
