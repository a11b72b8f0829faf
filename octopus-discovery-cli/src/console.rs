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

#[derive(Debug, clap::Args)]
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

/// The registry URL without what must not reach a page: user and password,
/// and the query parameters that are secrets by the rule every redacted URL
/// follows ([`octopus::is_secret_param`]); where a log shows `password=***`,
/// the page leaves the parameter out.
pub(crate) fn label(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (main, query) = rest.split_once('?').map_or((rest, None), |(m, q)| (m, Some(q)));
    let (authority, path) = main.find('/').map_or((main, ""), |i| main.split_at(i));
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let mut out = if scheme.is_empty() {
        format!("{authority}{path}")
    } else {
        format!("{scheme}://{authority}{path}")
    };
    let kept: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| !octopus::is_secret_param(p.split('=').next().unwrap_or("")))
        .collect();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    out
}

fn options(args: &ConsoleArgs, registry: &str) -> Result<ConsoleOptions> {
    let mut options = ConsoleOptions::default()
        .writes(args.writes)
        .registry_label(label(registry));
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
    println!("octopus console: http://{addr}/  (registry {})", label(registry));
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
        .map_err(|e| format!("cannot use the registry {}: {e}", label(registry)))?;
    serve(args, registry, &client).await
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn labels_keep_no_credentials() {
        assert_eq!(label("etcd://127.0.0.1:2379"), "etcd://127.0.0.1:2379");
        assert_eq!(
            label("etcd://user:pw@10.0.0.1:2379,10.0.0.2:2379?namespace=/prod&password=x"),
            "etcd://10.0.0.1:2379,10.0.0.2:2379?namespace=/prod"
        );
        assert_eq!(
            label("etcd://10.0.0.1:2379?passwd=x&api_key=y&key_file=/etc/k.pem"),
            "etcd://10.0.0.1:2379?key_file=/etc/k.pem"
        );
        assert_eq!(label("mem://"), "mem://");
    }
}
