//! Criterion benchmarks of the per-packet work, one core: parse, emit, cookies, SYN batches
//! through the listener, cookie ACKs accepted and forged ones rejected, the SYN queue and the
//! accept queue.
//!
//! `cargo bench --bench listener` (see the README for the table and how it was made).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use common::*;
use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use synwall::accept_queue::{AcceptQueue, Pop};
use synwall::cookie::{Block, CookieInput, CookieJar, MssTable, PrekeyedMac, SynOptions};
use synwall::listener::Listener;
use synwall::listener::{DropReason, SyncookiesMode, Verdict};
use synwall::seq::SeqNumber;
use synwall::sys::sha256;
use synwall::wire::{self, Endpoints, Parsed, TcpRepr};

const BATCH: usize = 64;
/// The SYN queue of the flood benchmark: the kernel's default `tcp_max_syn_backlog` on a
/// small machine.
const SYN_QUEUE_FULL: usize = 4096;
/// Legit connections of the flood benchmark handed to the kernel moments ago.
const LEGIT_HANDED: usize = 16;

fn clients(count: usize) -> Vec<Client> {
    clients_apart(count, 0).0
}

/// `first` clients, and `then` more with other addresses.
fn clients_apart(first: usize, then: usize) -> (Vec<Client>, Vec<Client>) {
    let mut all: Vec<Client> = (0..first + then)
        .map(|i| {
            let addr = format!(
                "198.18.{}.{}:{}",
                128 + i / 250,
                i % 250 + 1,
                1024 + i % 60000
            );
            Client::new(&addr, i as u32 * 7919, linux_options(i as u32))
        })
        .collect();
    let rest = all.split_off(first);
    (all, rest)
}

fn bench_wire(c: &mut Criterion) {
    let client = clients(1)[0];
    let syn = frame(&client.syn());
    let served = Endpoints::new([server_v4()]);
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_syn", |b| {
        b.iter(|| match wire::parse(black_box(&syn), &served) {
            Parsed::Ours(repr) => repr.seq,
            _ => unreachable!(),
        })
    });
    let mut h = Harness::new(config(SyncookiesMode::Always));
    let syn_ack: TcpRepr<'static> = h.syn_ack_repr(&client);
    let mut tx = [0u8; 2048];
    group.bench_function("emit_syn_ack", |b| {
        b.iter(|| wire::emit(black_box(&syn_ack), &mut tx).unwrap())
    });
    group.finish();
}

fn bench_cookie(c: &mut Criterion) {
    let mut jar = CookieJar::new(keys(START_UNIX), MssTable::IPV4, MssTable::IPV6);
    let input = CookieInput {
        local: server_v4(),
        remote: "198.18.130.7:40000".parse().unwrap(),
        client_isn: SeqNumber(123_456),
        options: Some(SynOptions {
            window_scale: Some(7),
            sack_permitted: true,
            ecn: false,
        }),
    };
    let cookie = jar.encode(&input, 1460);
    let mut group = c.benchmark_group("cookie");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| b.iter(|| jar.encode(black_box(&input), 1460)));
    group.bench_function("check", |b| {
        b.iter(|| jar.check(black_box(&input), black_box(cookie)).unwrap())
    });
    // The MACs of a full batch at once, on the fastest form this CPU has (as the listener's
    // batches compute them), per MAC: the floor under every batched SYN and cookie ACK.
    let (lanes, _) = sha256::fastest();
    let macs = [PrekeyedMac::new(&[1; 32]), PrekeyedMac::new(&[2; 32])];
    let key_of: Vec<u8> = (0..BATCH).map(|i| u8::from(i % 2 == 1)).collect();
    let blocks: Vec<Block> = (0..BATCH)
        .map(|i| {
            let mut block = [0; 64];
            block[..8].copy_from_slice(&i.to_be_bytes());
            block
        })
        .collect();
    let mut tags = vec![0; BATCH];
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("mac_batch", |b| {
        b.iter(|| lanes.hmac_first_words(&macs, &key_of, black_box(&blocks), &mut tags))
    });
    group.finish();
}

fn bench_listener(c: &mut Criterion) {
    let clients = clients(BATCH);
    let mut tx = vec![0u8; 2048];
    let mut group = c.benchmark_group("listener");
    group.throughput(Throughput::Elements(BATCH as u64));
    bench_cookie_syns(&mut group, &clients, &mut tx);
    bench_cookie_acks(&mut group, &clients, &mut tx);
    bench_syn_queue_handshakes(&mut group, &clients, &mut tx);
    group.finish();
}

/// The listener as the shard drives it: each batch's cookie MACs computed together, on the
/// CPU's fastest SHA-256 form.
fn batched(listener: Listener) -> Listener {
    listener.with_sha256_lanes(sha256::fastest().0)
}

fn refs(frames: &[Vec<u8>]) -> Vec<&[u8]> {
    frames.iter().map(Vec::as_slice).collect()
}

/// SYN in, cookie SYN-ACK out: parse, checksum, one MAC, emit; as a batch (the MACs
/// together), and (`_one_at_a_time`) frame by frame.
fn bench_cookie_syns(group: &mut BenchmarkGroup<'_, WallTime>, clients: &[Client], tx: &mut [u8]) {
    let syns: Vec<Vec<u8>> = clients.iter().map(|client| frame(&client.syn())).collect();
    let syn_refs = refs(&syns);
    let Harness {
        listener: always,
        now,
        ..
    } = Harness::new(config(SyncookiesMode::Always));
    let mut always = batched(always);
    group.bench_function("syn_batch_cookie", |b| {
        b.iter(|| {
            always.handle_batch(now, &syn_refs, |batch| {
                for index in 0..syn_refs.len() {
                    let verdict = batch.handle(index, tx);
                    debug_assert!(matches!(verdict, Verdict::Transmit(_)));
                    black_box(&verdict);
                }
            })
        })
    });
    // As a flood meets the default listener (syncookies = when-full): the SYN queue full of
    // half-open connections, and legit clients' connections just handed to the kernel (their
    // markers linger), so every SYN probes both tables before its cookie.
    let (queued, rest) = clients_apart(SYN_QUEUE_FULL, LEGIT_HANDED + BATCH);
    let (legit, flood) = rest.split_at(LEGIT_HANDED);
    let mut full = Harness::new(synwall::listener::ListenerConfig {
        max_syn_backlog: SYN_QUEUE_FULL,
        ..config(SyncookiesMode::WhenFull)
    });
    for client in &queued {
        full.syn_ack(client);
    }
    assert_eq!(full.listener.syn_queue_len(), SYN_QUEUE_FULL);
    for client in legit {
        let syn_ack = full.syn_ack_repr(client);
        let (Verdict::Accepted(accepted), _) = full.send(&client.ack(&syn_ack, b"")) else {
            unreachable!("a legit client's cookie is valid")
        };
        full.handoff_complete(&accepted);
    }
    let flood: Vec<Vec<u8>> = flood.iter().map(|client| frame(&client.syn())).collect();
    let flood_refs = refs(&flood);
    let mut full_listener = batched(full.listener);
    group.bench_function("syn_batch_cookie_queue_full", |b| {
        b.iter(|| {
            full_listener.handle_batch(full.now, &flood_refs, |batch| {
                for index in 0..flood_refs.len() {
                    let verdict = batch.handle(index, tx);
                    debug_assert!(matches!(verdict, Verdict::Transmit(_)));
                    black_box(&verdict);
                }
            })
        })
    });
    group.bench_function("syn_batch_cookie_one_at_a_time", |b| {
        b.iter(|| {
            for syn in &syns {
                let verdict = always.handle_frame(now, syn, tx);
                debug_assert!(matches!(verdict, Verdict::Transmit(_)));
                black_box(&verdict);
            }
        })
    });
}

/// Cookie ACKs, valid ones accepted and forged ones rejected.
fn bench_cookie_acks(group: &mut BenchmarkGroup<'_, WallTime>, clients: &[Client], tx: &mut [u8]) {
    // The final ACK of each, validated as a cookie and accepted, then its handoff reported. A
    // connection handed to the kernel is remembered for a while, so every round gets a fresh
    // listener (made outside the measurement) whose gate a cookie SYN-ACK has opened.
    let small = || synwall::listener::ListenerConfig {
        max_syn_backlog: 64,
        max_pending_handoffs: 2 * BATCH,
        ..config(SyncookiesMode::Always)
    };
    let mut issuer = Harness::new(small());
    let acks: Vec<Vec<u8>> = clients
        .iter()
        .map(|client| {
            let syn_ack = issuer.syn_ack_repr(client);
            frame(&client.ack(&syn_ack, b""))
        })
        .collect();
    let ack_refs = refs(&acks);
    let opener = Client::new("198.18.200.1:9", 1, linux_options(1));
    group.bench_function("cookie_ack_batch", |b| {
        b.iter_batched_ref(
            || {
                let mut h = Harness::new(small());
                h.syn_ack(&opener);
                h.listener = batched(h.listener);
                h
            },
            |h| {
                h.listener.handle_batch(h.now, &ack_refs, |batch| {
                    for index in 0..ack_refs.len() {
                        // Borrowed in place, as the shard's inline handoff does.
                        let verdict = batch.handle(index, tx);
                        let Verdict::Accepted(accepted) = &verdict else {
                            unreachable!("every ACK carries a valid cookie")
                        };
                        batch.handle_handoff_complete(accepted, true, tx);
                    }
                })
            },
            BatchSize::SmallInput,
        )
    });

    // Cookie-ACK validation as an ACK flood meets it: during a SYN flood (the gate open), ACKs
    // whose cookies are one off, each parsed, checked with one MAC and dropped (no RSTs).
    let forged: Vec<Vec<u8>> = clients
        .iter()
        .map(|client| {
            let mut syn_ack = issuer.syn_ack_repr(client);
            syn_ack.seq = syn_ack.seq + 1;
            frame(&client.ack(&syn_ack, b""))
        })
        .collect();
    let mut flooded = Harness::new(synwall::listener::ListenerConfig {
        invalid_ack_rsts_per_sec: 0,
        ..small()
    });
    flooded.syn_ack(&opener);
    let mut flooded_listener = batched(flooded.listener);
    let forged_refs = refs(&forged);
    group.bench_function("forged_cookie_ack_batch", |b| {
        b.iter(|| {
            flooded_listener.handle_batch(flooded.now, &forged_refs, |batch| {
                for index in 0..forged_refs.len() {
                    let verdict = batch.handle(index, tx);
                    debug_assert_eq!(verdict, Verdict::Drop(DropReason::CookieInvalid));
                    black_box(&verdict);
                }
            })
        })
    });
}

/// Through the SYN queue: a SYN admitted (insert), its ACK matched (lookup, remove). The
/// ISN is a cookie of the key epoch, so every round's SYN-ACK is the same and so is the ACK.
fn bench_syn_queue_handshakes(
    group: &mut BenchmarkGroup<'_, WallTime>,
    clients: &[Client],
    tx: &mut [u8],
) {
    let mut q = Harness::new(config(SyncookiesMode::Never));
    let mut handshakes = Vec::new();
    for client in clients {
        let syn_ack = q.syn_ack_repr(client);
        let ack = frame(&client.ack(&syn_ack, b""));
        let Verdict::Accepted(accepted) = q.send_frame(&ack).0 else {
            unreachable!("the ACK matches its queue entry")
        };
        q.handoff_complete(&accepted);
        handshakes.push((frame(&client.syn()), ack));
    }
    q.listener = batched(q.listener);
    // Each SYN and its ACK in one batch: the SYNs' MACs (their SYN-ACKs' cookies) together.
    let frames: Vec<Vec<u8>> = handshakes
        .into_iter()
        .flat_map(|(syn, ack)| [syn, ack])
        .collect();
    let frame_refs = refs(&frames);
    group.bench_function("syn_queue_handshake_batch", |b| {
        b.iter(|| {
            q.listener.handle_batch(q.now, &frame_refs, |batch| {
                for pair in 0..frame_refs.len() / 2 {
                    black_box(&batch.handle(2 * pair, tx));
                    let Verdict::Accepted(accepted) = batch.handle(2 * pair + 1, tx) else {
                        unreachable!("the ACK matches its queue entry")
                    };
                    batch.handle_handoff_complete(&accepted, true, tx);
                }
            })
        })
    });
}

fn bench_accept_queue(c: &mut Criterion) {
    let client = clients(1)[0];
    let mut h = Harness::new(config(SyncookiesMode::Always));
    let syn_ack = h.syn_ack_repr(&client);
    let Verdict::Accepted(accepted) = h.send(&client.ack(&syn_ack, b"")).0 else {
        unreachable!()
    };
    let queue = AcceptQueue::new(1024);
    let sender = queue.sender(1024);
    let receiver = queue.receiver();
    let mut group = c.benchmark_group("accept_queue");
    group.throughput(Throughput::Elements(1));
    group.bench_function("push_pop", |b| {
        b.iter_batched(
            || accepted.clone(),
            |accepted| {
                sender.try_push(accepted).unwrap();
                let Pop::Handshake(handshake) = receiver.pop(Duration::ZERO) else {
                    unreachable!()
                };
                handshake
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_wire,
    bench_cookie,
    bench_listener,
    bench_accept_queue
);
criterion_main!(benches);
