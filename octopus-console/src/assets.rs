//! The page: three files embedded in the binary, no build step.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");
const ICON: &str = include_str!("../assets/favicon.svg");

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type)], body)
}

pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { file("text/html; charset=utf-8", INDEX) }))
        .route(
            "/app.js",
            get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route("/app.css", get(|| async { file("text/css; charset=utf-8", STYLE) }))
        .route("/favicon.svg", get(|| async { file("image/svg+xml", ICON) }))
        // Browsers ask for it whatever the page says: no error in their console.
        .route("/favicon.ico", get(|| async { axum::http::StatusCode::NO_CONTENT }))
}
