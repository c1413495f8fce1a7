//! The proxy end to end on loopback: bytes both ways, half-closes, resets, upstream failures,
//! the PROXY protocol header, the connection limit, reconfiguration and stop; and to upstreams
//! on Unix sockets.

use std::io::{Read, Write};
use std::net::{self, IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream as StdTcpStream};
use std::os::unix::net::{UnixListener, UnixStream as StdUnixStream};
use std::thread::JoinHandle;
use std::time::Instant;

use socket2::{Domain, Socket, Type};

use super::*;
use crate::handoff::{CompletedBy, NegotiatedOptions};
use crate::listener::HandshakePath;
use crate::own_listener::{OwnListenerCounters, OwnListenerSockets, OwnListeners};

/// How long any awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

fn config(upstream: impl Into<Upstream>) -> ProxyConfig {
    ProxyConfig {
        upstream: upstream.into(),
        connect_timeout: Duration::from_secs(5),
        max_connections: 1024,
        threads: 1,
        proxy_protocol: ProxyProtocol::Off,
    }
}

/// A proxy serving on its own thread, fed with the server ends of loopback pairs, and with
/// [`Harness::accepting`] also accepting from a listening socket of its own (as from the
/// server's own listening sockets, [`Proxy::run`]).
struct Harness {
    proxy: Arc<Proxy>,
    feed: Sender<Connection>,
    /// Where the test's clients connect; what it accepts goes to the proxy.
    front: TcpListener,
    /// The proxy's own listening socket and what it counts, with [`Harness::accepting`].
    own: Option<(SocketAddr, Arc<OwnListenerCounters>)>,
    stop: Shutdown,
    serving: Option<JoinHandle<io::Result<()>>>,
}

impl Harness {
    fn start(config: ProxyConfig) -> Harness {
        Harness::serving(config, None)
    }

    /// A proxy whose event loops also accept from a listening socket on loopback.
    fn accepting(config: ProxyConfig) -> Harness {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let counters = Arc::new(OwnListenerCounters::default());
        let own = OwnListeners::bind(&[local], 64)
            .unwrap()
            .into_sockets(Arc::clone(&counters));
        let address = own.listeners[0].local_addr().unwrap();
        let mut harness = Harness::serving(config, Some(own));
        harness.own = Some((address, counters));
        harness
    }

    fn serving(config: ProxyConfig, own: Option<OwnListenerSockets>) -> Harness {
        let proxy = Arc::new(Proxy::new(config));
        let stop = Shutdown::default();
        let (feed, connections) = crossbeam_channel::unbounded::<Connection>();
        let serving = thread::spawn({
            let (proxy, stop) = (Arc::clone(&proxy), stop.clone());
            // The feed lives as long as the harness: only the stop ends the wait.
            let next = move |stop: &Shutdown| {
                crossbeam_channel::select! {
                    recv(connections) -> connection => Ok(connection.ok()),
                    recv(stop.signal()) -> _ => Ok(None),
                }
            };
            move || proxy.serve_with(own.as_ref(), next, &stop)
        });
        Harness {
            proxy,
            feed,
            front: TcpListener::bind("127.0.0.1:0").unwrap(),
            own: None,
            stop,
            serving: Some(serving),
        }
    }

    /// A client of the proxy's own listening socket ([`Harness::accepting`]).
    fn connect_own(&self) -> StdTcpStream {
        let (address, _) = self.own.as_ref().expect("a harness that accepts");
        let client = StdTcpStream::connect(address).unwrap();
        client.set_read_timeout(Some(DEADLINE)).unwrap();
        client
    }

    /// What the proxy accepted from its own listening socket.
    fn own_accepted(&self) -> u64 {
        let (_, counters) = self.own.as_ref().expect("a harness that accepts");
        load(&counters.accepted)
    }

    /// A client whose connection the proxy serves: the test's end of a loopback pair.
    #[track_caller]
    fn connect(&self) -> StdTcpStream {
        let local = self.front.local_addr().unwrap();
        let client = StdTcpStream::connect(local).unwrap();
        let (stream, peer) = self.front.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let connection = Connection {
            stream,
            peer,
            local,
            completed_by: CompletedBy::Synwall(HandshakePath::Queue),
            options: NegotiatedOptions {
                mss: 1460,
                window_scale: None,
                sack_permitted: true,
                timestamps: true,
            },
            handshake_duration: None,
            established_at: Instant::now(),
        };
        self.feed.send(connection).unwrap();
        client.set_read_timeout(Some(DEADLINE)).unwrap();
        client
    }

    fn counters(&self) -> Arc<ProxyCounters> {
        self.proxy.counters()
    }

    /// Stops serving; checks it ended well and left no connection or slot behind.
    #[track_caller]
    fn finish(mut self) {
        self.stop.trigger();
        let served = self.serving.take().unwrap().join().unwrap();
        assert!(served.is_ok(), "{served:?}");
        assert_eq!(self.counters().active.load(Ordering::Relaxed), 0);
        assert_eq!(self.proxy.slots.taken(), 0);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.trigger();
        if let Some(serving) = self.serving.take() {
            let _ = serving.join();
        }
    }
}

/// Polls `condition` until it holds; fails the test after [`DEADLINE`].
#[track_caller]
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// An upstream on loopback TCP that takes `connections` connections and runs `serve` on each;
/// see [`serve_each`].
fn upstream<T: Send + 'static>(
    connections: usize,
    serve: impl Fn(StdTcpStream) -> T + Send + Sync + 'static,
) -> (SocketAddr, JoinHandle<Vec<T>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let accept = move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream
    };
    (address, serve_each(connections, accept, serve))
}

/// An upstream on a Unix socket in a temporary directory (gone with the returned guard) that
/// takes `connections` connections and runs `serve` on each; see [`serve_each`].
fn unix_upstream<T: Send + 'static>(
    connections: usize,
    serve: impl Fn(StdUnixStream) -> T + Send + Sync + 'static,
) -> (Upstream, tempfile::TempDir, JoinHandle<Vec<T>>) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("upstream.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let accept = move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream
    };
    let served = serve_each(connections, accept, serve);
    (Upstream::unix(path), directory, served)
}

/// Accepts `connections` streams with `accept` and runs `serve` on each, on a thread of its
/// own; joining the handle gives what each returned, in accept order.
fn serve_each<S: Send + 'static, T: Send + 'static>(
    connections: usize,
    accept: impl Fn() -> S + Send + 'static,
    serve: impl Fn(S) -> T + Send + Sync + 'static,
) -> JoinHandle<Vec<T>> {
    let serve = Arc::new(serve);
    thread::spawn(move || {
        let served: Vec<_> = (0..connections)
            .map(|_| {
                let stream = accept();
                let serve = Arc::clone(&serve);
                thread::spawn(move || serve(stream))
            })
            .collect();
        served.into_iter().map(|s| s.join().unwrap()).collect()
    })
}

/// Echoes until end-of-file, then closes its half.
fn echo(mut stream: StdTcpStream) {
    io::copy(&mut stream.try_clone().unwrap(), &mut stream).unwrap();
    stream.shutdown(net::Shutdown::Write).unwrap();
}

/// Reads until end-of-file or an error; returns what came and how it ended.
fn read_all(stream: &mut impl Read) -> (Vec<u8>, io::Result<()>) {
    let mut received = Vec::new();
    let ended = stream.read_to_end(&mut received).map(drop);
    (received, ended)
}

/// An address on which nothing listens (a socket bound there and not listening keeps
/// the port): connects to it are refused.
fn refusing_address() -> (Socket, SocketAddr) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let address = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, address)
}

#[track_caller]
fn assert_reset(result: io::Result<()>) {
    let error = result.expect_err("expected a reset, the stream ended cleanly");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
}

/// FNV-1a, to compare megabytes without keeping them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// `len` bytes from a xorshift generator seeded with `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn test_bytes_intact_both_ways() {
    const LEN: usize = 4 << 20;
    let (upstream, served) = upstream(1, echo);
    let harness = Harness::start(config(upstream));
    let mut client = harness.connect();
    let sent = noise(7, LEN);
    let mut expected = Fnv::new();
    expected.update(&sent);
    let sending = thread::spawn({
        let mut client = client.try_clone().unwrap();
        move || {
            client.write_all(&sent).unwrap();
            client.shutdown(net::Shutdown::Write).unwrap();
        }
    });
    let mut received = Fnv::new();
    let mut received_len = 0;
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let n = client.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        received.update(&chunk[..n]);
        received_len += n;
    }
    sending.join().unwrap();
    served.join().unwrap();
    assert_eq!((received_len, received), (LEN, expected));
    let counters = harness.counters();
    wait_until("the connection ended", || {
        counters.active.load(Ordering::Relaxed) == 0
    });
    assert_eq!(load(&counters.proxied), 1);
    assert_eq!(load(&counters.bytes_to_upstream), LEN as u64);
    assert_eq!(load(&counters.bytes_to_clients), LEN as u64);
    harness.finish();
}

#[test]
fn test_many_concurrent_connections_one_loop() {
    const CONNECTIONS: usize = 200;
    let (upstream, served) = upstream(CONNECTIONS, echo);
    let harness = Harness::start(config(upstream));
    let clients = (0..CONNECTIONS).map(|_| harness.connect()).collect();
    check_echoed(&harness, clients, served);
    harness.finish();
}

/// Each of `clients` sends its own message and closes its half; each must get it back whole
/// from the echoing upstreams `served`, every connection proxied and ended.
#[track_caller]
fn check_echoed(harness: &Harness, mut clients: Vec<StdTcpStream>, served: JoinHandle<Vec<()>>) {
    let message = |i: usize| format!("connection {i} ").repeat(100).into_bytes();
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(&message(i)).unwrap();
        client.shutdown(net::Shutdown::Write).unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let (received, ended) = read_all(client);
        ended.unwrap();
        assert_eq!(received, message(i), "connection {i}");
    }
    served.join().unwrap();
    let counters = harness.counters();
    wait_until("every connection ended", || {
        counters.active.load(Ordering::Relaxed) == 0
    });
    assert_eq!(load(&counters.proxied), clients.len() as u64);
    assert_eq!(load(&counters.upstream_failures), 0);
}

#[test]
fn test_half_close_client_first_still_gets_the_reply() {
    let (upstream, served) = upstream(1, |mut stream| {
        let (request, ended) = read_all(&mut stream);
        ended.unwrap();
        write!(stream, "got {} bytes", request.len()).unwrap();
    });
    let harness = Harness::start(config(upstream));
    let mut client = harness.connect();
    client.write_all(b"hello").unwrap();
    client.shutdown(net::Shutdown::Write).unwrap();
    let (reply, ended) = read_all(&mut client);
    ended.unwrap();
    assert_eq!(reply, b"got 5 bytes");
    served.join().unwrap();
    harness.finish();
}

/// Upstreams that greet and close their half right after accepting, many at once, still get
/// each client's request. The greeting and the FIN may reach the proxy together, even with the
/// event that ends its connect: the end-of-file must still follow the greeting to each client.
#[test]
fn test_half_close_upstream_first_still_gets_the_request() {
    const CONNECTIONS: usize = 100;
    let (upstream, served) = upstream(CONNECTIONS, |stream| {
        greet_then_read(stream, |stream| stream.shutdown(net::Shutdown::Write))
    });
    check_upstream_first_half_close(Harness::start(config(upstream)), served, CONNECTIONS);
}

/// An upstream's side of [`check_upstream_first_half_close`]: greets, closes its half with
/// `close_half`, then reads the request to its end.
fn greet_then_read<S: Read + Write>(
    mut stream: S,
    close_half: impl Fn(&S) -> io::Result<()>,
) -> Vec<u8> {
    stream.write_all(b"greeting").unwrap();
    close_half(&stream).unwrap();
    let (request, ended) = read_all(&mut stream);
    ended.unwrap();
    request
}

/// Each of `connections` clients reads its upstream's greeting and end-of-file, then sends its
/// request; each upstream must get it whole ([`greet_then_read`]).
#[track_caller]
fn check_upstream_first_half_close(
    harness: Harness,
    served: JoinHandle<Vec<Vec<u8>>>,
    connections: usize,
) {
    let mut clients: Vec<_> = (0..connections).map(|_| harness.connect()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let (greeting, ended) = read_all(client);
        ended.unwrap();
        assert_eq!(greeting, b"greeting", "connection {i}");
        client.write_all(b"late words").unwrap();
        client.shutdown(net::Shutdown::Write).unwrap();
    }
    assert_eq!(
        served.join().unwrap(),
        vec![b"late words".to_vec(); connections]
    );
    let counters = harness.counters();
    wait_until("every connection ended", || {
        counters.active.load(Ordering::Relaxed) == 0
    });
    assert_eq!(load(&counters.proxied), connections as u64);
    harness.finish();
}

/// A client whose upstream fails: reset, counted as an upstream failure, never proxied.
#[track_caller]
fn assert_upstream_failure_resets_the_client(harness: Harness) {
    let mut client = harness.connect();
    assert_reset(read_all(&mut client).1);
    let counters = harness.counters();
    wait_until("the failure is counted", || {
        load(&counters.upstream_failures) == 1
    });
    assert_eq!(load(&counters.proxied), 0);
    harness.finish();
}

#[test]
fn test_upstream_refused_resets_the_client() {
    let (_refusing, upstream) = refusing_address();
    let harness = Harness::start(config(upstream));
    assert_upstream_failure_resets_the_client(harness);
}

/// The accept queue of the listener on `port` (what /proc/net/tcp says of it).
fn accept_queue(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<_> = line.split_whitespace().collect();
        let listening = fields[1] == local && fields[3] == "0A";
        let (_, queued) = fields[4].split_once(':')?;
        listening.then(|| u64::from_str_radix(queued, 16).unwrap())
    })
}

#[test]
fn test_upstream_not_answering_times_out_and_resets_the_client() {
    // A listener whose accept queue (backlog 0: one connection) is full drops SYNs.
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let upstream = listener.local_addr().unwrap().as_socket().unwrap();
    let _filler = StdTcpStream::connect(upstream).unwrap();
    wait_until("the upstream's accept queue is full", || {
        accept_queue(upstream.port()) == Some(1)
    });
    let harness = Harness::start(ProxyConfig {
        connect_timeout: Duration::from_millis(200),
        ..config(upstream)
    });
    assert_upstream_failure_resets_the_client(harness);
}

#[test]
fn test_upstream_reset_reaches_the_client() {
    let (upstream, served) = upstream(1, |mut stream| {
        let mut request = [0; 5];
        stream.read_exact(&mut request).unwrap();
        reset(&stream);
    });
    let harness = Harness::start(config(upstream));
    let mut client = harness.connect();
    client.write_all(b"hello").unwrap();
    served.join().unwrap();
    assert_reset(read_all(&mut client).1);
    harness.finish();
}

/// A client resets its connection once the proxy has joined it to its upstream.
fn reset_a_connected_client(harness: &Harness) {
    let client = harness.connect();
    let counters = harness.counters();
    wait_until("the upstream is connected", || load(&counters.proxied) == 1);
    reset(&client);
}

#[test]
fn test_client_reset_reaches_the_upstream() {
    let (upstream, served) = upstream(1, |mut stream| read_all(&mut stream).1);
    let harness = Harness::start(config(upstream));
    reset_a_connected_client(&harness);
    let [ended] = served.join().unwrap().try_into().unwrap();
    assert_reset(ended);
    harness.finish();
}

/// Checks that an upstream reading the header with `parse` got the client's addresses, then
/// its bytes.
fn check_proxy_protocol(
    protocol: ProxyProtocol,
    parse: fn(&mut StdTcpStream) -> (SocketAddr, SocketAddr),
) {
    let (upstream, served) = upstream(1, move |mut stream| {
        let (source, destination) = parse(&mut stream);
        let (rest, ended) = read_all(&mut stream);
        ended.unwrap();
        (source, destination, rest)
    });
    let harness = Harness::start(ProxyConfig {
        proxy_protocol: protocol,
        ..config(upstream)
    });
    let mut client = harness.connect();
    client.write_all(b"payload").unwrap();
    client.shutdown(net::Shutdown::Write).unwrap();
    let [(source, destination, rest)] = served.join().unwrap().try_into().unwrap();
    assert_eq!(source, client.local_addr().unwrap());
    assert_eq!(destination, harness.front.local_addr().unwrap());
    assert_eq!(rest, b"payload");
    let counters = harness.counters();
    wait_until("the connection ended", || {
        counters.active.load(Ordering::Relaxed) == 0
    });
    let header = protocol.emit(source, destination, &mut [0; ProxyProtocol::MAX_HEADER_LEN]);
    assert_eq!(
        load(&counters.bytes_to_upstream),
        (header + rest.len()) as u64
    );
    harness.finish();
}

#[test]
fn test_proxy_protocol_v1_header_comes_first() {
    check_proxy_protocol(ProxyProtocol::V1, |stream| {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            let mut byte = [0];
            stream.read_exact(&mut byte).unwrap();
            line.push(byte[0]);
        }
        let line = String::from_utf8(line).unwrap();
        let fields: Vec<&str> = line.trim_end().split(' ').collect();
        let [
            "PROXY",
            "TCP4",
            source,
            destination,
            source_port,
            destination_port,
        ] = fields[..]
        else {
            panic!("not a PROXY TCP4 line: {line:?}");
        };
        (
            format!("{source}:{source_port}").parse().unwrap(),
            format!("{destination}:{destination_port}").parse().unwrap(),
        )
    });
}

#[test]
fn test_proxy_protocol_v2_header_comes_first() {
    check_proxy_protocol(ProxyProtocol::V2, |stream| {
        let mut fixed = [0; 16];
        stream.read_exact(&mut fixed).unwrap();
        assert_eq!(fixed[..12], *b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(fixed[12..14], [0x21, 0x11], "PROXY, TCP over IPv4");
        let len = u16::from_be_bytes([fixed[14], fixed[15]]);
        assert_eq!(len, 12);
        let mut rest = [0; 12];
        stream.read_exact(&mut rest).unwrap();
        let address = |ip: &[u8], port: &[u8]| {
            let ip = Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]);
            SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([port[0], port[1]]))
        };
        (
            address(&rest[0..4], &rest[8..10]),
            address(&rest[4..8], &rest[10..12]),
        )
    });
}

#[test]
fn test_connection_limit_holds_the_next_until_one_ends() {
    // The accept loop holds the second connection until a slot frees.
    check_limit_holds_the_second(false, |harness| {
        assert!(harness.feed.len() <= 1, "more than one connection taken");
        assert_eq!(load(&harness.counters().proxied), 1);
    });
}

/// With `max_connections` 1 (clients of the proxy's own listening socket if `own`): a second
/// client, while the first is open, is not served and satisfies `waiting` for a while; it is
/// served once the first ends.
#[track_caller]
fn check_limit_holds_the_second(own: bool, waiting: impl Fn(&Harness)) {
    let (upstream, served) = upstream(2, echo);
    let limited = ProxyConfig {
        max_connections: 1,
        ..config(upstream)
    };
    let harness = if own {
        Harness::accepting(limited)
    } else {
        Harness::start(limited)
    };
    let connect = |harness: &Harness| {
        if own {
            harness.connect_own()
        } else {
            harness.connect()
        }
    };
    let counters = harness.counters();
    let mut first = connect(&harness);
    first.write_all(b"one").unwrap();
    let mut echoed = [0; 3];
    first.read_exact(&mut echoed).unwrap();
    let mut second = connect(&harness);
    second.write_all(b"two").unwrap();
    // Not a wait for a condition: for a while, nothing may happen.
    let watch_until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < watch_until {
        waiting(&harness);
        assert_eq!(counters.active.load(Ordering::Relaxed), 1);
        thread::sleep(Duration::from_millis(5));
    }
    first.shutdown(net::Shutdown::Write).unwrap();
    read_all(&mut first).1.unwrap();
    second.shutdown(net::Shutdown::Write).unwrap();
    let (received, ended) = read_all(&mut second);
    ended.unwrap();
    assert_eq!(received, b"two");
    served.join().unwrap();
    assert_eq!(load(&counters.proxied), 2);
    harness.finish();
}

#[test]
fn test_reconfigure_applies_to_the_next_connections() {
    let (_refusing, refusing) = refusing_address();
    let (upstream, served) = upstream(1, echo);
    let harness = Harness::start(config(refusing));
    let mut refused = harness.connect();
    assert_reset(read_all(&mut refused).1);
    harness.proxy.reconfigure(config(upstream));
    let mut client = harness.connect();
    client.write_all(b"again").unwrap();
    client.shutdown(net::Shutdown::Write).unwrap();
    let (received, ended) = read_all(&mut client);
    ended.unwrap();
    assert_eq!(received, b"again");
    served.join().unwrap();
    let counters = harness.counters();
    assert_eq!(load(&counters.upstream_failures), 1);
    assert_eq!(load(&counters.proxied), 1);
    harness.finish();
}

#[test]
fn test_stop_resets_open_connections() {
    let (upstream, served) = upstream(1, |mut stream| read_all(&mut stream).1);
    let harness = Harness::start(ProxyConfig {
        threads: 2,
        ..config(upstream)
    });
    let mut client = harness.connect();
    let counters = harness.counters();
    wait_until("the upstream is connected", || load(&counters.proxied) == 1);
    harness.finish();
    assert_reset(read_all(&mut client).1);
    let [ended] = served.join().unwrap().try_into().unwrap();
    assert_reset(ended);
}

/// The v2 PROXY header of a client over IPv4, as an upstream reads it: the client's address.
fn read_proxy_v2_source(stream: &mut impl Read) -> SocketAddr {
    let mut header = [0; 28];
    stream.read_exact(&mut header).unwrap();
    assert_eq!(header[..12], *b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(header[12..16], [0x21, 0x11, 0, 12], "PROXY, TCP over IPv4");
    let ip = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([header[24], header[25]]))
}

#[test]
fn test_unix_upstream_gets_the_header_and_the_bytes_both_ways() {
    const LEN: usize = 1 << 20;
    let (upstream, _directory, served) = unix_upstream(1, |mut stream| {
        let source = read_proxy_v2_source(&mut stream);
        io::copy(&mut stream.try_clone().unwrap(), &mut stream).unwrap();
        stream.shutdown(net::Shutdown::Write).unwrap();
        source
    });
    let harness = Harness::start(ProxyConfig {
        proxy_protocol: ProxyProtocol::V2,
        ..config(upstream)
    });
    let mut client = harness.connect();
    let sent = noise(11, LEN);
    let sending = thread::spawn({
        let (mut client, sent) = (client.try_clone().unwrap(), sent.clone());
        move || {
            client.write_all(&sent).unwrap();
            client.shutdown(net::Shutdown::Write).unwrap();
        }
    });
    let (received, ended) = read_all(&mut client);
    ended.unwrap();
    sending.join().unwrap();
    assert!(
        received == sent,
        "{} bytes back, not the {LEN} sent",
        received.len()
    );
    let [source] = served.join().unwrap().try_into().unwrap();
    assert_eq!(source, client.local_addr().unwrap());
    let counters = harness.counters();
    wait_until("the connection ended", || {
        counters.active.load(Ordering::Relaxed) == 0
    });
    assert_eq!(load(&counters.proxied), 1);
    assert_eq!(load(&counters.bytes_to_upstream), 28 + LEN as u64);
    assert_eq!(load(&counters.bytes_to_clients), LEN as u64);
    harness.finish();
}

/// As over TCP: a greeting and the upstream's end-of-file reach every client, and each
/// client's request its upstream.
#[test]
fn test_unix_upstream_half_closes_both_ways() {
    const CONNECTIONS: usize = 50;
    let (upstream, _directory, served) = unix_upstream(CONNECTIONS, |stream| {
        greet_then_read(stream, |stream| stream.shutdown(net::Shutdown::Write))
    });
    check_upstream_first_half_close(Harness::start(config(upstream)), served, CONNECTIONS);
}

#[test]
fn test_unix_upstream_missing_resets_the_client() {
    let directory = tempfile::tempdir().unwrap();
    let harness = Harness::start(config(Upstream::unix(directory.path().join("absent.sock"))));
    assert_upstream_failure_resets_the_client(harness);
}

/// A Unix socket's full accept queue refuses a non-blocking connect at once (EAGAIN): the
/// client is reset and counted, as the module documentation says, with no wait.
#[test]
fn test_unix_upstream_full_accept_queue_resets_the_client() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("full.sock");
    let listener = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    listener
        .bind(&socket2::SockAddr::unix(&path).unwrap())
        .unwrap();
    // Backlog 0 holds one connection.
    listener.listen(0).unwrap();
    let _filler = StdUnixStream::connect(&path).unwrap();
    let harness = Harness::start(config(Upstream::unix(&path)));
    assert_upstream_failure_resets_the_client(harness);
}

/// A Unix socket has no reset: a client's reset closes the upstream's socket, which reads
/// end-of-file.
#[test]
fn test_client_reset_closes_the_unix_upstream() {
    let (upstream, _directory, served) =
        unix_upstream(1, |mut stream| read_all(&mut stream).1.is_ok());
    let harness = Harness::start(config(upstream));
    reset_a_connected_client(&harness);
    assert_eq!(served.join().unwrap(), [true]);
    harness.finish();
}

/// Every connection in the listening socket reaches the upstream exactly once, from either
/// of two loops that both watch it.
#[test]
fn test_event_loops_accept_from_own_listeners() {
    const CONNECTIONS: usize = 100;
    let (upstream, served) = upstream(CONNECTIONS, echo);
    let harness = Harness::accepting(ProxyConfig {
        threads: 2,
        ..config(upstream)
    });
    let clients = (0..CONNECTIONS).map(|_| harness.connect_own()).collect();
    check_echoed(&harness, clients, served);
    assert_eq!(harness.own_accepted(), CONNECTIONS as u64);
    let (_, own) = harness.own.as_ref().unwrap();
    assert_eq!(load(&own.errors), 0);
    harness.finish();
}

/// With no slot free, a connection waits in the listening socket's accept queue, and is
/// taken as soon as one is.
#[test]
fn test_own_listener_connection_waits_for_a_slot() {
    check_limit_holds_the_second(true, |harness| {
        assert_eq!(harness.own_accepted(), 1, "the second was accepted");
    });
}
