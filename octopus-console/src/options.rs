//! What a console may do, and who may ask it: [`ConsoleOptions`], [`Token`].

use std::net::SocketAddr;
use std::path::Path;

use crate::ConsoleError;

/// The shortest token accepted: long enough not to be guessed over HTTP.
pub const MIN_TOKEN_LEN: usize = 16;

/// The secret that unlocks a console: writes, and every `/api` call when set.
/// Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its text: at least [`MIN_TOKEN_LEN`] characters, no whitespace
    /// or control characters (it travels in a header).
    pub fn new(text: impl Into<String>) -> Result<Self, ConsoleError> {
        let text = text.into();
        if text.chars().count() < MIN_TOKEN_LEN {
            return Err(ConsoleError::token(format!(
                "is {} characters long: it must have at least {MIN_TOKEN_LEN}",
                text.chars().count()
            )));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConsoleError::token(
                "holds whitespace or control characters: it must not".into(),
            ));
        }
        Ok(Token(text))
    }

    /// The token in a file, its trailing newline ignored.
    pub fn from_file(path: &Path) -> Result<Self, ConsoleError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConsoleError::TokenFile {
            path: path.to_owned(),
            source,
        })?;
        Token::new(text.trim_end_matches(['\n', '\r']))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// How a console behaves. Read-only, on loopback names only, with no token, by default.
#[derive(Clone, Debug, Default)]
pub struct ConsoleOptions {
    pub(crate) writes: bool,
    pub(crate) token: Option<Token>,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) registry_label: String,
}

impl ConsoleOptions {
    /// Lets the page and the API drain, undrain and deregister instances.
    pub fn writes(mut self, on: bool) -> Self {
        self.writes = on;
        self
    }

    /// Requires `token` for every `/api` call (the page asks for it once and keeps
    /// an HttpOnly cookie).
    pub fn token(mut self, token: Token) -> Self {
        self.token = Some(token);
        self
    }

    /// Also accepts requests whose `Host` is `host` (a name, without port), for
    /// a console reached by a DNS name. Loopback names and the bound address are
    /// always accepted.
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into().to_ascii_lowercase());
        self
    }

    /// The registry as the page names it, in "copy as CLI" commands
    /// (`--registry LABEL`). Give it without credentials.
    pub fn registry_label(mut self, label: impl Into<String>) -> Self {
        self.registry_label = label.into();
        self
    }

    /// Whether writes are on.
    pub fn writes_enabled(&self) -> bool {
        self.writes
    }

    /// Refuses to serve on a non-loopback `addr` with writes on and no token:
    /// anyone who can reach the port could drain every instance.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), ConsoleError> {
        if !addr.ip().is_loopback() && self.writes && self.token.is_none() {
            return Err(ConsoleError::Listen {
                addr,
                rule: "is not a loopback address, and writes are on with no token: give a token \
                       (--token-file, or OCTOPUS_CONSOLE_TOKEN), turn writes off, or listen on 127.0.0.1"
                    .into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_never_shown() {
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in it, long enough").is_err());
        let t = Token::new("0123456789abcdef-secret").unwrap();
        assert!(!format!("{t:?}").contains("secret"));
        assert!(!format!("{:?}", ConsoleOptions::default().token(t)).contains("secret"));
    }

    #[test]
    fn non_loopback_needs_read_only_or_a_token() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(ConsoleOptions::default().check_listen(public).is_ok());
        assert!(ConsoleOptions::default().writes(true).check_listen(local).is_ok());
        let err = ConsoleOptions::default().writes(true).check_listen(public).unwrap_err();
        assert!(err.to_string().contains("0.0.0.0:8080"), "{err}");
        let token = Token::new("0123456789abcdef").unwrap();
        assert!(ConsoleOptions::default()
            .writes(true)
            .token(token)
            .check_listen(public)
            .is_ok());
    }
}
