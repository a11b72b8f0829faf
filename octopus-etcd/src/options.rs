//! Connection settings for etcd.

use std::time::Duration;

use octopus_discovery_core::{Error, Result, Secret};

/// How to reach etcd.
///
/// `from_channel` in etcd-client ignores the timeouts and keepalive of its own
/// options, so these are set on the tonic `Endpoint` instead: without HTTP/2
/// keepalive a partitioned connection, and every watch on it, would hang forever.
/// Its `Debug` shows the user but never the password (`***`).
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    pub(crate) endpoints: Vec<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) user: Option<(String, Secret)>,
    pub(crate) page_size: i64,
    pub(crate) tls: Option<TlsOptions>,
}

/// TLS settings: the CA that signed etcd's certificate, and optionally a client
/// certificate for etcd's `--client-cert-auth`. All PEM. Its `Debug` shows
/// sizes and the domain, never the private key.
#[derive(Clone, Default)]
pub struct TlsOptions {
    pub(crate) ca_pem: Vec<u8>,
    pub(crate) identity: Option<(Vec<u8>, Secret)>,
    pub(crate) domain: Option<String>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field(
                "identity",
                &self
                    .identity
                    .as_ref()
                    .map(|(cert, _)| format!("certificate of {} bytes, key ***", cert.len())),
            )
            .field("domain", &self.domain)
            .finish()
    }
}

impl TlsOptions {
    /// Trusts the CA in `ca_pem`.
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> Self {
        TlsOptions {
            ca_pem: ca_pem.into(),
            identity: None,
            domain: None,
        }
    }

    /// Presents this client certificate and key.
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        let key = String::from_utf8_lossy(&key_pem.into()).into_owned();
        self.identity = Some((cert_pem.into(), Secret::new(key)));
        self
    }

    /// Checks the server's certificate against `domain` instead of the endpoint's host.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }
}

impl EtcdOptions {
    /// Options for `endpoints` (`host:port` or `http://host:port`), with 5 s connect
    /// and request timeouts and HTTP/2 keepalive every 10 s with a 5 s timeout
    /// (etcd closes a connection that pings more often than its
    /// `--grpc-keepalive-min-time`, 5 s by default, with GOAWAY `too_many_pings`:
    /// every watch on it would break every few seconds).
    pub fn new<S: AsRef<str>>(endpoints: impl IntoIterator<Item = S>) -> Result<Self> {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| normalize(e.as_ref()))
            .collect::<Result<_>>()?;
        if endpoints.is_empty() {
            return Err(Error::invalid_option(
                "endpoints",
                "[]",
                "at least one etcd endpoint (host:port) is needed",
            ));
        }
        Ok(EtcdOptions {
            endpoints,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            user: None,
            page_size: 1000,
            tls: None,
        })
    }

    /// Bounds connection set-up.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Bounds every unary request (watches and keepalive streams are long-lived).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// HTTP/2 keepalive: a ping every `interval`, the connection is dead after `timeout`
    /// without an answer. This is how a silent partition is noticed.
    pub fn http2_keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive_interval = interval;
        self.keepalive_timeout = timeout;
        self
    }

    /// Authenticates as `user`.
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), Secret::new(password.into())));
        self
    }

    /// Speaks TLS to every endpoint (`https://`).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.endpoints = self
            .endpoints
            .iter()
            .map(|e| e.replacen("http://", "https://", 1))
            .collect();
        self.tls = Some(tls);
        self
    }

    /// Keys per page when reading a prefix (default 1000).
    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = i64::from(n.max(1));
        self
    }

    /// The endpoints, as URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }
}

fn normalize(endpoint: &str) -> Result<String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    if !octopus_discovery_core::plausible_host(rest) {
        // Not echoed: what is neither a host nor an address (a `user:password@`
        // part, a password that split the URL) may be a secret.
        return Err(Error::invalid_option(
            "endpoint",
            "(not shown)",
            "must be host:port, a host name or address and a port (credentials go in EtcdOptions::user)",
        ));
    }
    let bad = |rule: &str| Error::invalid_option("endpoint", format!("{endpoint:?}"), rule);
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("must be host:port"))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad("must be host:port with a port in 1..=65535"));
    }
    let scheme = if endpoint.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        let o = EtcdOptions::new(["127.0.0.1:2379", "http://[::1]:2380"]).unwrap();
        assert_eq!(o.endpoints(), ["http://127.0.0.1:2379", "http://[::1]:2380"]);
        let o = o.tls(TlsOptions::new(Vec::new()));
        assert_eq!(o.endpoints(), ["https://127.0.0.1:2379", "https://[::1]:2380"]);
        for bad in ["127.0.0.1", "h:0", "h:99999"] {
            let e = EtcdOptions::new([bad]).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("host:port"), "{e}");
        }
        // What is no host is refused without being shown: it may hold a password.
        for bad in [
            ":2379",
            "root:Planted@h:2379",
            "http://root:Planted@h:2379",
            "h:Planted",
            "a b:1",
        ] {
            let e = EtcdOptions::new([bad]).unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(text.contains("host:port") && !text.contains("Planted"), "{text}");
        }
        assert!(EtcdOptions::new(Vec::<String>::new()).is_err());
    }
}
