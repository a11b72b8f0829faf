//! The JSON API under `/api` (documented in `docs/CLI.md`, "Console").

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::feed::{Message, Shared};
use crate::security::{authorized, guard, refuse, token_matches, COOKIE};

pub(crate) fn router(shared: Arc<Shared>, bound: SocketAddr) -> Router {
    let api = Router::new()
        .route("/services", get(services))
        .route("/services/{service}", get(service))
        .route("/services/{service}/timeline", get(timeline))
        .route("/events", get(events))
        .route("/services/{service}/instances/{id}/drain", post(drain))
        .route("/services/{service}/instances/{id}/undrain", post(undrain))
        .route("/services/{service}/instances/{id}", axum::routing::delete(deregister))
        .route_layer(from_fn_with_state(shared.clone(), require_token))
        .route("/session", get(session).post(login));
    Router::new()
        .nest("/api", api)
        .merge(crate::assets::routes())
        .fallback(|| async { refuse(StatusCode::NOT_FOUND, "no such page or API path") })
        .layer(from_fn_with_state((shared.clone(), bound), guard))
        .with_state(shared)
}

/// With a token set, every `/api` call but `/api/session` needs it.
async fn require_token(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if authorized(&shared, req.headers()) {
        next.run(req).await
    } else {
        refuse(
            StatusCode::UNAUTHORIZED,
            "this console needs its token: POST it to /api/session, or send Authorization: Bearer",
        )
    }
}

/// The refusal of an invalid name, if it is invalid.
fn invalid(field: &'static str, value: &str) -> Option<Response> {
    octopus::core::validate_name(field, value)
        .err()
        .map(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn services(State(shared): State<Arc<Shared>>) -> Response {
    let m = shared.mirror();
    Json(json!({
        "revision": m.revision,
        "fresh": m.fresh,
        "problem": m.problem,
        "services": m.summaries(Instant::now()),
    }))
    .into_response()
}

async fn service(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    if let Some(r) = invalid("service", &name) {
        return r;
    }
    let now = Instant::now();
    let m = shared.mirror();
    Json(json!({
        "revision": m.revision,
        "fresh": m.fresh,
        "name": name,
        "summary": m.service_summary(&name, now),
        "instances": m.rows(&name, now).unwrap_or_default(),
    }))
    .into_response()
}

async fn timeline(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    if let Some(r) = invalid("service", &name) {
        return r;
    }
    let m = shared.mirror();
    Json(json!({
        "revision": m.revision,
        "name": name,
        "events": m.timeline(&name, Instant::now()).unwrap_or_default(),
    }))
    .into_response()
}

/// `hello` first (with the revision and whether writes are on), then `update`,
/// `reset` and `status` events; a page that falls behind gets `reset`.
async fn events(State(shared): State<Arc<Shared>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = shared.events.subscribe();
    let hello = {
        let m = shared.mirror();
        json!({ "revision": m.revision, "fresh": m.fresh, "problem": m.problem }).to_string()
    };
    let mut stop = shared.stop.subscribe();
    // `retry`: a page reconnects within a second after the console restarts.
    let first = stream::once(async move {
        Event::default()
            .event("hello")
            .retry(Duration::from_secs(1))
            .data(hello)
    });
    let rest = stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(m) => match &*m {
                Message::Update(json) => Event::default().event("update").data(json),
                Message::Reset => Event::default().event("reset").data("{}"),
                Message::Status(json) => Event::default().event("status").data(json),
            },
            Err(RecvError::Lagged(_)) => Event::default().event("reset").data("{}"),
            Err(RecvError::Closed) => return None,
        };
        Some((event, rx))
    });
    let stream = first
        .chain(rest)
        .take_until(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .map(Ok);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn session(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    Json(json!({
        "writes": shared.options.writes,
        "token_required": shared.options.token.is_some(),
        "authorized": authorized(&shared, &headers),
        "registry": shared.options.registry_label,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

/// Exchanges the token for the session cookie.
async fn login(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(login)) = body else {
        return refuse(StatusCode::BAD_REQUEST, "the body must be JSON {\"token\": \"…\"}");
    };
    if shared.options.token.is_none() {
        return refuse(StatusCode::NOT_FOUND, "this console has no token: nothing to log in to");
    }
    if !token_matches(&shared, &login.token) {
        tracing::warn!("console: a wrong token was given");
        return refuse(StatusCode::UNAUTHORIZED, "wrong token");
    }
    let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", shared.session);
    let mut response = Json(json!({ "authorized": true })).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// Why a write is refused, if it is: writes off, an invalid name, or no such instance.
async fn unwritable(shared: &Shared, service: &str, id: &str) -> Option<Response> {
    if !shared.options.writes {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "this console is read-only: start it with --writes to drain, undrain or deregister",
        ));
    }
    if let Some(r) = invalid("service", service).or_else(|| invalid("id", id)) {
        return Some(r);
    }
    match shared.inspector.entry(service, id).await {
        Ok(Some(_)) => None,
        Ok(None) => Some(refuse(StatusCode::NOT_FOUND, format!("no instance {id} of {service}"))),
        Err(e) => Some(refuse(
            failed(&e),
            format!("cannot act on {service}/{id}: {}", e.chain()),
        )),
    }
}

/// The status of a write that failed: `409` when the registry answered and the
/// instance cannot take it as it stands (two keys claim the id, its value does
/// not decode, its layout has no room for the mark, it kept changing), `502`
/// when the registry failed.
fn failed(e: &octopus::Error) -> StatusCode {
    use octopus::ErrorKind::*;
    match e.kind() {
        InvalidInstance | InvalidOption | Decode | Conflict => StatusCode::CONFLICT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

async fn mark(shared: Arc<Shared>, service: String, id: String, draining: bool) -> Response {
    if let Some(r) = unwritable(&shared, &service, &id).await {
        return r;
    }
    match shared.inspector.set_draining(&service, &id, draining).await {
        Ok(entry) => {
            tracing::info!(%service, %id, draining, "console: instance marked");
            Json(json!({ "ok": true, "instance": crate::model::InstanceRow::from_entry(&entry) })).into_response()
        }
        Err(e) => refuse(failed(&e), format!("cannot mark {service}/{id}: {}", e.chain())),
    }
}

async fn drain(State(shared): State<Arc<Shared>>, Path((service, id)): Path<(String, String)>) -> Response {
    mark(shared, service, id, true).await
}

async fn undrain(State(shared): State<Arc<Shared>>, Path((service, id)): Path<(String, String)>) -> Response {
    mark(shared, service, id, false).await
}

async fn deregister(State(shared): State<Arc<Shared>>, Path((service, id)): Path<(String, String)>) -> Response {
    if let Some(r) = unwritable(&shared, &service, &id).await {
        return r;
    }
    match shared.inspector.remove(&service, &id).await {
        Ok(removed) => {
            tracing::info!(%service, %id, "console: instance deregistered");
            Json(json!({ "ok": true, "removed": removed })).into_response()
        }
        Err(e) => refuse(failed(&e), format!("cannot deregister {service}/{id}: {}", e.chain())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_write_is_a_conflict_and_a_failed_registry_a_bad_gateway() {
        let refused = octopus::Error::invalid_option("instance", "users/u1", "two keys claim it");
        assert_eq!(failed(&refused), StatusCode::CONFLICT);
        let timed_out = octopus::Error::timeout("put", Duration::from_secs(5));
        assert_eq!(failed(&timed_out), StatusCode::BAD_GATEWAY);
        let broken = octopus::Error::backend("put", "connection reset");
        assert_eq!(failed(&broken), StatusCode::BAD_GATEWAY);
    }
}
