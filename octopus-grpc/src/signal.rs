//! [`shutdown_signal`]: the signals a service stops on, for binaries.

/// Completes on SIGINT or SIGTERM (on other platforms, Ctrl-C): what a binary
/// passes as the shutdown future of [`RegisteredServer`](crate::RegisteredServer) (or of
/// anything else that takes one). The library itself traps no signal.
///
/// ```no_run
/// # async fn demo() {
/// octopus_grpc::shutdown_signal().await;
/// println!("stopping");
/// # }
/// ```
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            // No signal handler could be installed: Ctrl-C as elsewhere.
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
