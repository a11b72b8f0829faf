//! Secrets that never reach a log line, an error or `Debug`: a [`Secret`] holder
//! and the one redacted form of a registry URL.

use std::fmt;

/// A secret value (a password, a private key): its `Debug` and `Display` print
/// `***`; read it with [`Secret::expose`] where it is sent, nowhere else.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Holds `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The query parameters whose values a printed registry URL shows: the ones
/// the registries define that are not secrets. Any other parameter prints as
/// `name=***` (a misspelt `pasword=`, a parameter of a newer release), since
/// what it holds is not known.
pub const SHOWN_PARAMS: [&str; 15] = [
    "namespace",
    "layout",
    "ttl",
    "retry_interval",
    "retry_cap",
    "shared_lease",
    "cache_file",
    "connect_timeout",
    "request_timeout",
    "user",
    "password_file",
    "ca_file",
    "cert_file",
    "key_file",
    "tls_domain",
];

/// The parameters the registries define whose values are secrets: a printed
/// URL names them, with `***` for the value.
pub const HIDDEN_PARAMS: [&str; 1] = ["password"];

/// Whether a printed URL shows the value of parameter `name` ([`SHOWN_PARAMS`]).
pub fn is_shown_param(name: &str) -> bool {
    SHOWN_PARAMS.contains(&name)
}

/// `url` with every secret replaced by `***`: the form for logs, errors and
/// `Debug`. It shows the scheme, the hosts and the values of the parameters in
/// [`SHOWN_PARAMS`]; a `user:password@` part prints as `***@`, any other
/// parameter's value as `***`, and whatever does not read as a host or a
/// `name=value` parameter (a password holding `&`, `?`, `,` or `/` splits
/// where it should not) as `***`. It never fails: a URL that does not parse
/// prints the same way.
///
/// ```
/// use octopus_discovery_core::redact_url;
/// assert_eq!(
///     redact_url("etcd://h1:2379,h2:2379?user=root&password=p%40ss&namespace=/prod"),
///     "etcd://h1:2379,h2:2379?user=root&password=***&namespace=/prod"
/// );
/// assert_eq!(redact_url("etcd://root:hunter2@h:2379"), "etcd://***@h:2379");
/// assert_eq!(redact_url("etcd://h:2379?password=Xy7&Qz9"), "etcd://h:2379?password=***&***");
/// ```
pub fn redact_url(url: &str) -> String {
    Shown::new(url).render(true)
}

/// `url` as a page may show it: [`redact_url`]'s form with the hidden parts
/// left out instead of printed as `***` (no `user:password@`, no secret or
/// unknown parameter).
///
/// ```
/// use octopus_discovery_core::url_label;
/// assert_eq!(url_label("etcd://root:pw@h:2379?password=x&namespace=/prod"), "etcd://h:2379?namespace=/prod");
/// ```
pub fn url_label(url: &str) -> String {
    Shown::new(url).render(false)
}

/// A registry URL cut into the parts that may be printed and those that may not.
struct Shown<'a> {
    scheme: Option<&'a str>,
    /// Something stood before an `@` (a `user:password@` part).
    userinfo: bool,
    /// Each host, or `None` where it does not read as one.
    hosts: Vec<Option<&'a str>>,
    /// What follows the hosts up to the query (a path, which no registry URL
    /// has but a mistaken one may), or `None` where it does not read as one.
    path: Option<Option<&'a str>>,
    /// Each parameter: its name and value when both may be printed, its name
    /// alone when only that may, nothing when not even that.
    params: Vec<(Option<&'a str>, Option<&'a str>)>,
}

impl<'a> Shown<'a> {
    fn new(url: &'a str) -> Self {
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) if plausible_scheme(scheme) => (Some(scheme), rest),
            _ => (None, url),
        };
        let (userinfo, rest) = match userinfo_end(rest) {
            Some(at) => (true, &rest[at + 1..]),
            None => (false, rest),
        };
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match authority.find('/') {
            Some(i) => {
                let path = &authority[i..];
                let plain = path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
                (&authority[..i], Some(plain.then_some(path)))
            }
            None => (authority, None),
        };
        // After a `user:password@` part, a host prints only with its port: a
        // password with an `@` of its own (`?Pla@nted`) leaves a tail that
        // reads as a bare host name.
        let shown = |h: &str| {
            plausible_host(h)
                && (!userinfo
                    || h.rsplit_once(':')
                        .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())))
        };
        let hosts = match authority {
            "" => Vec::new(),
            authority => authority
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| shown(h).then_some(h))
                .collect(),
        };
        // After a parameter whose value is hidden, what follows may be that
        // value's tail, cut off by a stray `&` (`password=Xy7&abc=def`): a
        // parameter nobody defines then prints as `***`, name and all.
        let mut after_hidden = false;
        let params = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let shown = match pair.split_once('=') {
                    Some((k, v)) if is_shown_param(k) => (Some(k), Some(v)),
                    Some((k, _)) if HIDDEN_PARAMS.contains(&k) => (Some(k), None),
                    // The name of a parameter nobody defines prints only when it
                    // reads as one (lower case) and no hidden value comes before
                    // it, so a typo shows and a password's tail does not.
                    Some((k, _)) if lower_name(k) && !after_hidden => (Some(k), None),
                    _ => (None, None),
                };
                after_hidden |= shown.1.is_none();
                shown
            })
            .collect();
        Shown {
            scheme,
            userinfo,
            hosts,
            path,
            params,
        }
    }

    /// The URL; `stars`: hidden parts as `***`, else left out.
    fn render(&self, stars: bool) -> String {
        let mut out = String::new();
        if let Some(scheme) = self.scheme {
            out.push_str(scheme);
            out.push_str("://");
        }
        if self.userinfo && stars {
            out.push_str("***@");
        }
        let hosts: Vec<&str> = self
            .hosts
            .iter()
            .filter_map(|h| match h {
                Some(h) => Some(*h),
                None => stars.then_some("***"),
            })
            .collect();
        out.push_str(&hosts.join(","));
        match self.path {
            Some(Some(path)) => out.push_str(path),
            Some(None) if stars => out.push_str("/***"),
            _ => {}
        }
        let params: Vec<String> = self
            .params
            .iter()
            .filter_map(|p| match p {
                (Some(k), Some(v)) => Some(format!("{k}={v}")),
                (Some(k), None) => stars.then(|| format!("{k}=***")),
                (None, _) => stars.then(|| "***".to_owned()),
            })
            .collect();
        if !params.is_empty() {
            out.push('?');
            out.push_str(&params.join("&"));
        }
        out
    }
}

/// Where a `user:password@` part of `rest` (the URL after `scheme://`) ends:
/// the last `@` that is not inside a `name=value` parameter's value. A
/// password may hold `,`, `/`, `?` or `@`; a host never holds `@`.
fn userinfo_end(rest: &str) -> Option<usize> {
    rest.match_indices('@').map(|(i, _)| i).rev().find(|&i| {
        let before = &rest[..i];
        let Some(q) = before.find('?') else {
            return true; // before the query: in the authority
        };
        // In the value of a parameter that prints (`user=svc@corp`), an `@` is
        // the value's own; anywhere else it may end a `user:password@` part
        // that a `?` in the password cut short (`root:123?b=c@h:2379`), and
        // what stands before it is hidden (the value is hidden anyway).
        let segment = &before[before.rfind('&').map_or(q, |a| a.max(q)) + 1..];
        !matches!(segment.split_once('='), Some((name, _)) if is_shown_param(name))
    })
}

/// A URL scheme: letters, digits and `+` (`etcd`, `mem`).
pub fn plausible_scheme(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+')
}

/// A name as the registries write theirs: lower-case letters, digits and `_`.
pub fn lower_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A host name or address, with an optional port of digits: `h`, `10.0.0.1:2379`, `[::1]:2379`.
pub fn plausible_host(h: &str) -> bool {
    let (host, port) = match h.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest))
                if !addr.is_empty() && addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') =>
            {
                match rest {
                    "" => return true,
                    _ => {
                        return rest
                            .strip_prefix(':')
                            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
                    }
                }
            }
            _ => return false,
        },
        None => h.rsplit_once(':').map_or((h, None), |(host, port)| (host, Some(port))),
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_everything_but_secrets() {
        assert_eq!(
            redact_url("etcd://h1:2379,h2:2379?user=root&password=p%40ss&namespace=/prod"),
            "etcd://h1:2379,h2:2379?user=root&password=***&namespace=/prod"
        );
        assert_eq!(redact_url("etcd://root:pw@h:2379"), "etcd://***@h:2379");
        assert_eq!(
            redact_url("etcd://h?password_file=/run/pw"),
            "etcd://h?password_file=/run/pw"
        );
        assert_eq!(
            redact_url("etcd://h?auth_token=abc&PASSWORD=x"),
            "etcd://h?auth_token=***&***"
        );
        assert_eq!(
            redact_url("etcd://h?passwd=a&Pwd=b&api_key=c&credentials=d&key_file=/k&namespace=/n"),
            "etcd://h?passwd=***&***&***&***&key_file=/k&namespace=/n"
        );
        assert_eq!(redact_url("mem://"), "mem://");
        assert_eq!(
            redact_url("mem://layouts?layout=kratos&ttl=3s"),
            "mem://layouts?layout=kratos&ttl=3s"
        );
        assert_eq!(
            redact_url("etcd://[::1]:2379,127.0.0.1/"),
            "etcd://[::1]:2379,127.0.0.1/"
        );
        assert_eq!(redact_url("etcd://h/prod"), "etcd://h/prod");
        assert_eq!(
            redact_url("etcd://h:2379?user=svc@corp&password=x"),
            "etcd://h:2379?user=svc@corp&password=***"
        );
    }

    /// Every way a secret can sit where the URL's grammar does not expect it:
    /// none of it prints, whatever the URL's other parts.
    #[test]
    fn secrets_where_the_grammar_does_not_expect_them_stay_hidden() {
        for url in [
            "etcd://root:Planted@10.0.0.1:2379",
            "root:Planted@10.0.0.1:2379",
            "etcd://root:Pla,nted@h:2379",
            "etcd://root:Pla?nted@h:2379",
            "etcd://root:Pla?n=ted@h:2379",
            "etcd://root:Pla/nted@h:2379",
            "etcd://root:Pl@nted@h:2379",
            "etcd://h:2379?Pla@nted",
            "etcd://root:pw@nted",
            "etcd://h:2379?password=Pl@nted",
            "etcd://h:2379?password=Xy7&Planted",
            "etcd://h:2379?password=Xy7&Planted=1",
            "etcd://h:2379?password=Xy7&planted=1",
            "etcd://h:2379?pasword=Planted",
            "etcd://h:2379?pw=Planted",
            "etcd://h:2379?p%61ssword=Planted",
            "etcd://h:2379?user=root&password=Planted&namespace=/prod",
            "etcd://h:Planted",
            "not a url Planted",
            "etcd://root:Planted h@h:2379",
        ] {
            for shown in [redact_url(url), url_label(url)] {
                let leaks = ["Planted", "Pla", "nted", "Pl@"].iter().any(|s| shown.contains(s));
                assert!(!leaks, "{url:?} printed as {shown:?}");
            }
        }
        // The hosts and the parameters that say where and how still print.
        assert_eq!(redact_url("etcd://root:Pla?n=ted@h:2379"), "etcd://***@h:2379");
        assert_eq!(redact_url("etcd://root:123?b=c@h:2379"), "etcd://***@h:2379");
        assert_eq!(
            redact_url("etcd://h:2379?password=Xy7&abc=def&ttl=5s"),
            "etcd://h:2379?password=***&***&ttl=5s"
        );
        assert_eq!(redact_url("etcd://h1:2379,,h2:2379,"), "etcd://h1:2379,h2:2379");
        assert_eq!(
            redact_url("etcd://h:2379?bogus=1&password=x"),
            "etcd://h:2379?bogus=***&password=***"
        );
        assert_eq!(
            redact_url("etcd://root:Pla,nted@h:2379?ttl=5s"),
            "etcd://***@h:2379?ttl=5s"
        );
        assert_eq!(
            url_label("etcd://root:Pla,nted@h:2379?ttl=5s&password=x"),
            "etcd://h:2379?ttl=5s"
        );
        assert_eq!(
            url_label("etcd://user:pw@10.0.0.1:2379,10.0.0.2:2379?namespace=/prod&password=x"),
            "etcd://10.0.0.1:2379,10.0.0.2:2379?namespace=/prod"
        );
        assert_eq!(
            url_label("etcd://10.0.0.1:2379?passwd=x&api_key=y&key_file=/etc/k.pem"),
            "etcd://10.0.0.1:2379?key_file=/etc/k.pem"
        );
    }

    #[test]
    fn secrets_print_as_stars() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** \"***\"");
        assert_eq!(s.expose(), "hunter2");
    }
}
