//! Secrets that never reach a log line, an error or `Debug`: a [`Secret`] holder
//! and the one redacted form of a registry URL.

use std::fmt;

/// Words that make a registry URL's query parameter a secret: a parameter
/// whose name holds one of them, in any case (`password`, `passwd`, `PWD`,
/// `api_key`, `auth_token`, `credentials`), is redacted, unless its name ends in
/// `_file` (a path, such as `password_file` or `key_file`). Broad on purpose:
/// a misspelt `passwd=` is refused as an unknown parameter, and that error
/// prints the URL.
pub const SECRET_PARAMS: [&str; 7] = ["pass", "pwd", "token", "secret", "key", "auth", "cred"];

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

/// Whether a URL parameter's value is a secret.
pub fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s)) && !name.ends_with("_file")
}

/// `url` with every secret replaced by `***`: the values of secret query
/// parameters (`password=***`) and the password of a `user:password@` part.
/// Everything else is kept, so that the URL still says where and how.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = redact_userinfo(head);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// `scheme://user:password@host` → `scheme://user:***@host`, for every host.
fn redact_userinfo(head: &str) -> String {
    let Some((scheme, authority)) = head.split_once("://") else {
        return head.to_owned();
    };
    let hosts: Vec<String> = authority
        .split(',')
        .map(|h| match h.rsplit_once('@') {
            Some((info, host)) => match info.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => h.to_owned(),
            },
            None => h.to_owned(),
        })
        .collect();
    format!("{scheme}://{}", hosts.join(","))
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
        assert_eq!(redact_url("etcd://root:pw@h:2379"), "etcd://root:***@h:2379");
        assert_eq!(
            redact_url("etcd://h?password_file=/run/pw"),
            "etcd://h?password_file=/run/pw"
        );
        assert_eq!(
            redact_url("etcd://h?auth_token=abc&PASSWORD=x"),
            "etcd://h?auth_token=***&PASSWORD=***"
        );
        assert_eq!(
            redact_url("etcd://h?passwd=a&Pwd=b&api_key=c&credentials=d&key_file=/k&namespace=/n"),
            "etcd://h?passwd=***&Pwd=***&api_key=***&credentials=***&key_file=/k&namespace=/n"
        );
        assert_eq!(redact_url("mem://"), "mem://");
        assert_eq!(redact_url("not a url ?password"), "not a url ?password");
    }

    #[test]
    fn secrets_print_as_stars() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** \"***\"");
        assert_eq!(s.expose(), "hunter2");
    }
}
