//! turmoil's TCP as tonic transports: a connector for clients, an accept stream for servers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::Uri;

/// A turmoil TCP connection that tonic's server accepts (it knows its peer).
#[derive(Debug)]
pub struct SimConn(pub turmoil::net::TcpStream);

impl Connected for SimConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.0.local_addr().ok(),
            remote_addr: self.0.peer_addr().ok(),
        }
    }
}

impl AsyncRead for SimConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The connections accepted on `port` of the current simulated host.
pub fn incoming(port: u16) -> impl futures_util::Stream<Item = io::Result<SimConn>> + Send + 'static {
    futures_util::stream::unfold(None, move |listener: Option<turmoil::net::TcpListener>| async move {
        let listener = match listener {
            Some(l) => l,
            None => match turmoil::net::TcpListener::bind(("0.0.0.0", port)).await {
                Ok(l) => l,
                Err(e) => return Some((Err(e), None)),
            },
        };
        let conn = listener.accept().await.map(|(s, _)| SimConn(s));
        Some((conn, Some(listener)))
    })
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<turmoil::net::TcpStream>>> + Send>>;

/// A tonic connector over turmoil's TCP: `http://host:port` dials `host` by its
/// simulated name.
pub fn connector(
) -> impl tower::Service<Uri, Response = TokioIo<turmoil::net::TcpStream>, Error = io::Error, Future = Connecting>
       + Clone
       + Send
       + 'static {
    tower::service_fn(|uri: Uri| -> Connecting {
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_owned();
            let port = uri.port_u16().unwrap_or(80);
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(TokioIo::new(stream))
        })
    })
}
