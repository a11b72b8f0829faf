//! `octopus ls`, `get`, `watch`, `deregister`, `drain`, `undrain`: a registry
//! seen from outside.

use octopus::{Entry, ServiceInstance};
use serde_json::json;

use crate::{RegistryArgs, Result};

async fn connect(args: &RegistryArgs) -> Result<octopus::Client> {
    octopus::connect(&args.registry)
        .await
        .map_err(|e| format!("cannot use the registry {}: {}", args.shown(), e.chain()))
}

/// The registry's entry for `service/id`; its absence is an error naming both.
async fn registered(client: &octopus::Client, args: &RegistryArgs, service: &str, id: &str) -> Result<Entry> {
    client
        .inspector()
        .entry(service, id)
        .await
        .map_err(|e| e.chain())?
        .ok_or_else(|| format!("no instance {id} of {service} in {}", args.shown()))
}

/// `SERVICE/ID`, both validated.
fn service_and_id(s: &str) -> Result<(&str, &str)> {
    let (service, id) = s
        .split_once('/')
        .filter(|(s, i)| !s.is_empty() && !i.is_empty() && !i.contains('/'))
        .ok_or_else(|| format!("{s:?} must be SERVICE/ID, like user-service/instance-001"))?;
    octopus::core::validate_name("service", service).map_err(|e| e.chain())?;
    octopus::core::validate_name("id", id).map_err(|e| e.chain())?;
    Ok((service, id))
}

fn metadata(i: &ServiceInstance) -> String {
    let pairs: Vec<String> = i.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if pairs.is_empty() {
        "-".into()
    } else {
        pairs.join(",")
    }
}

/// `serving` or `draining` (see `octopus drain`).
fn state(i: &ServiceInstance) -> &'static str {
    if i.is_draining() {
        "draining"
    } else {
        "serving"
    }
}

fn entry_json(e: &Entry) -> serde_json::Value {
    json!({
        "service": e.service,
        "id": e.id(),
        "key": e.key,
        "lease": format!("{:x}", e.lease),
        "create_revision": e.create_revision,
        "mod_revision": e.mod_revision,
        "instance": e.instance.as_ref().ok(),
        "draining": e.instance.as_ref().is_ok_and(ServiceInstance::is_draining),
        "error": e.instance.as_ref().err(),
    })
}

/// Prints rows as columns padded to the widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub(crate) async fn ls(args: &RegistryArgs, service: Option<&str>) -> Result {
    let client = connect(args).await?;
    let inspector = client.inspector();
    let Some(service) = service else {
        let services = inspector.services().await.map_err(|e| e.chain())?;
        if args.json {
            let list: Vec<_> = services
                .iter()
                .map(|(s, n)| json!({ "service": s, "instances": n }))
                .collect();
            println!("{}", serde_json::Value::Array(list));
        } else if services.is_empty() {
            println!("no services in {}", args.shown());
        } else {
            let rows: Vec<Vec<String>> = services.iter().map(|(s, n)| vec![s.clone(), n.to_string()]).collect();
            table(&["SERVICE", "INSTANCES"], &rows);
        }
        return Ok(());
    };
    let (revision, entries) = inspector.entries(service).await.map_err(|e| e.chain())?;
    if args.json {
        let list: Vec<_> = entries.iter().map(entry_json).collect();
        println!(
            "{}",
            json!({ "service": service, "revision": revision, "instances": list })
        );
        return Ok(());
    }
    if entries.is_empty() {
        println!("no instances of {service} in {} (revision {revision})", args.shown());
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| match &e.instance {
            Ok(i) => vec![
                i.id.clone(),
                i.endpoint(),
                state(i).into(),
                if i.version.is_empty() {
                    "-".into()
                } else {
                    i.version.clone()
                },
                i.weight.to_string(),
                format!("{:x}", e.lease),
                e.mod_revision.to_string(),
                metadata(i),
            ],
            Err(problem) => vec![
                e.id().to_owned(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("{:x}", e.lease),
                e.mod_revision.to_string(),
                format!("UNDECODABLE ({}): {problem}", e.key),
            ],
        })
        .collect();
    table(
        &[
            "ID", "ENDPOINT", "STATE", "VERSION", "WEIGHT", "LEASE", "REVISION", "METADATA",
        ],
        &rows,
    );
    Ok(())
}

pub(crate) async fn get(args: &RegistryArgs, instance: &str) -> Result {
    let (service, id) = service_and_id(instance)?;
    let client = connect(args).await?;
    let entry = registered(&client, args, service, id).await?;
    if args.json {
        println!("{}", entry_json(&entry));
        return Ok(());
    }
    println!("key:       {}", entry.key);
    println!("lease:     {:x}", entry.lease);
    println!(
        "revisions: created {}, modified {}",
        entry.create_revision, entry.mod_revision
    );
    match &entry.instance {
        Ok(i) => {
            println!("service:   {}", i.service);
            println!("id:        {}", i.id);
            println!("endpoint:  {}", i.endpoint());
            println!("state:     {}", state(i));
            println!("version:   {}", if i.version.is_empty() { "-" } else { &i.version });
            println!("weight:    {}", i.weight);
            println!("metadata:  {}", metadata(i));
        }
        Err(problem) => println!("value:     does not decode: {problem}"),
    }
    Ok(())
}

pub(crate) async fn watch(args: &RegistryArgs, service: &str) -> Result {
    octopus::core::validate_name("service", service).map_err(|e| e.chain())?;
    let client = connect(args).await?;
    let mut watch = client.watch(service).await.map_err(|e| e.chain())?;
    let mut before: Option<octopus::Snapshot> = None;
    loop {
        let snapshot = tokio::select! {
            s = watch.next() => match s {
                Some(s) => s,
                None => return Err("the watch ended".into()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let diff = octopus::core::diff(
            before.as_ref().map_or(&[][..], |b| &b.instances[..]),
            &snapshot.instances,
        );
        let fresh = snapshot.is_fresh();
        if args.json {
            println!(
                "{}",
                json!({
                    "revision": snapshot.revision,
                    "fresh": fresh,
                    "resyncs": snapshot.resyncs,
                    "instances": snapshot.instances.iter().map(|i| &**i).collect::<Vec<&ServiceInstance>>(),
                    "added": diff.added.iter().map(|i| &i.id).collect::<Vec<_>>(),
                    "removed": diff.removed.iter().map(|i| &i.id).collect::<Vec<_>>(),
                    "updated": diff.updated.iter().map(|(_, i)| &i.id).collect::<Vec<_>>(),
                })
            );
        } else {
            println!(
                "revision {}: {} instance(s){}",
                snapshot.revision,
                snapshot.instances.len(),
                if fresh {
                    ""
                } else {
                    " (STALE: registry unreachable, last known)"
                }
            );
            for i in &diff.added {
                println!("  + {} {}", i.id, i.endpoint());
            }
            for (_, i) in &diff.updated {
                println!("  ~ {} {}", i.id, i.endpoint());
            }
            for i in &diff.removed {
                println!("  - {} {}", i.id, i.endpoint());
            }
        }
        before = Some(snapshot);
    }
}

pub(crate) async fn deregister(args: &RegistryArgs, instance: &str) -> Result {
    let (service, id) = service_and_id(instance)?;
    let client = connect(args).await?;
    let entry = registered(&client, args, service, id).await?;
    client.inspector().remove(service, id).await.map_err(|e| e.chain())?;
    if args.json {
        println!("{}", json!({ "deregistered": entry_json(&entry) }));
    } else {
        println!(
            "deregistered {service}/{id} (key {}, lease {:x})",
            entry.key, entry.lease
        );
    }
    Ok(())
}

pub(crate) async fn drain(args: &RegistryArgs, instance: &str, draining: bool) -> Result {
    let (service, id) = service_and_id(instance)?;
    let client = connect(args).await?;
    let entry = client
        .inspector()
        .set_draining(service, id, draining)
        .await
        .map_err(|e| format!("cannot mark {service}/{id} in {}: {}", args.shown(), e.chain()))?;
    if args.json {
        println!("{}", entry_json(&entry));
    } else if draining {
        println!("draining {service}/{id}: it takes no new calls (undo with `octopus undrain {service}/{id}`)");
    } else {
        println!("serving {service}/{id}: it takes new calls again");
    }
    Ok(())
}
