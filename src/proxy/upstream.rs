//! Where the proxy joins its clients: a TCP address, or a Unix stream socket on the same host,
//! and the one stream type the event loops drive for either (and for the clients).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{self, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

/// The service the proxy joins each client to.
///
/// A Unix socket (`unix:/run/service.sock` in the settings) serves a service on the same host
/// without a second TCP connection per client on the loopback: no handshake, no segments, no
/// TIME-WAIT; in the lab about half again as many new connections per second as through a TCP
/// upstream (`bench/peacetime.sh repair-unix repair`, README). The PROXY protocol header still
/// carries the client's TCP addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    Tcp(SocketAddr),
    Unix(Arc<Path>),
}

impl Upstream {
    /// The settings' prefix of a Unix socket's path.
    pub const UNIX_PREFIX: &'static str = "unix:";

    /// A Unix socket at `path`.
    pub fn unix(path: impl AsRef<Path>) -> Upstream {
        Upstream::Unix(Arc::from(path.as_ref()))
    }

    /// Starts a non-blocking connect (TCP_NODELAY on a TCP one). A Unix socket connects at
    /// once or fails: its accept queue full is `WouldBlock`, which the proxy counts as an
    /// upstream failure where a TCP upstream would drop the SYN and let the client wait.
    pub(super) fn connect(&self) -> io::Result<Stream> {
        match self {
            Upstream::Tcp(address) => {
                let stream = TcpStream::connect(*address)?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
            Upstream::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
        }
    }

    /// A blocking connect within `timeout`, dropped at once: whether the upstream accepts
    /// connections now (for `synwall check-config`).
    pub fn probe(&self, timeout: std::time::Duration) -> io::Result<()> {
        match self {
            Upstream::Tcp(address) => net::TcpStream::connect_timeout(address, timeout).map(drop),
            Upstream::Unix(path) => std::os::unix::net::UnixStream::connect(path).map(drop),
        }
    }
}

impl From<SocketAddr> for Upstream {
    fn from(address: SocketAddr) -> Upstream {
        Upstream::Tcp(address)
    }
}

/// As the settings spell it: `HOST:PORT`, or `unix:` and the path.
impl fmt::Display for Upstream {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Tcp(address) => write!(out, "{address}"),
            Upstream::Unix(path) => write!(out, "{}{}", Upstream::UNIX_PREFIX, path.display()),
        }
    }
}

/// A client's socket or an upstream's: the operations of a joined connection on either kind.
pub(super) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// `$call` on the socket inside `$stream`, `$inner` naming it, whichever its kind.
macro_rules! either {
    ($stream:expr, $inner:ident => $call:expr) => {
        match $stream {
            Stream::Tcp($inner) => $call,
            Stream::Unix($inner) => $call,
        }
    };
}

impl Stream {
    pub(super) fn take_error(&self) -> io::Result<Option<io::Error>> {
        either!(self, stream => stream.take_error())
    }

    /// Whether a connect has completed (`NotConnected` or `EINPROGRESS` while under way).
    pub(super) fn check_connected(&self) -> io::Result<()> {
        either!(self, stream => stream.peer_addr().map(drop))
    }

    pub(super) fn shutdown_write(&self) -> io::Result<()> {
        either!(self, stream => stream.shutdown(net::Shutdown::Write))
    }
}

impl Read for &Stream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        either!(self, stream => (&*stream).read(buffer))
    }
}

impl Write for &Stream {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        either!(self, stream => (&*stream).write(bytes))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        either!(self, stream => stream.as_fd())
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        either!(self, stream => stream.register(registry, token, interests))
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        either!(self, stream => stream.reregister(registry, token, interests))
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        either!(self, stream => stream.deregister(registry))
    }
}
