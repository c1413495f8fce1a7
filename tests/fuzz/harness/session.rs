//! One `listener_frames` run: the listener, the driver's clock, what was seen on the wire, and
//! every step of the script with the checks after it.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use synwall_proto::cookie::keys::KeyRing;
use synwall_proto::counters::{Counter, Counters, Gauge};
use synwall_proto::listener::{
    Accepted, HandshakePath, Listener, ListenerConfig, ListenerUpdate, MAX_BATCH, Verdict,
};
use synwall_proto::seq::SeqNumber;
use synwall_proto::wire::{
    self, Endpoints, FourTuple, LinkAddrs, Parsed, TcpFlags, TcpOptions, TcpRepr, Timestamps,
};

use super::listener_frames::*;
use super::wire_parse::repair_checksums;
use super::*;

/// What the harness saw, to check the counters against.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub(super) syn_acks: u64,
    pub(super) rsts: u64,
    pub(super) acks: u64,
    pub(super) accepted: u64,
    pub(super) overflow_reports: u64,
    pub(super) reinject_verdicts: u64,
    pub(super) reinjected_held: u64,
    pub(super) passed: u64,
}

/// How the harness hands frames to the listener, as the drivers do: one at a time
/// ([`Listener::handle_frame`]), or in batches ([`Listener::handle_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    FrameByFrame,
    /// The frames of consecutive steps go in one batch, of up to [`MAX_BATCH`], handed over
    /// before the clock moves, a report or a reload.
    Batches,
}

/// One listener, its virtual clocks and what the harness knows of it.
pub(super) struct Session {
    pub(super) listener: Listener,
    pub(super) delivery: Delivery,
    /// Frames waiting for the next batch.
    pub(super) pending: Vec<Vec<u8>>,
    pub(super) counters: Arc<Counters>,
    pub(super) served: Endpoints,
    pub(super) queue_bytes: usize,
    pub(super) now: Instant,
    pub(super) unix: Duration,
    pub(super) tx: Vec<u8>,
    /// Every SYN-ACK sent: local and remote endpoint, our ISN, the client's ISN.
    pub(super) syn_acks: HashSet<(SocketAddr, SocketAddr, SeqNumber, SeqNumber)>,
    /// The latest SYN-ACKs sent, newest last.
    pub(super) recent_syn_acks: VecDeque<TcpRepr<'static>>,
    /// Every connection accepted, in order.
    pub(super) accepted: Vec<Accepted>,
    /// Connections accepted and not reported on since, with when: being handed off until the
    /// handoff timeout.
    pub(super) handing_off: Vec<(FourTuple, Instant)>,
    pub(super) seen: Seen,
    pub(super) step: usize,
}

impl Session {
    pub(super) fn new(setup: u8, delivery: Delivery) -> Session {
        let config = ListenerConfig {
            served: Endpoints::new([SERVER_V4, SERVER_V6]),
            syncookies: syncookies_mode(setup),
            max_syn_backlog: SYN_BACKLOG,
            synack_retries: SYNACK_RETRIES,
            abort_on_overflow: setup & 0x04 != 0,
            window_scale: WINDOW_SCALE,
            timestamps: setup & 0x08 == 0,
            sack: setup & 0x10 == 0,
            ecn: setup & 0x20 != 0,
            invalid_ack_rsts_per_sec: if setup & 0x40 != 0 { 0 } else { 4 },
            receive_window: if setup & 0x80 != 0 { 0 } else { 65535 },
            max_held_bytes: HELD_BYTES,
            handoff_timeout: HANDOFF_TIMEOUT,
            max_pending_handoffs: PENDING_HANDOFFS,
            ..ListenerConfig::default()
        };
        let served = config.served.clone();
        let now = Instant::now();
        let keys = KeyRing::new(secret(0), KEY_PERIOD, START_UNIX);
        let listener = Listener::new(config, keys, now).expect("a valid configuration");
        Session {
            counters: listener.counters(),
            queue_bytes: listener.syn_queue_bytes(),
            listener,
            delivery,
            pending: Vec::new(),
            served,
            now,
            unix: START_UNIX,
            tx: vec![0; TX_LEN],
            syn_acks: HashSet::new(),
            recent_syn_acks: VecDeque::new(),
            accepted: Vec::new(),
            handing_off: Vec::new(),
            seen: Seen::default(),
            step: 0,
        }
    }

    /// Reads and runs one step; `None` when the input ends.
    pub(super) fn run_step(&mut self, input: &mut Input<'_>) -> Option<()> {
        let op = input.u8()? % 10;
        if matches!(op, 0 | 1 | 7 | 9) {
            self.deliver_batch();
        }
        match op {
            0 => {
                let n = input.u8()?;
                self.advance(Duration::from_millis(10 * u64::from(n)));
            }
            1 => {
                let n = input.u8()?;
                self.advance(Duration::from_secs(u64::from(n)));
            }
            2 => self.step_syn(input)?,
            3 => {
                if let Some(ack) = self.answer(input)? {
                    self.send(&ack);
                }
            }
            4 => self.step_segment(input)?,
            5 => {
                let len = input.u8()?;
                self.feed(input.bytes(usize::from(len))?);
            }
            6 => {
                let len = input.u8()?;
                let mut frame = input.bytes(usize::from(len))?.to_vec();
                let _ = repair_checksums(&mut frame);
                self.feed(&frame);
            }
            7 => {
                let (which, kind) = (input.u8()?, input.u8()?);
                self.report(which, kind);
            }
            8 => self.step_accepted_segment(input)?,
            _ => self.step_reload(input)?,
        }
        Some(())
    }

    /// Step 2: a SYN.
    fn step_syn(&mut self, input: &mut Input<'_>) -> Option<()> {
        let (src, dst) = client(input.u8()?);
        let isn = SeqNumber(input.u32()?);
        let window = input.u16()?;
        let (shape, link, payload) = Session::shape(input)?;
        let flags = if shape & 0x10 != 0 {
            TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR
        } else {
            TcpFlags::SYN
        };
        self.send(&TcpRepr {
            flags,
            seq: isn,
            window,
            payload,
            options: options(input, shape)?,
            ..segment(link, src, dst)
        });
        Some(())
    }

    /// Step 4: a segment with any flags.
    fn step_segment(&mut self, input: &mut Input<'_>) -> Option<()> {
        let (src, dst) = client(input.u8()?);
        let flags = TcpFlags(input.u8()?);
        let seq = SeqNumber(input.u32()?);
        let ack = SeqNumber(input.u32()?);
        let window = input.u16()?;
        let (shape, link, payload) = Session::shape(input)?;
        self.send(&TcpRepr {
            flags,
            seq,
            ack,
            window,
            payload,
            options: options(input, shape)?,
            ..segment(link, src, dst)
        });
        Some(())
    }

    /// Step 8: a segment of an accepted connection.
    fn step_accepted_segment(&mut self, input: &mut Input<'_>) -> Option<()> {
        let (which, flags) = (input.u8()?, TcpFlags(input.u8()?));
        let (offset, len) = (input.u8()?, input.u8()?);
        if let Some(i) = pick(self.accepted.len(), which) {
            let accepted = &self.accepted[i];
            let repr = TcpRepr {
                flags,
                seq: accepted.peer_next_seq() + u32::from(offset),
                ack: accepted.our_next_seq(),
                options: TcpOptions {
                    timestamps: accepted.timestamps,
                    ..TcpOptions::default()
                },
                payload: &PAYLOAD[..usize::from(len)],
                ..segment(accepted.link, accepted.tuple.remote, accepted.tuple.local)
            };
            self.send(&repr);
        }
        Some(())
    }

    /// Step 9: a settings reload.
    fn step_reload(&mut self, input: &mut Input<'_>) -> Option<()> {
        let bits = input.u8()?;
        let update = ListenerUpdate {
            secret: (bits & 0x80 != 0).then(|| secret(bits)),
            syncookies: syncookies_mode(bits),
            abort_on_overflow: bits & 0x04 != 0,
            invalid_ack_rsts_per_sec: if bits & 0x08 != 0 { 0 } else { 4 },
        };
        self.listener.apply(self.now, &update);
        Some(())
    }

    /// The shape of a built segment, read from one byte: its options (bit 0 MSS: u16, bit 1
    /// window scale: u8, bit 2 SACK-permitted, bit 3 timestamps: u32 value, u32 echo; read by
    /// [`options`] after the byte and its other operands), bit 4 ECE and CWR on a SYN, bit 5 a
    /// VLAN tag, bit 6 a payload (length: u8). Returns the byte, the link addresses and the
    /// payload.
    fn shape(input: &mut Input<'_>) -> Option<(u8, LinkAddrs, &'static [u8])> {
        let shape = input.u8()?;
        let link = LinkAddrs {
            src: CLIENT_MAC,
            dst: SERVER_MAC,
            vlan: (shape & 0x20 != 0).then_some(100),
        };
        let payload = if shape & 0x40 != 0 {
            &PAYLOAD[..usize::from(input.u8()?)]
        } else {
            &[]
        };
        Some((shape, link, payload))
    }

    /// The client's ACK of a SYN-ACK the listener sent (`None` before it sent one). Operands:
    /// which (u8: 0 the latest, 1 the one before...), corruption (u8), an amount (u32), the
    /// client's TSval (u32), window (u16), payload length (u8). The corruption, modulo 8: none,
    /// the acknowledgment number or the sequence number plus the amount (made odd, so never
    /// zero), the TSecr XOR the amount, timestamps dropped (or added with the amount as TSecr),
    /// the source port or one bit of the source address (amount modulo its width) flipped, the
    /// flags replaced by the amount's low byte.
    fn answer(&self, input: &mut Input<'_>) -> Option<Option<TcpRepr<'static>>> {
        let (which, corruption, amount) = (input.u8()?, input.u8()?, input.u32()?);
        let (tsval, window) = (input.u32()?, input.u16()?);
        let payload = &PAYLOAD[..usize::from(input.u8()?)];
        let Some(i) = pick(self.recent_syn_acks.len(), which) else {
            return Some(None);
        };
        let syn_ack = self.recent_syn_acks[i];
        let flags = if payload.is_empty() {
            TcpFlags::ACK
        } else {
            TcpFlags::ACK | TcpFlags::PSH
        };
        let mut ack = TcpRepr {
            flags,
            seq: syn_ack.ack,
            ack: syn_ack.seq + 1,
            window,
            options: TcpOptions {
                timestamps: syn_ack.options.timestamps.map(|ts| Timestamps {
                    value: tsval,
                    echo: ts.value,
                }),
                ..TcpOptions::default()
            },
            payload,
            ..segment(syn_ack.link.reversed(), syn_ack.dst, syn_ack.src)
        };
        match corruption % 8 {
            0 => {}
            1 => ack.ack = ack.ack + (amount | 1),
            2 => ack.seq = ack.seq + (amount | 1),
            3 => {
                if let Some(ts) = &mut ack.options.timestamps {
                    ts.echo ^= amount;
                }
            }
            4 => {
                ack.options.timestamps = match ack.options.timestamps {
                    Some(_) => None,
                    None => Some(Timestamps {
                        value: tsval,
                        echo: amount,
                    }),
                }
            }
            5 => ack.src.set_port(ack.src.port() ^ (amount as u16 | 1)),
            6 => ack.src.set_ip(flip_bit(ack.src.ip(), amount)),
            _ => ack.flags = TcpFlags(amount as u8),
        }
        Some(Some(ack))
    }

    /// Reports on an accepted connection as a driver does, repeats and stale ones included.
    fn report(&mut self, which: u8, kind: u8) {
        let Some(i) = pick(self.accepted.len(), which) else {
            return;
        };
        let accepted = self.accepted[i].clone();
        // Whatever the report, the connection is no longer being handed off.
        self.handing_off
            .retain(|(tuple, _)| *tuple != accepted.tuple);
        let reply = match kind % 4 {
            0 => {
                self.seen.overflow_reports += 1;
                self.listener
                    .handle_accept_overflow(self.now, accepted, &mut self.tx)
            }
            ack_early_data @ (1 | 2) => {
                let done = self.listener.handle_handoff_complete(
                    self.now,
                    &accepted,
                    ack_early_data == 2,
                    &mut self.tx,
                );
                self.seen.reinjected_held += done.reinject.len() as u64;
                done.ack
            }
            _ => self.listener.handle_handoff_failed(&accepted, &mut self.tx),
        };
        match reply {
            Verdict::Transmit(len) => self.transmitted(len),
            Verdict::Consumed => {}
            other => panic!("step {}: a report answered {other:?}", self.step),
        }
    }

    /// Moves the clocks on as a driver does: keys rotated, then the timers run until none is
    /// due, sending the SYN-ACK retransmissions.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.unix += by;
        self.listener.rotate_keys(self.unix);
        let mut rounds = 0;
        while self
            .listener
            .poll_timeout()
            .is_some_and(|deadline| deadline <= self.now)
        {
            rounds += 1;
            assert!(
                rounds <= 2,
                "step {}: timers still due after two rounds of handle_timeout and poll_transmit",
                self.step
            );
            self.listener.handle_timeout(self.now);
            let mut retransmissions = 0;
            while let Some(len) = self.listener.poll_transmit(&mut self.tx) {
                retransmissions += 1;
                assert!(
                    retransmissions <= SYN_BACKLOG * usize::from(SYNACK_RETRIES),
                    "step {}: more retransmissions than the queue can owe",
                    self.step
                );
                self.transmitted(len);
            }
        }
    }

    fn send(&mut self, repr: &TcpRepr<'_>) {
        let mut frame = vec![0; wire::emitted_len(repr)];
        wire::emit(repr, &mut frame).expect("a buffer of the emitted length");
        self.feed(&frame);
    }

    fn feed(&mut self, frame: &[u8]) {
        match self.delivery {
            Delivery::FrameByFrame => {
                let verdict = self.listener.handle_frame(self.now, frame, &mut self.tx);
                self.decided(frame, verdict);
            }
            Delivery::Batches => {
                self.pending.push(frame.to_vec());
                if self.pending.len() == MAX_BATCH {
                    self.deliver_batch();
                }
            }
        }
    }

    /// Hands the pending frames to the listener as one batch.
    pub(super) fn deliver_batch(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let frames = std::mem::take(&mut self.pending);
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let mut tx = vec![0; TX_LEN];
        let decided: Vec<(Verdict, Vec<u8>)> =
            self.listener.handle_batch(self.now, &refs, |batch| {
                (0..refs.len())
                    .map(|index| {
                        let verdict = batch.handle(index, &mut tx);
                        let reply = match verdict {
                            Verdict::Transmit(len) => tx[..len].to_vec(),
                            _ => Vec::new(),
                        };
                        (verdict, reply)
                    })
                    .collect()
            });
        for (frame, (verdict, reply)) in frames.iter().zip(decided) {
            self.tx[..reply.len()].copy_from_slice(&reply);
            self.decided(frame, verdict);
        }
    }

    /// Records the listener's verdict on `frame` (a reply is in `tx`).
    fn decided(&mut self, frame: &[u8], verdict: Verdict) {
        match verdict {
            Verdict::Transmit(len) => self.transmitted(len),
            Verdict::Accepted(accepted) => self.on_accepted(accepted),
            Verdict::Reinject(range) => {
                assert!(
                    range.start <= range.end && range.end <= frame.len(),
                    "step {}: re-injecting {range:?} of a {}-byte frame",
                    self.step,
                    frame.len()
                );
                self.seen.reinject_verdicts += 1;
            }
            Verdict::Pass => self.seen.passed += 1,
            Verdict::Consumed | Verdict::Drop(_) => {}
        }
    }

    /// Checks the frame of `len` bytes the listener wrote into `tx`, and records it.
    fn transmitted(&mut self, len: usize) {
        let step = self.step;
        let frame = &self.tx[..len];
        let to = destination(frame)
            .unwrap_or_else(|| panic!("step {step}: a transmitted frame without TCP: {frame:x?}"));
        let reply = match wire::parse(frame, &Endpoints::new([to])) {
            Parsed::Ours(reply) => reply,
            other => panic!("step {step}: a transmitted frame parses as {other:?}: {frame:x?}"),
        };
        assert!(
            self.served.serves(reply.src.ip(), reply.src.port()) && reply.payload.is_empty(),
            "step {step}: transmitted {reply:?}"
        );
        let flags = reply.flags;
        if flags.contains(TcpFlags::SYN | TcpFlags::ACK) {
            // Detached from the transmit buffer (a SYN-ACK has no payload).
            let syn_ack = TcpRepr {
                hop_limit: reply.hop_limit,
                seq: reply.seq,
                ack: reply.ack,
                flags,
                window: reply.window,
                options: reply.options,
                ..segment(reply.link, reply.src, reply.dst)
            };
            self.seen.syn_acks += 1;
            self.syn_acks
                .insert((syn_ack.src, syn_ack.dst, syn_ack.seq, syn_ack.ack - 1));
            if self.recent_syn_acks.len() == RECENT_SYN_ACKS {
                self.recent_syn_acks.pop_front();
            }
            self.recent_syn_acks.push_back(syn_ack);
        } else if flags == TcpFlags::RST {
            self.seen.rsts += 1;
        } else if flags == TcpFlags::ACK {
            self.seen.acks += 1;
        } else {
            panic!("step {step}: transmitted {flags:?}");
        }
    }

    fn on_accepted(&mut self, accepted: Accepted) {
        let step = self.step;
        let tuple = accepted.tuple;
        assert!(
            self.syn_acks.contains(&(
                tuple.local,
                tuple.remote,
                accepted.server_isn,
                accepted.client_isn
            )),
            "step {step}: accepted a connection whose SYN-ACK was never sent: {accepted:?}"
        );
        assert!(
            !self
                .handing_off
                .iter()
                .any(|(pending, at)| *pending == tuple && *at + HANDOFF_TIMEOUT > self.now),
            "step {step}: accepted again while being handed off: {accepted:?}"
        );
        if let Some(scale) = accepted.window_scale {
            assert!(
                scale.send <= 14 && scale.receive == WINDOW_SCALE,
                "step {step}: {accepted:?}"
            );
        }
        assert_eq!(
            accepted.path == HandshakePath::Queue,
            accepted.handshake_duration.is_some(),
            "step {step}: {accepted:?}"
        );
        self.handing_off.retain(|(pending, _)| *pending != tuple);
        self.handing_off.push((tuple, self.now));
        self.seen.accepted += 1;
        self.accepted.push(accepted);
    }

    /// The invariants that hold after every step.
    pub(super) fn check(&self) {
        let step = self.step;
        let listener = &self.listener;
        let queued = listener.syn_queue_len();
        assert!(queued <= SYN_BACKLOG, "step {step}: {queued} queued");
        assert_eq!(listener.syn_queue_bytes(), self.queue_bytes, "step {step}");
        assert!(
            queued == 0 || listener.poll_timeout().is_some(),
            "step {step}: {queued} queued without a timer"
        );
        let counters = &self.counters;
        assert_eq!(
            counters.gauge(Gauge::SynQueueDepth),
            queued as u64,
            "step {step}: the SYN-queue gauge"
        );
        assert!(counters.gauge(Gauge::HandoffsPending) <= PENDING_HANDOFFS as u64);
        assert!(counters.gauge(Gauge::HeldBytes) <= HELD_BYTES as u64);
        let count = |counter| counters.get(counter);
        let seen = &self.seen;
        let pairs = [
            ("reply buffer misses", count(Counter::NoTxBuffer), 0),
            (
                "SYN-ACKs",
                count(Counter::SynAcksSent)
                    + count(Counter::DuplicateSyns)
                    + count(Counter::CookiesSent)
                    + count(Counter::SynAckRetransmits),
                seen.syn_acks,
            ),
            ("RSTs", count(Counter::RstsSent), seen.rsts),
            ("early-data ACKs", count(Counter::EarlyDataAcks), seen.acks),
            (
                "SYNs received and answered or dropped",
                count(Counter::SynReceived),
                count(Counter::SynAcksSent)
                    + count(Counter::DuplicateSyns)
                    + count(Counter::CookiesSent)
                    + count(Counter::SynQueueFullDrops),
            ),
            (
                "handshakes accepted (or overflowed) and reported overflowed",
                count(Counter::AcceptedFromQueue)
                    + count(Counter::AcceptedFromCookie)
                    + seen.overflow_reports,
                seen.accepted + count(Counter::AcceptQueueOverflow),
            ),
            (
                "valid cookie ACKs",
                count(Counter::CookieAcksValid),
                count(Counter::AcceptedFromCookie),
            ),
            (
                "re-injected segments",
                count(Counter::Reinjected),
                seen.reinject_verdicts + seen.reinjected_held,
            ),
            ("frames passed", count(Counter::FramesPassed), seen.passed),
        ];
        for (what, counted, expected) in pairs {
            assert_eq!(counted, expected, "step {step}: {what}; seen: {seen:?}");
        }
        assert!(count(Counter::HeldSegments) >= seen.reinjected_held);
    }
}
