//! A fast path for decoding Octopus's own values: one pass over the bytes, no
//! token machinery, strings copied once. It takes the values as the encoder
//! writes them (an object of the known fields, plain strings and integers, any
//! order, any whitespace) and gives up on anything else (an escape, a float, an
//! unknown or repeated field, a missing one), which serde_json then decodes or
//! refuses with its own message. Where it answers, it answers as serde_json
//! would: a test holds the two equal on encoded instances and on their
//! mutations.

use super::Incoming;
use crate::Metadata;

/// `value` decoded, or `None` when it is not in the plain form this path takes.
pub(super) fn decode(value: &[u8]) -> Option<Incoming> {
    // Checked once, whole: every string found below is cut at ASCII quotes.
    let text = std::str::from_utf8(value).ok()?;
    let mut r = Reader { text, at: 0 };
    let mut fields = Fields::default();
    r.object(|r, name| match name {
        "service" => set(&mut fields.service, r.string()?.to_owned()),
        "id" => set(&mut fields.id, r.string()?.to_owned()),
        "addr" => set(&mut fields.addr, r.string()?.to_owned()),
        "port" => set(&mut fields.port, u16::try_from(r.integer()?).ok()?),
        "version" => set(&mut fields.version, r.string()?.to_owned()),
        "metadata" => set(&mut fields.metadata, r.metadata()?),
        "weight" => set(&mut fields.weight, u32::try_from(r.integer()?).ok()?),
        "written_at_ms" => {
            let stamp = if r.literal(b"null") { None } else { Some(r.integer()?) };
            set(&mut fields.written_at_ms, stamp)
        }
        _ => None,
    })?;
    r.end()?;
    Some(Incoming {
        service: fields.service?,
        id: fields.id?,
        addr: fields.addr?,
        port: fields.port?,
        version: fields.version.unwrap_or_default(),
        metadata: fields.metadata.unwrap_or_default(),
        weight: fields.weight.unwrap_or_else(crate::instance::default_weight),
        written_at_ms: fields.written_at_ms.flatten(),
    })
}

#[derive(Default)]
struct Fields {
    service: Option<String>,
    id: Option<String>,
    addr: Option<String>,
    port: Option<u16>,
    version: Option<String>,
    metadata: Option<Metadata>,
    weight: Option<u32>,
    written_at_ms: Option<Option<u64>>,
}

/// Sets a field seen for the first time (serde refuses a repeated one).
fn set<T>(field: &mut Option<T>, value: T) -> Option<()> {
    match field {
        Some(_) => None,
        None => {
            *field = Some(value);
            Some(())
        }
    }
}

struct Reader<'a> {
    /// The value, known to be UTF-8.
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// An object: `{`, then each member's name handed to `member`, which reads
    /// its value (or fails), then `}`.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.byte(b'{')?;
        if self.maybe(b'}') {
            return Some(());
        }
        loop {
            let name = self.string()?;
            self.byte(b':')?;
            member(self, name)?;
            if self.maybe(b'}') {
                return Some(());
            }
            self.byte(b',')?;
        }
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// Consumes `b` (after any whitespace), or fails.
    fn byte(&mut self, b: u8) -> Option<()> {
        self.maybe(b).then_some(())
    }

    /// Consumes `b` (after any whitespace) if it is next.
    fn maybe(&mut self, b: u8) -> bool {
        self.skip_space();
        if self.bytes().get(self.at) == Some(&b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `word` (after any whitespace) if it is next.
    fn literal(&mut self, word: &[u8]) -> bool {
        self.skip_space();
        if self.bytes()[self.at..].starts_with(word) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    /// Only whitespace is left.
    fn end(&mut self) -> Option<()> {
        self.skip_space();
        (self.at == self.bytes().len()).then_some(())
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.byte(b'"')?;
        let start = self.at;
        let len = plain_len(&self.bytes()[start..]);
        // An escape, a control character or the end: serde_json's to decode or refuse.
        if self.bytes().get(start + len) != Some(&b'"') {
            return None;
        }
        self.at += len + 1;
        // Both ends are at ASCII bytes, so on character boundaries.
        self.text.get(start..start + len)
    }

    /// A non-negative integer, as JSON writes it (no leading zero, no sign, no
    /// fraction or exponent), that fits in a `u64`.
    fn integer(&mut self) -> Option<u64> {
        self.skip_space();
        let rest = &self.bytes()[self.at..];
        let len = rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
        let digits = &rest[..len];
        if digits.is_empty() || (digits[0] == b'0' && len > 1) {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = rest.get(len) {
            return None;
        }
        let mut n: u64 = 0;
        for d in digits {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        self.at += len;
        Some(n)
    }

    /// An object of strings; a repeated key keeps its last value, as
    /// [`Metadata`]'s own decoding does.
    fn metadata(&mut self) -> Option<Metadata> {
        let mut m = Metadata::new();
        self.object(|r, key| {
            m.insert(key, r.string()?);
            Some(())
        })?;
        Some(m)
    }
}

/// How many bytes of `bytes` come before the first `"`, `\\` or control
/// character (all of them if none does). Eight bytes at a time: a value's
/// strings are names, ids and addresses, mostly a word or two long.
fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    /// A byte's high bit set where that byte of `x` is zero (and, above a zero
    /// byte, perhaps elsewhere: only the lowest one found is used).
    fn zeros(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x & HIGHS
    }
    let mut at = 0;
    for word in bytes.chunks_exact(8) {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        // Below 0x20: the byte with its low five bits cleared is zero.
        let stop =
            zeros(x ^ (ONES * u64::from(b'"'))) | zeros(x ^ (ONES * u64::from(b'\\'))) | zeros(x & (ONES * 0xe0));
        if stop != 0 {
            return at + (stop.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(bytes.len() - at)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{KeyLayout, ServiceInstance};

    fn serde(value: &[u8]) -> Option<(ServiceInstance, Option<u64>)> {
        let incoming: Incoming = serde_json::from_slice(value).ok()?;
        let (instance, at) = incoming.split();
        Some((instance, at.map(|d| d.as_millis() as u64)))
    }

    fn fast(value: &[u8]) -> Option<(ServiceInstance, Option<u64>)> {
        let (instance, at) = decode(value)?.split();
        Some((instance, at.map(|d| d.as_millis() as u64)))
    }

    /// As the encoder writes it, stamped, without the encoder's validation.
    fn encoded(i: &ServiceInstance) -> Vec<u8> {
        let mut value = serde_json::to_value(i).unwrap();
        value["written_at_ms"] = 1_765_000_000_000u64.into();
        serde_json::to_vec(&value).unwrap()
    }

    fn instance() -> impl Strategy<Value = ServiceInstance> {
        (
            "[a-z]{1,6}",
            "\\PC{0,8}|[\"\\\\\u{1}]{1,2}",
            1u16..,
            0u32..=crate::MAX_WEIGHT,
            proptest::collection::btree_map("\\PC{1,5}|[\"\\\\\n]{1,2}", "\\PC{0,5}|[\"\\\\\u{7}\t]{0,2}", 0..4),
        )
            .prop_map(|(id, version, port, weight, metadata)| ServiceInstance {
                service: "svc".into(),
                id,
                addr: "127.0.0.1".into(),
                port,
                version,
                metadata: metadata.into(),
                weight,
            })
    }

    #[test]
    fn takes_what_the_encoder_writes() {
        let i = ServiceInstance::new("svc", "a-1", "127.0.0.1", 8080)
            .unwrap()
            .with_version("v1.2.3")
            .with_metadata("zone", "eu-west-1a");
        let value = crate::JsonLayout::default().encode(&i).unwrap();
        let (decoded, at) = fast(&value).expect("the fast path takes the encoder's values");
        assert_eq!(decoded, i);
        assert!(at.is_some());
        // Any order, any whitespace, fields left out.
        let (decoded, at) = fast(b" { \"port\" : 9 ,\"addr\":\"h\",\n\"id\":\"x\", \"service\":\"s\" } ").unwrap();
        assert_eq!(decoded, ServiceInstance::new("s", "x", "h", 9).unwrap());
        assert_eq!(at, None);
    }

    #[test]
    fn gives_up_on_what_it_does_not_take() {
        let base = br#"{"service":"s","id":"x","addr":"h","port":9"#;
        for tail in [
            &br#","id":"y"}"#[..],           // repeated field
            br#","other":1}"#,               // unknown field
            br#","weight":1.0}"#,            // not an integer
            br#","weight":-1}"#,             // negative
            br#","weight":01}"#,             // leading zero
            br#","weight":99999999999999}"#, // out of range
            br#","version":"a\"b"}"#,        // an escape
            br#"} x"#,                       // trailing bytes
            br#","written_at_ms":nul}"#,     // not a literal
            br#","metadata":{"k":1}}"#,      // not a string
            br#","metadata":{"k":"v",}}"#,   // trailing comma
        ] {
            let value = [&base[..], tail].concat();
            assert!(decode(&value).is_none(), "{}", String::from_utf8_lossy(&value));
        }
        assert!(
            decode(br#"{"service":"s","id":"x","addr":"h"}"#).is_none(),
            "a missing field"
        );
    }

    proptest! {
        /// The word-at-a-time scan stops where a byte-by-byte one does.
        #[test]
        fn plain_len_stops_where_a_byte_scan_does(
            bytes in proptest::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8.., any::<u8>()], 0..40),
            plain in proptest::collection::vec(0x20u8.., 0..40),
        ) {
            let bytes: Vec<u8> = plain.iter().filter(|&&b| b != b'"' && b != b'\\').copied().chain(bytes).collect();
            let expected = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(bytes.len());
            prop_assert_eq!(plain_len(&bytes), expected);
        }

        /// Every encoded instance: the fast path answers, as serde_json does
        /// (unless a string holds an escape, when it leaves it to serde_json).
        #[test]
        fn answers_as_serde_json_on_encoded_instances(i in instance()) {
            let value = encoded(&i);
            let expected = serde(&value);
            prop_assert_eq!(&expected.as_ref().unwrap().0, &i);
            match fast(&value) {
                Some(got) => prop_assert_eq!(Some(got), expected),
                None => prop_assert!(value.contains(&b'\\'), "{}", String::from_utf8_lossy(&value)),
            }
        }

        /// Encoded instances with bytes changed, cut or inserted: wherever the
        /// fast path answers, serde_json gives the same answer.
        #[test]
        fn never_answers_otherwise_than_serde_json(
            i in instance(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..4),
        ) {
            let mut value = encoded(&i);
            for (at, what, byte) in edits {
                let at = at.index(value.len());
                let alphabet = b"{}[]\":, 0123456789.-enul\\tra";
                let byte = alphabet[usize::from(byte) % alphabet.len()];
                match what {
                    0 => value[at] = byte,
                    1 => { value.remove(at); }
                    _ => value.insert(at, byte),
                }
            }
            if let Some(got) = fast(&value) {
                prop_assert_eq!(Some(got), serde(&value), "{}", String::from_utf8_lossy(&value));
            }
        }
    }
}
