//! What the console serves: one row per instance, a summary per service, and
//! a timeline entry per change. Everything here is plain data, serialized as
//! the `/api` JSON; registrant strings are carried as they are and the page
//! writes them as text.

use std::collections::BTreeSet;

use octopus::core::Revision;
use octopus::{Entry, LeaseId, ServiceInstance};
use serde::Serialize;

/// One instance (one key) as the page and `/api/services/{service}` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceRow {
    /// The instance id (the key's last segment when its value does not decode).
    pub id: String,
    /// The key in the store.
    pub key: String,
    /// `host:port`, empty when the value does not decode.
    pub endpoint: String,
    /// `serving`, `draining` or `undecodable`.
    pub state: &'static str,
    /// The version, possibly empty.
    pub version: String,
    /// The `zone` metadata entry, possibly empty.
    pub zone: String,
    /// The weight (0 when the value does not decode).
    pub weight: u32,
    /// Every metadata entry, in key order.
    pub metadata: Vec<(String, String)>,
    /// The lease, in hex as etcdctl prints it (`0`: none).
    pub lease: String,
    /// Milliseconds left on the lease when served; `None` when not known yet.
    pub ttl_ms: Option<u64>,
    /// Revision of the key's creation.
    pub create_revision: Revision,
    /// Revision of its last change.
    pub mod_revision: Revision,
    /// Why the value does not decode, when it does not.
    pub error: Option<String>,
}

/// The state word of an instance.
pub(crate) fn state_of(instance: &Result<ServiceInstance, String>) -> &'static str {
    match instance {
        Ok(i) if i.is_draining() => "draining",
        Ok(_) => "serving",
        Err(_) => "undecodable",
    }
}

impl InstanceRow {
    pub(crate) fn from_entry(entry: &Entry) -> Self {
        let (endpoint, version, zone, weight, metadata, error) = match &entry.instance {
            Ok(i) => (
                i.endpoint(),
                i.version.clone(),
                i.zone().unwrap_or_default().to_owned(),
                i.weight,
                i.metadata.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
                None,
            ),
            Err(problem) => (
                String::new(),
                String::new(),
                String::new(),
                0,
                Vec::new(),
                Some(problem.clone()),
            ),
        };
        InstanceRow {
            id: entry.id().to_owned(),
            key: entry.key.clone(),
            endpoint,
            state: state_of(&entry.instance),
            version,
            zone,
            weight,
            metadata,
            lease: format!("{:x}", entry.lease),
            ttl_ms: None,
            create_revision: entry.create_revision,
            mod_revision: entry.mod_revision,
            error,
        }
    }
}

/// One service as the list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceSummary {
    /// The service name.
    pub name: String,
    /// How many instances (keys) it has.
    pub instances: usize,
    /// How many are serving.
    pub serving: usize,
    /// How many are draining.
    pub draining: usize,
    /// The versions present, sorted (empty versions left out).
    pub versions: Vec<String>,
    /// The zones present, sorted (instances without a zone left out).
    pub zones: Vec<String>,
    /// The revision of its last change seen.
    pub last_revision: Revision,
    /// Milliseconds since the console saw its last change (or since it started
    /// watching, for a service unchanged since).
    pub changed_ms_ago: u64,
}

impl ServiceSummary {
    pub(crate) fn of<'a>(
        name: &str,
        rows: impl Iterator<Item = &'a InstanceRow>,
        last_revision: Revision,
        changed_ms_ago: u64,
    ) -> Self {
        let (mut instances, mut serving, mut draining) = (0, 0, 0);
        let mut versions = BTreeSet::new();
        let mut zones = BTreeSet::new();
        for row in rows {
            instances += 1;
            match row.state {
                "serving" => serving += 1,
                "draining" => draining += 1,
                _ => {}
            }
            if !row.version.is_empty() {
                versions.insert(row.version.clone());
            }
            if !row.zone.is_empty() {
                zones.insert(row.zone.clone());
            }
        }
        ServiceSummary {
            name: name.to_owned(),
            instances,
            serving,
            draining,
            versions: versions.into_iter().collect(),
            zones: zones.into_iter().collect(),
            last_revision,
            changed_ms_ago,
        }
    }
}

/// What happened to an instance, as the timeline names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A key appeared for an id not seen before.
    Registered,
    /// The id came back: a new lease after its key expired or was removed, or a
    /// new lease taking over the key (the old lease was lost).
    ReRegistered,
    /// The draining mark was set.
    Drained,
    /// The draining mark was cleared.
    Undrained,
    /// Some other field changed (version, weight, metadata).
    Updated,
    /// The key was deleted while its lease still had time left.
    Deregistered,
    /// The key went away when its lease ran out: the process stopped refreshing it.
    Expired,
}

/// One field's change in a timeline entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The field (`endpoint`, `version`, `weight`, `lease`, `metadata.KEY`…).
    pub field: String,
    /// Its value before (`None`: absent).
    pub before: Option<String>,
    /// Its value after (`None`: absent).
    pub after: Option<String>,
}

/// One entry of a service's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineEvent {
    /// The service.
    pub service: String,
    /// The instance id.
    pub id: String,
    /// The revision of the change.
    pub revision: Revision,
    /// What happened.
    pub kind: ChangeKind,
    /// What changed, field by field.
    pub diff: Vec<FieldChange>,
    /// Milliseconds between the console seeing it and the response serving it.
    pub seen_ms_ago: u64,
}

/// The fields of an instance, flattened for diffing.
fn fields(row: &InstanceRow) -> Vec<(String, String)> {
    let mut out = vec![
        ("endpoint".to_owned(), row.endpoint.clone()),
        ("state".to_owned(), row.state.to_owned()),
        ("version".to_owned(), row.version.clone()),
        ("weight".to_owned(), row.weight.to_string()),
        ("lease".to_owned(), row.lease.clone()),
    ];
    // The draining mark is the `state` field already.
    out.extend(
        row.metadata
            .iter()
            .filter(|(k, _)| k != octopus::core::DRAINING_KEY)
            .map(|(k, v)| (format!("metadata.{k}"), v.clone())),
    );
    if let Some(e) = &row.error {
        out.push(("error".to_owned(), e.clone()));
    }
    out
}

/// The fields that differ between `before` and `after`, in field order.
pub(crate) fn diff(before: Option<&InstanceRow>, after: Option<&InstanceRow>) -> Vec<FieldChange> {
    let before: std::collections::BTreeMap<String, String> =
        before.map(fields).unwrap_or_default().into_iter().collect();
    let after: std::collections::BTreeMap<String, String> = after.map(fields).unwrap_or_default().into_iter().collect();
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter(|n| before.get(*n) != after.get(*n))
        .map(|n| FieldChange {
            field: n.clone(),
            before: before.get(n).cloned(),
            after: after.get(n).cloned(),
        })
        .collect()
}

/// The kind of a put: `prev` is the key before (if any), `seen_before` whether
/// this id had a key earlier that went away.
pub(crate) fn put_kind(prev: Option<&InstanceRow>, now: &InstanceRow, seen_before: bool) -> ChangeKind {
    match prev {
        None if seen_before => ChangeKind::ReRegistered,
        None => ChangeKind::Registered,
        Some(p) if p.lease != now.lease => ChangeKind::ReRegistered,
        Some(p) if p.state != "draining" && now.state == "draining" => ChangeKind::Drained,
        Some(p) if p.state == "draining" && now.state != "draining" => ChangeKind::Undrained,
        Some(_) => ChangeKind::Updated,
    }
}

/// The lease of a row, parsed back from its hex.
pub(crate) fn lease_of(row: &InstanceRow) -> LeaseId {
    LeaseId(i64::from_str_radix(&row.lease, 16).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(lease: &str, state: &'static str, version: &str) -> InstanceRow {
        InstanceRow {
            id: "i1".into(),
            key: "/k".into(),
            endpoint: "127.0.0.1:1".into(),
            state,
            version: version.into(),
            zone: String::new(),
            weight: 100,
            metadata: vec![],
            lease: lease.into(),
            ttl_ms: None,
            create_revision: 1,
            mod_revision: 1,
            error: None,
        }
    }

    #[test]
    fn a_put_is_classified_by_what_was_there_before_it() {
        let serving = row("a", "serving", "v1");
        assert_eq!(put_kind(None, &serving, false), ChangeKind::Registered);
        assert_eq!(put_kind(None, &serving, true), ChangeKind::ReRegistered);
        assert_eq!(
            put_kind(Some(&row("b", "serving", "v1")), &serving, false),
            ChangeKind::ReRegistered
        );
        assert_eq!(
            put_kind(Some(&serving), &row("a", "draining", "v1"), false),
            ChangeKind::Drained
        );
        assert_eq!(
            put_kind(Some(&row("a", "draining", "v1")), &serving, false),
            ChangeKind::Undrained
        );
        assert_eq!(
            put_kind(Some(&row("a", "serving", "v0")), &serving, false),
            ChangeKind::Updated
        );
    }

    #[test]
    fn diff_names_the_changed_fields_only() {
        let d = diff(Some(&row("a", "serving", "v1")), Some(&row("a", "serving", "v2")));
        assert_eq!(
            d,
            vec![FieldChange {
                field: "version".into(),
                before: Some("v1".into()),
                after: Some("v2".into()),
            }]
        );
        assert_eq!(diff(None, Some(&row("a", "serving", "v1"))).len(), 5);
    }
}
