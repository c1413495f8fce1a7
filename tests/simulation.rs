//! A seeded simulation in virtual time: a flood of spoofed SYNs and a few hundred clients doing
//! real handshakes (with SYN-ACK loss and SYN retransmission) through the in-memory device, the
//! shard loop and the accept queue. Every client must get in, memory must stay within its bound,
//! and nothing may be left behind once the timers run out.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use synwall::accept_queue::{AcceptQueue, AcceptReceiver, Pop};
use synwall::counters::{Counter, Gauge};
use synwall::device::memory::{MemoryDelivery, MemoryDevice};
use synwall::listener::{Listener, ListenerConfig, SyncookiesMode};
use synwall::seq::SeqNumber;
use synwall::shard::Shard;
use synwall::wire::{Endpoints, Parsed, TcpFlags};

const TICK: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Not started; sends its SYN at this tick.
    Waiting(u64),
    /// SYN sent at `sent_at`; resent after `rto` ticks without a SYN-ACK (doubling, as Linux).
    SynSent { sent_at: u64, rto: u64 },
    /// ACK sent; waiting for the listener to accept.
    AckSent,
    /// Accepted: the kernel owns it now, its segments no longer reach the listener.
    Done,
}

struct SimClient {
    client: Client,
    state: State,
    request: Vec<u8>,
    /// Send the request in its own segment after the ACK (as Linux does), not in the ACK.
    separate_request: bool,
    /// Whether the listener acknowledged early data after the handoff.
    early_data_acked: bool,
    /// What the kernel socket got: early data, then re-injected segments' payload.
    kernel_received: Vec<u8>,
}

struct Outcome {
    completed: usize,
    /// Clients whose kernel socket got exactly their request.
    requests_intact: usize,
    /// Clients told that their early data arrived, of those who sent it with the ACK.
    early_data_acked: usize,
    early_data_senders: usize,
    clients: usize,
    max_queue_len: usize,
    listener_counters: synwall::counters::CounterSnapshot,
}

impl Outcome {
    /// Every client completed, its request reached its kernel socket intact, early data was
    /// acknowledged, and requests sent after the ACK were held for the kernel.
    fn assert_every_client_served(&self) {
        let counters = &self.listener_counters;
        assert_eq!(self.completed, self.clients, "{:?}", counters.non_zero());
        assert_eq!(
            self.requests_intact, self.clients,
            "every request reached its kernel socket"
        );
        assert_eq!(
            self.early_data_acked, self.early_data_senders,
            "early data acknowledged"
        );
        assert!(
            counters.get(Counter::Reinjected) > 0,
            "requests after the ACK were held for the kernel"
        );
    }
}

struct Simulation {
    shard: Shard<MemoryDevice, MemoryDelivery>,
    accept: AcceptReceiver,
    rng: StdRng,
    now: Instant,
    unix: Duration,
    tick: u64,
    clients: Vec<SimClient>,
    by_addr: HashMap<SocketAddr, usize>,
    synack_loss: f64,
    queue_bytes: usize,
    max_queue_len: usize,
}

impl Simulation {
    fn new(seed: u64, mode: SyncookiesMode, clients: usize, synack_loss: f64) -> Simulation {
        let now = Instant::now();
        let config = ListenerConfig {
            max_syn_backlog: 256,
            ..config(mode)
        };
        let listener = Listener::new(config, keys(START_UNIX), now).unwrap();
        let queue_bytes = listener.syn_queue_bytes();
        let accept_queue = AcceptQueue::new(128);
        let accept = accept_queue.receiver();
        let shard = Shard::new(
            listener,
            MemoryDevice::new(8192),
            MemoryDelivery::default(),
            accept_queue.sender(1024),
            512,
        );
        let mut rng = StdRng::seed_from_u64(seed);
        let clients: Vec<SimClient> = (0..clients)
            .map(|i| {
                let addr = SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::new(198, 18, 64 + (i / 250) as u8, (i % 250) as u8 + 1),
                    40000 + i as u16,
                ));
                let options = match i % 3 {
                    0 => linux_options(rng.random()),
                    1 => windows_options(),
                    _ => macos_options(rng.random()),
                };
                SimClient {
                    client: Client::new(&addr.to_string(), rng.random(), options),
                    state: State::Waiting(rng.random_range(0..3000)),
                    request: format!("GET /{i} HTTP/1.1\r\n\r\n").into_bytes(),
                    separate_request: i % 2 == 1,
                    early_data_acked: false,
                    kernel_received: Vec::new(),
                }
            })
            .collect();
        let by_addr = clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.client.addr, i))
            .collect();
        Simulation {
            shard,
            accept,
            rng,
            now,
            unix: START_UNIX,
            tick: 0,
            clients,
            by_addr,
            synack_loss,
            queue_bytes,
            max_queue_len: 0,
        }
    }

    /// A spoofed SYN from 198.18.128.0/17 with a random port, ISN and OS option layout.
    fn flood_syn(&mut self) -> Vec<u8> {
        let source = Ipv4Addr::from(
            u32::from(Ipv4Addr::new(198, 18, 128, 0)) | self.rng.random_range(0..1 << 15),
        );
        let port = self.rng.random_range(1024..=u16::MAX);
        let options = match self.rng.random_range(0..3) {
            0 => linux_options(self.rng.random()),
            1 => windows_options(),
            _ => macos_options(self.rng.random()),
        };
        let client = Client::new(
            &SocketAddrV4::new(source, port).to_string(),
            self.rng.random(),
            options,
        );
        frame(&client.syn())
    }

    fn run(&mut self, ticks: u64, flood_per_tick: usize) {
        for _ in 0..ticks {
            for _ in 0..flood_per_tick {
                let syn = self.flood_syn();
                assert!(
                    self.shard.device_mut().inject(&syn),
                    "device pool exhausted"
                );
            }
            self.step_clients();
            self.shard.poll(self.now, self.unix).unwrap();
            self.deliver_replies();
            self.deliver_to_kernel();
            self.drain_accept_queue();
            let len = self.shard.listener().syn_queue_len();
            self.max_queue_len = self.max_queue_len.max(len);
            assert!(len <= 256);
            assert_eq!(self.shard.listener().syn_queue_bytes(), self.queue_bytes);
            self.now += TICK;
            self.unix += TICK;
            self.tick += 1;
        }
    }

    fn step_clients(&mut self) {
        let tick = self.tick;
        for sim in &mut self.clients {
            let (sent_at, rto) = match sim.state {
                State::Waiting(start) if start == tick => (tick, 1000),
                State::SynSent { sent_at, rto } if tick == sent_at + rto => (tick, rto * 2),
                _ => continue,
            };
            sim.state = State::SynSent { sent_at, rto };
            assert!(self.shard.device_mut().inject(&frame(&sim.client.syn())));
        }
    }

    fn deliver_replies(&mut self) {
        let mut replies = Vec::new();
        self.shard.device_mut().drain_tx(|frame| {
            replies.push((destination(frame), frame.to_vec()));
        });
        for (dst, reply) in replies {
            let Some(&index) = self.by_addr.get(&dst) else {
                continue; // a SYN-ACK to a spoofed source: lost in the void
            };
            let sim = &mut self.clients[index];
            let reply = match synwall::wire::parse(&reply, &Endpoints::new([dst])) {
                Parsed::Ours(repr) => repr,
                other => panic!("unparsable reply to {dst}: {other:?}"),
            };
            if reply.flags == TcpFlags::ACK {
                // The early data went into the kernel socket, and we are told so.
                assert_eq!(sim.state, State::Done, "to {dst}");
                assert!(!sim.separate_request, "no early data to acknowledge");
                assert_eq!(reply.ack, sim.client.isn + 1 + sim.request.len() as u32);
                sim.early_data_acked = true;
                continue;
            }
            assert_eq!(reply.flags, TcpFlags::SYN | TcpFlags::ACK, "to {dst}");
            assert_eq!(reply.ack, sim.client.isn + 1);
            if self.rng.random_bool(self.synack_loss) {
                continue;
            }
            match sim.state {
                State::SynSent { .. } | State::AckSent => {
                    sim.state = State::AckSent;
                    let frames = if sim.separate_request {
                        let ack = sim.client.ack(&reply, b"");
                        let request = sim.client.data(&ack, 0, &sim.request, TcpFlags::PSH);
                        vec![frame(&ack), frame(&request)]
                    } else {
                        vec![frame(&sim.client.ack(&reply, &sim.request))]
                    };
                    for frame in frames {
                        assert!(self.shard.device_mut().inject(&frame));
                    }
                }
                // The kernel owns it: a late SYN-ACK would reach the kernel socket, not us.
                State::Done | State::Waiting(_) => {}
            }
        }
    }

    /// Segments the shard handed to the local kernel: their payload goes to the client's
    /// kernel socket.
    fn deliver_to_kernel(&mut self) {
        for packet in self.shard.delivery_mut().delivered.drain(..) {
            let ip = etherparse::Ipv4Slice::from_slice(&packet).expect("an IPv4 packet");
            let tcp =
                etherparse::TcpSlice::from_slice(ip.payload().payload).expect("a TCP segment");
            let src = SocketAddr::new(ip.header().source_addr().into(), tcp.source_port());
            let index = self.by_addr[&src];
            let sim = &mut self.clients[index];
            assert_eq!(
                sim.state,
                State::Done,
                "delivered only once the kernel owns it"
            );
            // Like a kernel socket: in sequence order, duplicates trimmed.
            let offset = (SeqNumber(tcp.sequence_number()) - (sim.client.isn + 1)) as usize;
            let received = sim.kernel_received.len();
            assert!(offset <= received, "a hole before sequence offset {offset}");
            if let Some(new) = tcp.payload().get(received - offset..) {
                sim.kernel_received.extend_from_slice(new);
            }
        }
    }

    fn drain_accept_queue(&mut self) {
        while let Pop::Handshake(handshake) = self.accept.pop(Duration::ZERO) {
            let accepted = &handshake.accepted;
            let index = self.by_addr[&accepted.tuple.remote];
            let sim = &mut self.clients[index];
            assert_eq!(
                sim.state,
                State::AckSent,
                "{:?} accepted twice",
                accepted.tuple
            );
            if !sim.separate_request {
                assert_eq!(accepted.early_data, sim.request);
            }
            sim.kernel_received.extend_from_slice(&accepted.early_data);
            assert_eq!(accepted.client_isn, sim.client.isn);
            assert_eq!(accepted.server_isn + 1, accepted.our_next_seq());
            sim.state = State::Done;
            handshake.report_handed_off(true, None);
        }
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            completed: self
                .clients
                .iter()
                .filter(|c| c.state == State::Done)
                .count(),
            requests_intact: self
                .clients
                .iter()
                .filter(|c| c.kernel_received == c.request)
                .count(),
            early_data_acked: self.clients.iter().filter(|c| c.early_data_acked).count(),
            early_data_senders: self.clients.iter().filter(|c| !c.separate_request).count(),
            clients: self.clients.len(),
            max_queue_len: self.max_queue_len,
            listener_counters: self.shard.listener().counters().snapshot(),
        }
    }
}

/// The destination of a frame we sent, read with etherparse.
fn destination(frame: &[u8]) -> SocketAddr {
    let sliced = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = sliced.net else {
        panic!("the simulation is IPv4 only");
    };
    let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport else {
        panic!("not TCP");
    };
    SocketAddr::new(
        ip.header().destination_addr().into(),
        tcp.destination_port(),
    )
}

fn flood_and_clients(seed: u64, mode: SyncookiesMode) -> Outcome {
    let mut sim = Simulation::new(seed, mode, 300, 0.1);
    // 4 s of flood at 50 SYNs per ms (50,000/s), the clients starting within the first 3 s.
    sim.run(4000, 50);
    // Then quiet: retransmissions finish, queue entries expire.
    sim.run(70_000, 0);
    sim.outcome()
}

#[test]
fn test_flood_every_client_completes_when_full() {
    let outcome = flood_and_clients(1, SyncookiesMode::WhenFull);
    outcome.assert_every_client_served();
    let counters = outcome.listener_counters;
    assert_eq!(outcome.max_queue_len, 256, "the flood filled the SYN queue");
    assert!(counters.get(Counter::CookiesSent) > 100_000);
    assert!(counters.get(Counter::AcceptedFromCookie) > 0);
    assert_eq!(
        counters.get(Counter::AcceptedFromCookie) + counters.get(Counter::AcceptedFromQueue),
        outcome.clients as u64
    );
    assert_eq!(counters.gauge(Gauge::SynQueueDepth), 0, "left behind");
    assert_eq!(counters.gauge(Gauge::HandoffsPending), 0, "left behind");
}

#[test]
fn test_flood_every_client_completes_always() {
    let outcome = flood_and_clients(2, SyncookiesMode::Always);
    outcome.assert_every_client_served();
    let counters = outcome.listener_counters;
    assert_eq!(outcome.max_queue_len, 0);
    assert_eq!(
        counters.get(Counter::AcceptedFromCookie),
        outcome.clients as u64
    );
}

#[test]
fn test_flood_locks_clients_out_without_cookies() {
    // The contrast that shows the flood is real: with cookies off, as with the kernel's
    // tcp_syncookies=0, spoofed SYNs hold every queue slot and most clients never get one.
    let mut sim = Simulation::new(3, SyncookiesMode::Never, 300, 0.0);
    sim.run(4000, 50);
    let outcome = sim.outcome();
    assert!(
        outcome.completed < outcome.clients / 4,
        "{} of {} got in",
        outcome.completed,
        outcome.clients
    );
    assert!(outcome.listener_counters.get(Counter::SynQueueFullDrops) > 100_000);
}

#[test]
fn test_quiet_listener_serves_everyone_from_the_queue() {
    let mut sim = Simulation::new(4, SyncookiesMode::WhenFull, 300, 0.3);
    sim.run(20_000, 0);
    let outcome = sim.outcome();
    outcome.assert_every_client_served();
    let counters = outcome.listener_counters;
    assert_eq!(counters.get(Counter::CookiesSent), 0);
    assert!(counters.get(Counter::SynAckRetransmits) + counters.get(Counter::DuplicateSyns) > 0);
    assert_eq!(
        counters.get(Counter::AcceptedFromQueue),
        outcome.clients as u64
    );
    assert_eq!(sim.shard.listener().syn_queue_len(), 0);
}
