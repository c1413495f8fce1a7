//! A batch of frames ([`Listener::handle_batch`], its cookie MACs computed together on the CPU's
//! fastest SHA-256 form) is decided exactly as the same frames one at a time
//! ([`Listener::handle_frame`]): same verdicts, same replies, whatever the mix of SYNs, cookie
//! ACKs valid and forged, RSTs, data and garbage, the cookie mode, and where the batches split.

mod common;

use common::{Client, Harness, config, frame, linux_options, parse_reply, windows_options};
use proptest::prelude::*;
use synwall::device::MIN_TX_FRAME;
use synwall::listener::{ListenerConfig, MAX_BATCH, SyncookiesMode, Verdict};
use synwall::sys::sha256;
use synwall::wire::{self, Endpoints, Parsed, TcpFlags, TcpRepr};

/// What a frame of the generated traffic is.
#[derive(Debug, Clone, Copy)]
enum Step {
    Syn,
    /// The final ACK answering the client's cookie SYN-ACK, with data or without.
    Ack {
        data: bool,
    },
    /// That ACK with the cookie one off.
    ForgedAck,
    Rst,
    Garbage,
}

fn step() -> impl Strategy<Value = (usize, Step)> {
    let step = prop_oneof![
        3 => Just(Step::Syn),
        2 => Just(Step::Ack { data: false }),
        1 => Just(Step::Ack { data: true }),
        2 => Just(Step::ForgedAck),
        1 => Just(Step::Rst),
        1 => Just(Step::Garbage),
    ];
    (0..CLIENTS, step)
}

const CLIENTS: usize = 12;

fn clients() -> Vec<Client> {
    (0..CLIENTS)
        .map(|i| {
            let options = if i % 3 == 0 {
                windows_options()
            } else {
                linux_options(1000 + i as u32)
            };
            let addr = if i % 4 == 3 {
                format!("[2001:2::{:x}]:{}", i + 1, 40_000 + i)
            } else {
                format!("198.18.9.{}:{}", i + 1, 40_000 + i)
            };
            Client::new(&addr, 7919 * i as u32, options)
        })
        .collect()
}

fn listener_config(mode: SyncookiesMode) -> ListenerConfig {
    ListenerConfig {
        // Small, so the queue fills and empties within a batch.
        max_syn_backlog: 3,
        ..config(mode)
    }
}

/// The frames of `steps`: ACKs answer the SYN-ACK each client's SYN gets with cookies always
/// on (the cookie depends only on the key and the SYN, so any listener with the key takes it).
fn frames(steps: &[(usize, Step)]) -> Vec<Vec<u8>> {
    let clients = clients();
    let mut issuer = Harness::new(config(SyncookiesMode::Always));
    let syn_acks: Vec<TcpRepr<'static>> = clients
        .iter()
        .map(|client| issuer.syn_ack_repr(client))
        .collect();
    steps
        .iter()
        .map(|&(i, step)| {
            let client = &clients[i];
            match step {
                Step::Syn => frame(&client.syn()),
                Step::Ack { data } => {
                    let payload: &[u8] = if data { b"GET / HTTP/1.1\r\n\r\n" } else { b"" };
                    frame(&client.ack(&syn_acks[i], payload))
                }
                Step::ForgedAck => {
                    let mut syn_ack = syn_acks[i];
                    syn_ack.seq = syn_ack.seq + 1;
                    frame(&client.ack(&syn_ack, b""))
                }
                Step::Rst => frame(&client.segment(TcpFlags::RST, client.isn + 1, client.isn)),
                Step::Garbage => vec![0x45; 40 + i],
            }
        })
        .collect()
}

/// A decision: the verdict and the reply it sent, if any, parsed. The TS value of a reply is
/// kept only in its low bits (the SYN options it carries): each listener has its own clock.
type Decision = (Verdict, Option<TcpRepr<'static>>);

/// The decision on `frame`: a reply is addressed to the frame's sender.
fn decided(verdict: Verdict, frame: &[u8], tx: &[u8]) -> Decision {
    let reply = match verdict {
        Verdict::Transmit(len) => {
            let served = Endpoints::new([common::server_v4(), common::server_v6()]);
            let Parsed::Ours(sent) = wire::parse(frame, &served) else {
                panic!("a reply to a frame not ours")
            };
            let mut reply = common::detach(parse_reply(&tx[..len], sent.src));
            if let Some(timestamps) = reply.options.timestamps.as_mut() {
                timestamps.value &= 0x3f;
            }
            Some(reply)
        }
        _ => None,
    };
    (verdict, reply)
}

fn one_at_a_time(mode: SyncookiesMode, frames: &[Vec<u8>]) -> Vec<Decision> {
    let mut h = Harness::new(listener_config(mode));
    let mut tx = vec![0; MIN_TX_FRAME];
    let mut scratch = vec![0; MIN_TX_FRAME];
    frames
        .iter()
        .map(|frame| {
            let verdict = h.listener.handle_frame(h.now, frame, &mut tx);
            if let Verdict::Accepted(accepted) = &verdict {
                // As a driver does once the kernel owns it.
                h.listener
                    .handle_handoff_complete(h.now, accepted, true, &mut scratch);
            }
            decided(verdict, frame, &tx)
        })
        .collect()
}

fn batched(mode: SyncookiesMode, frames: &[Vec<u8>], splits: &[usize]) -> Vec<Decision> {
    let mut h = Harness::new(listener_config(mode));
    h.listener = h.listener.with_sha256_lanes(sha256::fastest().0);
    let mut tx = vec![0; MIN_TX_FRAME];
    let mut scratch = vec![0; MIN_TX_FRAME];
    let mut decisions = Vec::new();
    let mut rest = frames;
    for &split in splits.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch_frames, after) = rest.split_at(split.min(rest.len()));
        rest = after;
        let refs: Vec<&[u8]> = batch_frames.iter().map(Vec::as_slice).collect();
        h.listener.handle_batch(h.now, &refs, |batch| {
            for (index, frame) in refs.iter().enumerate() {
                let verdict = batch.handle(index, &mut tx);
                if let Verdict::Accepted(accepted) = &verdict {
                    batch.handle_handoff_complete(accepted, true, &mut scratch);
                }
                decisions.push(decided(verdict, frame, &tx));
            }
        });
    }
    decisions
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn prop_a_batch_decides_as_one_frame_at_a_time(
        steps in proptest::collection::vec(step(), 1..=200),
        mode in prop_oneof![
            Just(SyncookiesMode::Always),
            Just(SyncookiesMode::WhenFull),
            Just(SyncookiesMode::Never),
        ],
        splits in proptest::collection::vec(1..=MAX_BATCH + 6, 1..=4),
    ) {
        let frames = frames(&steps);
        prop_assert_eq!(batched(mode, &frames, &splits), one_at_a_time(mode, &frames));
    }
}
