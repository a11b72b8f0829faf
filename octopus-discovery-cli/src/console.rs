//! `octopus console`: the live registry console (the `octopus-console` crate)
//! over a registry URL.

use std::net::SocketAddr;
use std::path::PathBuf;

use octopus_console::{Console, ConsoleOptions, Token};

use crate::Result;

/// Where the console listens unless told.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// The environment variable that may hold the token (never the command line:
/// other users see a process's arguments).
pub(crate) const TOKEN_ENV: &str = "OCTOPUS_CONSOLE_TOKEN";

#[derive(clap::Args)]
pub(crate) struct ConsoleArgs {
    /// Where to listen. A non-loopback address needs writes off or a token.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub(crate) listen: SocketAddr,
    /// Let the page drain, undrain and deregister instances (read-only otherwise).
    #[arg(long)]
    pub(crate) writes: bool,
    /// Read the console's token from FILE (or set OCTOPUS_CONSOLE_TOKEN): every
    /// /api call then needs it; the page asks once and keeps a cookie.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Also answer to this host name (besides loopback names and the bound address).
    #[arg(long, value_name = "NAME")]
    pub(crate) allow_host: Vec<String>,
}

fn options(args: &ConsoleArgs, registry: &str) -> Result<ConsoleOptions> {
    let mut options = ConsoleOptions::default()
        .writes(args.writes)
        .registry_label(octopus::url_label(registry));
    let token = match (&args.token_file, std::env::var(TOKEN_ENV)) {
        (Some(path), _) => Some(Token::from_file(path).map_err(|e| format!("--token-file: {e}"))?),
        (None, Ok(text)) if !text.is_empty() => Some(Token::new(text).map_err(|e| format!("{TOKEN_ENV}: {e}"))?),
        _ => None,
    };
    if let Some(token) = token {
        options = options.token(token);
    }
    for host in &args.allow_host {
        options = options.allow_host(host);
    }
    options.check_listen(args.listen).map_err(|e| e.to_string())?;
    Ok(options)
}

/// Serves the console for `client` until Ctrl-C or SIGTERM.
pub(crate) async fn serve(args: &ConsoleArgs, registry: &str, client: &octopus::Client) -> Result {
    let options = options(args, registry)?;
    let writes = options.writes_enabled();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let console = Console::new(client, options);
    println!(
        "octopus console: http://{addr}/  (registry {})",
        octopus::url_label(registry)
    );
    println!(
        "  {}",
        if writes {
            "writes on: the page can drain, undrain and deregister"
        } else {
            "read-only (--writes lets the page drain, undrain and deregister)"
        }
    );
    console
        .serve(listener, async {
            octopus::shutdown_signal().await;
        })
        .await
        .map_err(|e| e.to_string())
}

pub(crate) async fn run(args: &ConsoleArgs, registry: &str) -> Result {
    // Lazily: the console starts (and says the registry is unreachable) even
    // while the registry is down, and catches up when it comes.
    let client = octopus::connect_lazy(registry)
        .await
        .map_err(|e| format!("cannot use the registry {}: {e}", octopus::url_label(registry)))?;
    serve(args, registry, &client).await
}
