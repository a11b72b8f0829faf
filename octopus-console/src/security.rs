//! The checks every request passes before a handler sees it, and the headers
//! every response carries.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::feed::Shared;

/// No script but the console's own file, no style but its own, nothing framed,
/// nothing loaded from elsewhere.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The session cookie's name.
pub(crate) const COOKIE: &str = "octopus_console_session";

/// A JSON error with a status.
pub(crate) fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Whether `host` (a `Host` header) names the console: the bound address, a
/// loopback name or an allowed name, on the bound port.
pub(crate) fn host_allowed(host: &str, bound: SocketAddr, allowed: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    let (name, port) = match host.rsplit_once(':') {
        // `[::1]:8080`, `127.0.0.1:8080`, `localhost:8080`; an IPv6 literal
        // without a port ends in `]`.
        Some((name, port)) if !port.ends_with(']') && (!name.contains(':') || name.starts_with('[')) => {
            (name, port.parse::<u16>().ok())
        }
        _ => (host.as_str(), Some(80)),
    };
    if port != Some(bound.port()) {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let loopback = matches!(name, "localhost" | "127.0.0.1" | "::1") || name.ends_with(".localhost");
    let bound_ip = !bound.ip().is_unspecified() && name.parse::<std::net::IpAddr>().ok() == Some(bound.ip());
    loopback || bound_ip || allowed.iter().any(|a| a == name)
}

/// Whether a write comes from the console's own page (or from a tool that is
/// not a browser: no `Origin` and no `Sec-Fetch-Site`).
fn same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if origin != format!("http://{host}") && origin != format!("https://{host}") {
            return Err("its Origin is not this console's: writes are taken from the console's own page only");
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.to_str().unwrap_or(""), "same-origin" | "none") {
            return Err("its Sec-Fetch-Site is not same-origin: writes are taken from the console's own page only");
        }
    }
    Ok(())
}

/// The value of one cookie in the `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Whether the request carries the token (as `Authorization: Bearer`) or the
/// session cookie; always true when no token is set.
pub(crate) fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = &shared.options.token else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(given) = bearer {
        return bool::from(given.as_bytes().ct_eq(token.as_bytes()));
    }
    cookie(headers, COOKIE).is_some_and(|given| bool::from(given.as_bytes().ct_eq(shared.session.as_bytes())))
}

/// Whether `given` is the token, compared in constant time.
pub(crate) fn token_matches(shared: &Shared, given: &str) -> bool {
    shared
        .options
        .token
        .as_ref()
        .is_some_and(|t| bool::from(given.as_bytes().ct_eq(t.as_bytes())))
}

/// The checks: `Host`; for anything but GET and HEAD, the body type and the
/// origin; for `/api` with a token, the token or cookie. Then the headers.
pub(crate) async fn guard(
    State((shared, bound)): State<(Arc<Shared>, SocketAddr)>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let mut response = if !host_allowed(host, bound, &shared.options.allowed_hosts) {
        refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this console answers only to its own address or a loopback name in Host (DNS rebinding guard)",
        )
    } else if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        if !json {
            refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a write must have Content-Type: application/json",
            )
        } else if let Err(rule) = same_origin(headers) {
            refuse(StatusCode::FORBIDDEN, format!("refused: {rule}"))
        } else {
            next.run(req).await
        }
    } else {
        next.run(req).await
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bound_loopback_or_allowed_hosts_pass() {
        let bound: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
            "a.localhost:8080",
        ] {
            assert!(host_allowed(ok, bound, &[]), "{ok}");
        }
        for bad in [
            "evil.com:8080",
            "127.0.0.1:9090",
            "evil.com",
            "",
            "127.0.0.1",
            "localhost.evil.com:8080",
        ] {
            assert!(!host_allowed(bad, bound, &[]), "{bad}");
        }
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(!host_allowed("0.0.0.0:8080", any, &[]));
        assert!(host_allowed("ops.example:8080", any, &["ops.example".into()]));
        let lan: SocketAddr = "10.0.0.5:80".parse().unwrap();
        assert!(host_allowed("10.0.0.5", lan, &[]));
    }

    #[test]
    fn cross_site_or_foreign_origin_requests_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h).is_ok());
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&h).is_err());
        h.remove("sec-fetch-site");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.com"));
        assert!(same_origin(&h).is_err());
    }
}
