//! The lab's built-in service: what synwall (or the kernel's listener) fronts. It reads a
//! request head, answers [`REPLY`], and closes, so a legit client knows it got all the way in.
//!
//! The calling thread takes connections from whatever [`Acceptor`] it is given until the stop
//! flag is raised (checked at least every [`ACCEPT_WAIT`]); each connection gets a thread of
//! its own with bounded read and write timeouts, so a connection that never sends (a forged
//! one) holds up nobody else. At most [`MAX_ACTIVE`] connections are served at once; one more
//! is closed at once and counted as turned away. Every accepted connection is counted, and
//! those from anywhere but the legit clients' address are counted as forged: in the lab, a
//! connection from a spoofed source can only be a forged handshake that got through.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// What every request gets.
pub const REPLY: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nsynwall lab\n";
/// Text a legit client finds in [`REPLY`].
pub const REPLY_MARK: &str = "synwall lab";
/// Connections served at once, at most (a thread each).
pub const MAX_ACTIVE: usize = 512;
/// How long an accept call waits before the stop flag is looked at again.
pub const ACCEPT_WAIT: Duration = Duration::from_millis(50);
/// How long a connection may take to send its request or take the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request head read.
const MAX_REQUEST: usize = 2048;

/// Where connections come from: synwall's [`crate::server::Server`] or a kernel listener.
pub trait Acceptor: Sync {
    /// The next established connection and its peer, waiting at most about [`ACCEPT_WAIT`];
    /// an error ends the service.
    fn next_connection(&self) -> io::Result<Option<(TcpStream, SocketAddr)>>;
}

/// What the service counted; shared with the lab's sampler.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Of those, connections from a source other than the legit clients' address.
    pub forged: AtomicU64,
    /// Replies written in full.
    pub answered: AtomicU64,
    /// Connections closed unanswered because [`MAX_ACTIVE`] were being served.
    pub turned_away: AtomicU64,
}

/// Serves until `stop` is raised or `acceptor` fails; `legit` is the legit clients' address.
pub fn run(
    acceptor: &dyn Acceptor,
    legit: IpAddr,
    counters: &ServiceCounters,
    stop: &AtomicBool,
) -> io::Result<()> {
    let active = &AtomicUsize::new(0);
    let count = |counter: &AtomicU64| counter.fetch_add(1, Ordering::Relaxed);
    // The scope waits for the connections being served (each at most two I/O timeouts).
    thread::scope(|scope| {
        while !stop.load(Ordering::Relaxed) {
            let Some((stream, peer)) = acceptor.next_connection()? else {
                continue;
            };
            count(&counters.accepted);
            if peer.ip() != legit {
                count(&counters.forged);
            }
            if active.fetch_add(1, Ordering::Relaxed) >= MAX_ACTIVE {
                active.fetch_sub(1, Ordering::Relaxed);
                count(&counters.turned_away);
                continue;
            }
            let served = thread::Builder::new().spawn_scoped(scope, move || {
                if answer(stream).is_ok() {
                    count(&counters.answered);
                }
                active.fetch_sub(1, Ordering::Relaxed);
            });
            if served.is_err() {
                active.fetch_sub(1, Ordering::Relaxed);
                count(&counters.turned_away);
            }
        }
        Ok(())
    })
}

/// Reads the request head (to the blank line, EOF or [`MAX_REQUEST`] bytes), writes the
/// reply, closes.
fn answer(mut stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut request = [0u8; MAX_REQUEST];
    let mut length = 0;
    while length < request.len() {
        let read = stream.read(&mut request[length..])?;
        length += read;
        if read == 0 || request[..length].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    stream.write_all(REPLY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};
    use std::sync::Mutex;

    /// Hands out the connections of a loopback listener, then reports nothing.
    struct Loopback(Mutex<TcpListener>);

    impl Acceptor for Loopback {
        fn next_connection(&self) -> io::Result<Option<(TcpStream, SocketAddr)>> {
            let listener = self.0.lock().unwrap();
            match listener.accept() {
                Ok(connection) => Ok(Some(connection)),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(1));
                    Ok(None)
                }
                Err(error) => Err(error),
            }
        }
    }

    #[test]
    fn test_answers_and_counts_by_source() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = Loopback(Mutex::new(listener));
        let counters = ServiceCounters::default();
        let stop = AtomicBool::new(false);
        // Loopback is "forged" here: the legit address is another one.
        let legit: IpAddr = Ipv4Addr::new(198, 18, 0, 2).into();
        thread::scope(|scope| {
            let service = scope.spawn(|| run(&acceptor, legit, &counters, &stop));
            for _ in 0..3 {
                let mut client = TcpStream::connect(address).unwrap();
                client.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                let mut reply = Vec::new();
                client.read_to_end(&mut reply).unwrap();
                assert_eq!(reply, REPLY);
            }
            stop.store(true, Ordering::Relaxed);
            service.join().unwrap().unwrap();
        });
        assert_eq!(counters.accepted.load(Ordering::Relaxed), 3);
        assert_eq!(counters.forged.load(Ordering::Relaxed), 3);
        assert_eq!(counters.answered.load(Ordering::Relaxed), 3);
        assert!(String::from_utf8_lossy(REPLY).contains(REPLY_MARK));
    }
}
