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
use synwall::cookie::{CookieInput, CookieJar, MssTable, SynOptions};
use synwall::listener::{DropReason, SyncookiesMode, Verdict};
use synwall::seq::SeqNumber;
use synwall::wire::{self, Endpoints, Parsed, TcpRepr};

const BATCH: usize = 64;

fn clients(count: usize) -> Vec<Client> {
    (0..count)
        .map(|i| {
            let addr = format!("198.18.{}.{}:{}", 128 + i / 250, i % 250 + 1, 1024 + i);
            Client::new(&addr, i as u32 * 7919, linux_options(i as u32))
        })
        .collect()
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
    let jar = CookieJar::new(keys(START_UNIX), MssTable::IPV4, MssTable::IPV6);
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

/// SYN in, cookie SYN-ACK out: parse, checksum, one MAC, emit.
fn bench_cookie_syns(group: &mut BenchmarkGroup<'_, WallTime>, clients: &[Client], tx: &mut [u8]) {
    let syns: Vec<Vec<u8>> = clients.iter().map(|client| frame(&client.syn())).collect();
    let Harness {
        listener: mut always,
        now,
        ..
    } = Harness::new(config(SyncookiesMode::Always));
    group.bench_function("syn_batch_cookie", |b| {
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
    let opener = Client::new("198.18.200.1:9", 1, linux_options(1));
    group.bench_function("cookie_ack_batch", |b| {
        b.iter_batched_ref(
            || {
                let mut h = Harness::new(small());
                h.syn_ack(&opener);
                h
            },
            |h| {
                for ack in &acks {
                    let Verdict::Accepted(accepted) = h.listener.handle_frame(h.now, ack, tx)
                    else {
                        unreachable!("every ACK carries a valid cookie")
                    };
                    h.listener
                        .handle_handoff_complete(h.now, &accepted, true, tx);
                }
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
    group.bench_function("forged_cookie_ack_batch", |b| {
        b.iter(|| {
            for ack in &forged {
                let verdict = flooded.listener.handle_frame(flooded.now, ack, tx);
                debug_assert_eq!(verdict, Verdict::Drop(DropReason::CookieInvalid));
                black_box(&verdict);
            }
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
    group.bench_function("syn_queue_handshake_batch", |b| {
        b.iter(|| {
            for (syn, ack) in &handshakes {
                black_box(&q.listener.handle_frame(q.now, syn, tx));
                let Verdict::Accepted(accepted) = q.listener.handle_frame(q.now, ack, tx) else {
                    unreachable!("the ACK matches its queue entry")
                };
                q.listener
                    .handle_handoff_complete(q.now, &accepted, true, tx);
            }
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
