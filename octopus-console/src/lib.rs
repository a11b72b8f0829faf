//! # octopus-console
//!
//! A live console for an Octopus registry: a web page and a JSON API under
//! `/api`, kept current by one watch on the whole registry and pushed to the
//! page by server-sent events. `octopus console --registry URL` and
//! `octopus dev --console` run it; this crate is what they embed.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = octopus::connect("mem://").await?;
//! let console = octopus_console::Console::new(&client, octopus_console::ConsoleOptions::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! console.serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! What it guarantees (see `docs/CLI.md`, "Console"):
//!
//! - Read-only unless [`ConsoleOptions::writes`]; refuses a non-loopback listen
//!   address with writes on and no [`Token`] ([`ConsoleOptions::check_listen`]).
//! - The `Host` header must be the bound address, a loopback name or a name
//!   allowed by [`ConsoleOptions::allow_host`] (DNS rebinding).
//! - Writes need a JSON body type and a same-origin `Origin` or `Sec-Fetch-Site`;
//!   with a token, every `/api` call needs the token or the session cookie it is
//!   exchanged for (HttpOnly, SameSite=Strict), compared in constant time.
//! - The page is three static files with a strict Content-Security-Policy and no
//!   inline script; registrant data is only ever written as text.
//!
//! # Feature flags
//!
//! None: the console serves whatever registry the [`octopus::Client`] reaches.
#![forbid(unsafe_code)]

mod api;
mod assets;
mod feed;
mod mirror;
mod model;
mod options;
mod security;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use model::{ChangeKind, FieldChange, InstanceRow, ServiceSummary, TimelineEvent};
pub use options::{ConsoleOptions, Token, MIN_TOKEN_LEN};

/// Why a console cannot start or serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// The listen address breaks a rule.
    #[error("cannot serve the console on {addr}: it {rule}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The rule it breaks.
        rule: String,
    },
    /// The token breaks a rule (the token itself is never in the message).
    #[error("the console token {rule}")]
    Token {
        /// The rule it breaks.
        rule: String,
    },
    /// The token file cannot be read.
    #[error("cannot read the console token file {path}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the console's HTTP server failed")]
    Serve(#[source] std::io::Error),
}

impl ConsoleError {
    fn token(rule: String) -> Self {
        ConsoleError::Token { rule }
    }
}

/// A console over one registry: its watch runs from [`Console::new`] until the
/// console is dropped.
pub struct Console {
    shared: Arc<feed::Shared>,
    _feed: feed::Tasks,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// Starts following `client`'s registry (on the current tokio runtime).
    pub fn new(client: &octopus::Client, options: ConsoleOptions) -> Console {
        let (shared, tasks) = feed::start(client.inspector().clone(), options);
        Console { shared, _feed: tasks }
    }

    /// The console's routes, for a server bound at `bound`: the page, `/api`,
    /// and the checks every request goes through.
    pub fn router(&self, bound: SocketAddr) -> axum::Router {
        api::router(self.shared.clone(), bound)
    }

    /// Serves on `listener` until `shutdown` completes (event streams end then).
    /// Refuses an address that [`ConsoleOptions::check_listen`] refuses.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ConsoleError> {
        let bound = listener.local_addr().map_err(ConsoleError::Serve)?;
        self.shared.options.check_listen(bound)?;
        let app = self.router(bound);
        let stop = self.shared.stop.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                stop.send_replace(true);
            })
            .await
            .map_err(ConsoleError::Serve)
    }
}
