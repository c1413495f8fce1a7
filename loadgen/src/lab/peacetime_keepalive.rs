//! The closed-loop peacetime client ([`keepalive`]): a few persistent connections, each
//! sending its next request as soon as the reply to the last is complete, counting requests
//! per second and timing each.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

use crate::lab::peacetime::MAX_REPLY;
use crate::lab::peacetime_client::{EVENTS, Latencies, Needle, READ_CHUNK, poll_events};
use crate::lab::report::{FailureCounts, Percentiles};
use crate::lab::service::{head_length, header_values};
use crate::lab::slots::Slots;
use crate::legit::Failure;

/// What [`keepalive`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepaliveConfig {
    pub target: SocketAddr,
    /// Persistent connections, each with one request at a time; positive.
    pub connections: usize,
    /// How long requests are sent.
    pub duration: Duration,
    /// For connect(), and for each reply.
    pub timeout: Duration,
    /// An HTTP/1.1 request that keeps the connection open, e.g.
    /// `GET / HTTP/1.1\r\nHost: lab\r\n\r\n`.
    pub request: Vec<u8>,
    /// Text each reply must contain.
    pub expect: Vec<u8>,
}

/// What a closed-loop run came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeepaliveReport {
    /// Connections established.
    pub connections: usize,
    /// Requests answered in full, with the expected text.
    pub requests: u64,
    pub requests_per_s: f64,
    /// From sending a request to the end of its reply.
    pub latency_us: Option<Percentiles>,
    /// Connections that failed: to connect, or later (reset or closed early as `reset`, no
    /// reply in time, a reply without the expected text or without a `Content-Length`).
    pub failures: FailureCounts,
    /// From the first request to the end of the run.
    pub elapsed_s: f64,
}

/// Keeps `config.connections` connections busy for `config.duration`, each sending the next
/// request as soon as the reply to the last one is complete (framed by its `Content-Length`);
/// requests still unanswered at the end are not counted. A connection that fails is counted
/// and not replaced.
pub fn keepalive(config: &KeepaliveConfig) -> io::Result<KeepaliveReport> {
    if config.connections == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "at least one connection is needed",
        ));
    }
    let mut failures = FailureCounts::default();
    let streams = connect_all(config, &mut failures)?;
    let opened = streams.len();
    let mut run = ClosedLoop::new(config, opened, failures)?;
    let origin = Instant::now();
    run.register(streams, origin)?;
    run.until(origin + config.duration)?;
    let elapsed = origin.elapsed().min(config.duration).as_secs_f64();
    Ok(KeepaliveReport {
        connections: opened,
        requests: run.requests,
        requests_per_s: if elapsed > 0.0 {
            run.requests as f64 / elapsed
        } else {
            0.0
        },
        latency_us: run.latency.percentiles(),
        failures: run.failures,
        elapsed_s: elapsed,
    })
}

/// Opens `config.connections` connections, each within the timeout, and makes them
/// non-blocking; a connection that fails is counted in `failures`.
fn connect_all(
    config: &KeepaliveConfig,
    failures: &mut FailureCounts,
) -> io::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        match std::net::TcpStream::connect_timeout(&config.target, config.timeout) {
            Ok(stream) => {
                stream.set_nonblocking(true)?;
                streams.push(TcpStream::from_std(stream));
            }
            Err(error) => Failure::connecting(&error).count(failures),
        }
    }
    Ok(streams)
}

/// The state of a closed-loop run.
struct ClosedLoop<'a> {
    config: &'a KeepaliveConfig,
    poll: Poll,
    clients: Slots<KeptConnection>,
    expect: Needle,
    chunk: [u8; READ_CHUNK],
    latency: Latencies,
    /// Requests answered in full.
    requests: u64,
    failures: FailureCounts,
}

impl<'a> ClosedLoop<'a> {
    /// A run with room for `opened` connections, counting on from `failures`.
    fn new(
        config: &'a KeepaliveConfig,
        opened: usize,
        failures: FailureCounts,
    ) -> io::Result<ClosedLoop<'a>> {
        Ok(ClosedLoop {
            config,
            poll: Poll::new()?,
            clients: Slots::new(opened),
            expect: Needle::new(&config.expect),
            chunk: [0; READ_CHUNK],
            latency: Latencies::new(),
            requests: 0,
            failures,
        })
    }

    /// Takes in `streams`, each about to send its first request at `origin`.
    fn register(&mut self, streams: Vec<TcpStream>, origin: Instant) -> io::Result<()> {
        for stream in streams {
            let client = KeptConnection {
                stream,
                sent: 0,
                sent_at: origin,
                received: Vec::new(),
            };
            let Ok((token, client)) = self.clients.insert(client, origin + self.config.timeout)
            else {
                unreachable!("a slot for every connection");
            };
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll
                .registry()
                .register(&mut client.stream, token, interest)?;
        }
        Ok(())
    }

    /// Sends requests and reads replies until `end`, or until no connection is left; a
    /// connection without its reply in time is counted and dropped.
    fn until(&mut self, end: Instant) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS);
        while self.clients.len() > 0 && Instant::now() < end {
            let wake = self
                .clients
                .next_deadline()
                .map_or(end, |deadline| deadline.min(end));
            poll_events(&mut self.poll, &mut events, wake)?;
            for event in &events {
                self.advance(event.token(), end);
            }
            while self.clients.pop_expired(Instant::now()).is_some() {
                Failure::ReplyTimeout.count(&mut self.failures);
            }
        }
        Ok(())
    }

    /// Takes the connection under `token` as far as its socket allows, one request after
    /// another; a reply completed at `end` or later ends it.
    fn advance(&mut self, token: Token, end: Instant) {
        while let Some(client) = self.clients.get_mut(token) {
            match client.advance(&self.config.request, &self.expect, &mut self.chunk) {
                Ok(false) => break,
                Ok(true) => {
                    let now = Instant::now();
                    self.latency.record(now - client.sent_at);
                    self.requests += 1;
                    if now >= end {
                        self.clients.remove(token);
                        break;
                    }
                    client.sent = 0;
                    client.sent_at = now;
                    self.clients.set_deadline(token, now + self.config.timeout);
                }
                Err(failure) => {
                    failure.count(&mut self.failures);
                    self.clients.remove(token);
                }
            }
        }
    }
}

/// One connection of a closed-loop run.
struct KeptConnection {
    stream: TcpStream,
    /// Bytes of the current request out.
    sent: usize,
    sent_at: Instant,
    /// The reply so far.
    received: Vec<u8>,
}

impl KeptConnection {
    /// Sends the request and reads its reply as far as the socket allows: `true` once the
    /// reply is complete (with the expected text), `false` while the socket would block.
    fn advance(
        &mut self,
        request: &[u8],
        expect: &Needle,
        chunk: &mut [u8],
    ) -> Result<bool, Failure> {
        let exchanging = |error: &io::Error| match error.kind() {
            io::ErrorKind::WouldBlock => Ok(false),
            _ => Err(Failure::replying(error)),
        };
        while self.sent < request.len() {
            match self.stream.write(&request[self.sent..]) {
                Ok(written) => self.sent += written,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return exchanging(&error),
            }
        }
        loop {
            if let Some(length) = reply_length(&self.received)? {
                let mut matched = 0;
                expect.advance(&mut matched, &self.received[..length]);
                if !expect.is_found(matched) {
                    return Err(Failure::BadReply);
                }
                self.received.drain(..length);
                return Ok(true);
            }
            match self.stream.read(chunk) {
                // Closed before the reply was complete.
                Ok(0) => return Err(Failure::Reset),
                Ok(read) => self.received.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return exchanging(&error),
            }
        }
    }
}

/// The length of the HTTP reply at the start of `bytes` once it is all there; a reply
/// without a `Content-Length`, or longer than [`MAX_REPLY`], is a bad one.
fn reply_length(bytes: &[u8]) -> Result<Option<usize>, Failure> {
    let Some(head) = head_length(bytes) else {
        return if bytes.len() < MAX_REPLY {
            Ok(None)
        } else {
            Err(Failure::BadReply)
        };
    };
    let body = header_values(&bytes[..head], "content-length")
        .next()
        .and_then(|value| std::str::from_utf8(value).ok()?.parse::<usize>().ok())
        .ok_or(Failure::BadReply)?;
    match head.checked_add(body) {
        Some(length) if length <= MAX_REPLY => Ok((bytes.len() >= length).then_some(length)),
        _ => Err(Failure::BadReply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_reply_length() {
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody";
        assert_eq!(reply_length(reply), Ok(Some(reply.len())));
        assert_eq!(reply_length(&reply[..reply.len() - 1]), Ok(None));
        assert_eq!(reply_length(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert_eq!(
            reply_length(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(Failure::BadReply)
        );
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n";
        assert_eq!(reply_length(huge), Err(Failure::BadReply));
    }
}
