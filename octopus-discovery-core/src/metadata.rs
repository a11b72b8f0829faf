//! [`Metadata`]: an instance's labels, as a small sorted map.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Free-form labels of an instance (zone, protocol…), sorted by key.
///
/// A sorted vector rather than a `BTreeMap`: instances carry a handful of
/// labels, and a watch cache holds one per instance — a `BTreeMap` node costs
/// about 540 bytes even for one label, this about 48. Reads like a map; on the
/// wire it is a JSON object.
///
/// ```
/// use octopus_discovery_core::Metadata;
/// let mut m = Metadata::new();
/// m.insert("zone", "a");
/// m.insert("proto", "grpc");
/// assert_eq!(m.get("zone"), Some("a"));
/// assert_eq!(m.keys().collect::<Vec<_>>(), ["proto", "zone"]);
/// assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"proto":"grpc","zone":"a"}"#);
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Metadata(Vec<(String, String)>);

impl Metadata {
    /// No labels.
    pub fn new() -> Self {
        Metadata(Vec::new())
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| self.0[i].1.as_str())
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key`; returns the value it replaces.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let (key, value) = (key.into(), value.into());
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True without labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels, sorted by key.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    /// Later values win for repeated keys.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = Metadata::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Metadata {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl From<BTreeMap<String, String>> for Metadata {
    fn from(map: BTreeMap<String, String>) -> Self {
        Metadata(map.into_iter().collect())
    }
}

impl From<Metadata> for BTreeMap<String, String> {
    fn from(m: Metadata) -> Self {
        m.0.into_iter().collect()
    }
}

impl<Q: Borrow<str> + ?Sized> std::ops::Index<&Q> for Metadata {
    type Output = str;

    /// The value of `key`; panics when it is not set, like a map's index.
    fn index(&self, key: &Q) -> &str {
        let key = key.borrow();
        self.get(key).unwrap_or_else(|| panic!("no metadata key {key:?}"))
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Metadata;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string labels")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Metadata, A::Error> {
                let mut m = Metadata::new();
                while let Some((k, v)) = access.next_entry::<String, String>()? {
                    m.insert(k, v);
                }
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_sorted_map() {
        let mut m: Metadata = [("b", "2"), ("a", "1"), ("b", "3")].into_iter().collect();
        assert_eq!(m.len(), 2);
        assert_eq!(&m["b"], "3");
        assert_eq!(m.insert("a", "x"), Some("1".into()));
        assert_eq!(m.remove("a"), Some("x".into()));
        assert_eq!(m.remove("a"), None);
        assert!(!m.contains_key("a"));
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"b":"3"}"#);
        let back: Metadata = serde_json::from_str(r#"{"z":"1","b":"3"}"#).unwrap();
        assert_eq!(back.keys().collect::<Vec<_>>(), ["b", "z"]);
        assert!(serde_json::from_str::<Metadata>(r#"{"a":1}"#).is_err());
        assert_eq!(format!("{back:?}"), r#"{"b": "3", "z": "1"}"#);
        let map: BTreeMap<String, String> = back.clone().into();
        assert_eq!(Metadata::from(map), back);
    }
}
