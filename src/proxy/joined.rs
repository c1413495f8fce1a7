//! A joined connection: the client and its upstream, a buffer per direction, the half-closes
//! passed on and the resets that end it.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry};
use socket2::SockRef;

use super::event_loop::{Failure, Tally, Turn, Which};
use super::upstream::Stream;
use super::{BUFFER_LEN, Handover};

/// Reads per direction per turn of a connection: at most 16 × 16 KiB move before the loop
/// serves the others, and comes back to this one without waiting for an event.
pub(super) const READS_PER_TURN: usize = 16;
/// One socket of a connection, and what the last events said about it. mio is edge-triggered: a
/// readiness stays set until an operation shows the socket drained or full, and the next event sets
/// it again. Both sockets are registered once for both interests, so no re-registration is needed
/// when the buffers fill and drain.
///
/// A read that returns fewer bytes than it had room for found the receive queue empty, and a write
/// that takes fewer bytes than it was given found the send buffer full: each clears its readiness
/// without a second system call to see WouldBlock (as tokio does). That is safe on TCP and Unix
/// stream sockets under epoll's edge trigger: bytes arriving after the read, or buffer space freed
/// after a write that ran out of it, raise a new event. A peer's FIN that arrived before the read
/// raises none: the read takes the last bytes and stops short of it, and only the next read returns
/// end-of-file. So once an event has said the peer closed its half, readability stays set, as tokio
/// keeps its read-closed readiness. Per keep-alive request, that saves the two reads that only
/// returned WouldBlock.
pub(super) struct Side {
    stream: Stream,
    readable: bool,
    writable: bool,
    /// An event said the peer closed its half (or the socket failed): final, so a short read
    /// no longer clears `readable`: the end-of-file, or the error, is still to be read.
    read_closed: bool,
}

impl Side {
    pub(super) fn new(stream: Stream) -> Side {
        Side {
            stream,
            readable: false,
            writable: false,
            read_closed: false,
        }
    }

    /// Sets the readiness `event` reports; a pending socket error (a reset) ends the
    /// connection at once, even when no operation is waiting for this side.
    pub(super) fn handle_event(&mut self, event: &Event) -> Result<(), Failure> {
        if event.is_error()
            && let Some(error) = self.stream.take_error()?
        {
            return Err(Failure::Broken(error));
        }
        self.read_closed |= event.is_read_closed() || event.is_error();
        self.readable |= event.is_readable() || self.read_closed;
        self.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
        Ok(())
    }
}

/// Bytes on their way from one side to the other.
pub(super) struct Direction {
    buffer: Buffer,
    /// The sending side closed its half (a read returned 0).
    eof: bool,
    /// The receiving side's sending half is closed (after `eof`, once the buffer drained).
    shut: bool,
}

impl Direction {
    pub(super) fn new() -> Direction {
        Direction {
            buffer: Buffer::new(),
            eof: false,
            shut: false,
        }
    }

    /// Moves bytes from `from` to `to` until every operation would block or the budget runs
    /// out; adds the bytes written to `moved`. `to_open` says whether `to` is connected (a
    /// half-close waits for it). Returns whether the budget ran out.
    fn pump(
        &mut self,
        from: &mut Side,
        to: &mut Side,
        to_open: bool,
        moved: &mut u64,
    ) -> io::Result<bool> {
        for _ in 0..READS_PER_TURN {
            while to.writable && !self.buffer.is_empty() {
                let pending = self.buffer.pending();
                match (&to.stream).write(pending) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(written) => {
                        // A short write filled the send buffer (see `Side`).
                        to.writable = written == pending.len();
                        self.buffer.consume(written);
                        *moved += written as u64;
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => to.writable = false,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
            if self.eof && self.buffer.is_empty() && !self.shut && to_open {
                to.stream.shutdown_write()?;
                self.shut = true;
            }
            if !from.readable || self.eof || self.buffer.is_full() {
                return Ok(false);
            }
            let room = self.buffer.room();
            match (&from.stream).read(room) {
                Ok(0) => self.eof = true,
                Ok(read) => {
                    // A short read emptied the receive queue (see `Side`).
                    from.readable = read == room.len() || from.read_closed;
                    self.buffer.fill(read);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => from.readable = false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(true)
    }
}

/// A client joined to its upstream connection.
pub(super) struct Joined {
    client: Side,
    upstream: Side,
    to_upstream: Direction,
    to_client: Direction,
    /// While the upstream connect is under way: when to give up.
    pub(super) connect_deadline: Option<Instant>,
    /// Queued in the loop's `busy` list.
    pub(super) busy: bool,
}

impl Joined {
    /// Starts the upstream connect, queues the PROXY protocol header, registers both sockets
    /// under the tokens of slot `index`. On failure the client is reset.
    pub(super) fn open(
        handover: Handover,
        registry: &Registry,
        index: usize,
    ) -> Result<Joined, Failure> {
        let Handover { connection, config } = handover;
        let client = connection.stream;
        let upstream = client
            .set_nonblocking(true)
            .map_err(Failure::Broken)
            .and_then(|()| config.upstream.connect().map_err(Failure::Upstream));
        let upstream = match upstream {
            Ok(upstream) => upstream,
            Err(failure) => {
                reset(&client);
                return Err(failure);
            }
        };
        let mut joined = Joined {
            client: Side::new(Stream::Tcp(TcpStream::from_std(client))),
            upstream: Side::new(upstream),
            to_upstream: Direction::new(),
            to_client: Direction::new(),
            connect_deadline: Some(Instant::now() + config.connect_timeout),
            busy: false,
        };
        let header = config.proxy_protocol.emit(
            connection.peer,
            connection.local,
            joined.to_upstream.buffer.room(),
        );
        joined.to_upstream.buffer.fill(header);
        let both = Interest::READABLE | Interest::WRITABLE;
        let registered = registry
            .register(&mut joined.client.stream, Which::Client.token(index), both)
            .and_then(|()| {
                registry.register(
                    &mut joined.upstream.stream,
                    Which::Upstream.token(index),
                    both,
                )
            });
        if let Err(error) = registered {
            joined.reset();
            return Err(Failure::Broken(error));
        }
        Ok(joined)
    }

    pub(super) fn is_connecting(&self) -> bool {
        self.connect_deadline.is_some()
    }

    /// Takes note of an event on one side: the end of the upstream connect, or a readiness.
    pub(super) fn handle_event(&mut self, which: Which, event: &Event) -> Result<(), Failure> {
        match which {
            Which::Upstream if self.is_connecting() => {
                self.poll_connect()?;
                // The event that ends the connect may also say the upstream has closed its
                // half already (a greeting and a FIN right after accepting).
                if self.is_connecting() {
                    Ok(())
                } else {
                    self.upstream.handle_event(event)
                }
            }
            Which::Upstream => self.upstream.handle_event(event),
            Which::Client => self.client.handle_event(event),
        }
    }

    /// Finds out whether the upstream connect has ended, and how (the steps of
    /// [`mio::net::TcpStream::connect`]).
    fn poll_connect(&mut self) -> Result<(), Failure> {
        let stream = &self.upstream.stream;
        if let Some(error) = stream.take_error().map_err(Failure::Upstream)? {
            return Err(Failure::Upstream(error));
        }
        match stream.check_connected() {
            Ok(_) => {
                self.connect_deadline = None;
                self.upstream.readable = true;
                self.upstream.writable = true;
                Ok(())
            }
            Err(error)
                if error.kind() == io::ErrorKind::NotConnected
                    || error.raw_os_error() == Some(libc::EINPROGRESS) =>
            {
                Ok(())
            }
            Err(error) => Err(Failure::Upstream(error)),
        }
    }

    /// Moves what can move both ways.
    pub(super) fn drive(&mut self, tally: &mut Tally) -> Result<Turn, Failure> {
        let upstream_open = !self.is_connecting();
        let up = self.to_upstream.pump(
            &mut self.client,
            &mut self.upstream,
            upstream_open,
            &mut tally.to_upstream,
        )?;
        let down = self.to_client.pump(
            &mut self.upstream,
            &mut self.client,
            true,
            &mut tally.to_clients,
        )?;
        Ok(if self.to_upstream.shut && self.to_client.shut {
            Turn::Done
        } else if up || down {
            Turn::Busy
        } else {
            Turn::Waiting
        })
    }

    /// Closes both sides with a RST. (Closing a socket removes it from epoll: no deregister.)
    pub(super) fn reset(self) {
        reset(&self.client.stream);
        reset(&self.upstream.stream);
    }
}

/// Makes the close of `stream` a RST (SO_LINGER 0) instead of a FIN; the caller drops it. A
/// Unix socket has no RST: its peer reads end-of-file, or ECONNRESET when it had bytes unread.
pub(super) fn reset(stream: &impl AsFd) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// A fixed buffer of bytes read from one side and not yet written to the other.
pub(super) struct Buffer {
    bytes: Box<[u8]>,
    /// `bytes[start..end]` are pending.
    start: usize,
    end: usize,
}

impl Buffer {
    pub(super) fn new() -> Buffer {
        Buffer {
            bytes: vec![0; BUFFER_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn is_full(&self) -> bool {
        self.end - self.start == self.bytes.len()
    }

    /// `written` pending bytes are gone.
    fn consume(&mut self, written: usize) {
        self.start += written;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// The free space after the pending bytes, moved to the front first when the space is at
    /// the end only.
    fn room(&mut self) -> &mut [u8] {
        if self.end == self.bytes.len() && self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.bytes[self.end..]
    }

    /// `read` bytes were written into [`Buffer::room`].
    fn fill(&mut self, read: usize) {
        self.end += read;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_buffer_moves_pending_bytes_to_make_room() {
        let mut buffer = Buffer::new();
        let room = buffer.room();
        assert_eq!(room.len(), BUFFER_LEN);
        room.fill(7);
        buffer.fill(BUFFER_LEN);
        assert!(buffer.is_full());
        buffer.consume(BUFFER_LEN - 3);
        assert_eq!(buffer.pending(), [7, 7, 7]);
        assert_eq!(buffer.room().len(), BUFFER_LEN - 3);
        assert_eq!(buffer.pending(), [7, 7, 7]);
        buffer.consume(3);
        assert!(buffer.is_empty());
        assert_eq!(buffer.room().len(), BUFFER_LEN);
    }

    /// The bound the module doc states.
    #[test]
    fn test_memory_per_connection() {
        let state = std::mem::size_of::<Option<Joined>>();
        assert!(state <= 200, "{state} bytes of state per connection");
        assert_eq!(2 * BUFFER_LEN, 32 * 1024);
    }
}
