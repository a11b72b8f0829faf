//! Changes to a drawn schedule, as text (`3:drop,5:len=400ms`): what `--shrink`
//! prints and `--edits` reads. [`crate::units`] applies them.

use std::collections::BTreeMap;
use std::time::Duration;

/// Changes to a drawn schedule, for shrinking a failing seed: units dropped,
/// shortened or moved. Written `3:drop,5:len=400ms,7:at=12500ms`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edits {
    /// Units left out.
    pub drop: std::collections::BTreeSet<usize>,
    /// New lengths.
    pub len: BTreeMap<usize, Duration>,
    /// New start times.
    pub at: BTreeMap<usize, Duration>,
}

impl Edits {
    /// Parses `3:drop,5:len=400ms,7:at=12500ms`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut e = Edits::default();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let bad = || format!("bad edit {part:?}: UNIT:drop, UNIT:len=MSms or UNIT:at=MSms");
            let (unit, what) = part.split_once(':').ok_or_else(bad)?;
            let unit: usize = unit.parse().map_err(|_| bad())?;
            let ms = |v: &str| -> Result<Duration, String> {
                v.strip_suffix("ms")
                    .and_then(|n| n.parse().ok())
                    .map(Duration::from_millis)
                    .ok_or_else(bad)
            };
            match what.split_once('=') {
                None if what == "drop" => {
                    e.drop.insert(unit);
                }
                Some(("len", v)) => {
                    e.len.insert(unit, ms(v)?);
                }
                Some(("at", v)) => {
                    e.at.insert(unit, ms(v)?);
                }
                _ => return Err(bad()),
            }
        }
        Ok(e)
    }

    /// True when nothing is changed.
    pub fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.len.is_empty() && self.at.is_empty()
    }
}

impl std::fmt::Display for Edits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<(usize, String)> = Vec::new();
        parts.extend(self.drop.iter().map(|u| (*u, format!("{u}:drop"))));
        parts.extend(
            self.len
                .iter()
                .map(|(u, d)| (*u, format!("{u}:len={}ms", d.as_millis()))),
        );
        parts.extend(self.at.iter().map(|(u, d)| (*u, format!("{u}:at={}ms", d.as_millis()))));
        parts.sort();
        let parts: Vec<String> = parts.into_iter().map(|(_, p)| p).collect();
        f.write_str(&parts.join(","))
    }
}
