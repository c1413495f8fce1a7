// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * synwall native handoff programs (TC). Both hand a handshake that synwall
 * answered to the listening socket of the served port (the protected service's
 * own): they ask the kernel to build the connection as if it had checked its own
 * SYN cookie (kfunc bpf_sk_assign_tcp_reqsk, Linux 6.9+). The kernel then queues
 * an ordinary established socket on that listener, with the client's address and
 * the negotiated options, and takes in the ACK's data.
 *
 * synwall_finish (tcx ingress of the served interface): the final ACK of a
 * handshake from a shard's SYN queue, which the steering program let through
 * because the shard recorded the handshake in `kernel_handshakes`
 * (kernel_handshake.h). The kernel completes it in its receive path; nothing of
 * it reaches user space. The outcome goes into the entry (`status`, which the
 * steering program reads) and into `completion_reports`, which the shard reads to
 * retire the handshake from its SYN queue. When nothing listens on the port the
 * ACK goes on to the kernel, which answers it with a RST as it would without
 * synwall; an ACK whose values the kfunc refuses is dropped, and the rest of
 * that handshake goes to user space (synwall_handoff's way). It looks a segment
 * up only while the steering program's gate is open (completions_until, for
 * COMPLETIONS_GATE_NS after it last let such an ACK through): nearly every other
 * segment belongs to a connection the kernel already has.
 *
 * synwall_handoff (tcx ingress of the loopback device): a handshake that synwall
 * completed itself (a cookie, or a SYN-queue entry whose ACK reached user
 * space). The fast path records what it negotiated in `pending`, then sends the
 * final ACK to the local stack through a raw socket: a locally addressed packet
 * travels through `lo`, whose ingress runs this program. The program writes the
 * outcome into the entry (`status`) for the fast path, which deletes the entry.
 * An ACK that gets no socket is dropped here, so that the kernel does not answer
 * it; synwall resets the client itself. Only packets with synwall's priority
 * (INJECTED_PRIORITY) are looked at: the rest of the loopback traffic passes.
 *
 * Every other packet goes on untouched, to the next program or the stack
 * (TCX_NEXT). Both programs read IPv4 headers without options and IPv6 headers
 * followed directly by TCP, without a VLAN tag: synwall builds its ACKs so, and
 * the steering program lets only those through.
 *
 * Maps (written and read by src/sys/native.rs; keep the layouts in sync):
 *   pending : hash, struct bpf_sock_tuple (zero-padded, source = the client)
 *             -> struct pending_handoff.
 *   kernel_handshakes, completions_until : see kernel_handshake.h; the steering
 *             program's maps, shared (libbpf reuses their fds).
 *   completion_reports : ring buffer of struct completion_report.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "kernel_handshake.h"

#define MAX_PENDING 4096
/* About 4,600 reports: what a shard reads every few milliseconds. */
#define COMPLETION_REPORTS_BYTES (256 * 1024)
#define TCPOPT_NOP 1
#define TCPOPT_TIMESTAMP 8
#define TCPOLEN_TIMESTAMP 10

/* tcx verdicts (linux/bpf.h of Linux 6.6; the build's UAPI headers may be older). */
#define TCX_NEXT -1
#define TCX_PASS 0
#define TCX_DROP 2

#define ETH_P_IP_BE bpf_htons(0x0800)
#define ETH_P_IPV6_BE bpf_htons(0x86DD)

/* Socket states of struct bpf_sock (include/net/tcp_states.h). */
#define STATE_TIME_WAIT 6
#define STATE_LISTEN 10

/* Outcomes besides the kfunc's own (0, or a negative errno). */
enum status {
	STATUS_PENDING = 1, /* written by synwall: not seen yet */
	STATUS_NO_LISTENER = 2, /* nothing listens on the served port */
	STATUS_TIME_WAIT = 3, /* a TIME_WAIT socket still holds the tuple */
	STATUS_OCCUPIED = 4, /* another live socket holds the tuple */
};

/* The priority (SO_PRIORITY) synwall's raw sockets give every packet they send
 * (src/sys/inject.rs): synwall_handoff looks up those packets only, and lets the
 * host's other loopback traffic by without parsing it. */
enum injected {
	INJECTED_PRIORITY = 1937206380, /* 0x73776c6c, "swll" */
};

struct pending_handoff {
	struct bpf_tcp_req_attrs attrs;
	__s32 status;
};

/* The kernel's socket, only pointed to. A complete type, because libbpf matches the kfunc's
 * prototype kind by kind and a forward declaration is another kind than the kernel's struct. */
struct sock {
	int opaque;
};

extern int bpf_sk_assign_tcp_reqsk(struct __sk_buff *skb, struct sock *sk,
				   struct bpf_tcp_req_attrs *attrs, int attrs__sz) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PENDING);
	__type(key, struct bpf_sock_tuple);
	__type(value, struct pending_handoff);
} pending SEC(".maps");

/* What became of a kernel_handshakes entry's final ACK. */
struct completion_report {
	struct bpf_sock_tuple tuple;
	__u32 family; /* 4 or 6: the variant of the tuple */
	__u32 queue; /* the entry's */
	__be32 ack; /* the entry's: our ISN + 1 */
	__s32 status; /* 0, a negative errno or STATUS_* */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, COMPLETION_REPORTS_BYTES);
} completion_reports SEC(".maps");

/* Reports that found the ring buffer full (index 0). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_reports SEC(".maps");

/*
 * The tuple of a TCP packet that starts with an Ethernet header; its size, or 0.
 * Copies the TCP header into `th` and sets `tcp_offset` to where it starts.
 */
static __always_inline __u32 load_tuple(struct __sk_buff *skb, struct bpf_sock_tuple *tuple,
					struct tcphdr *th, __u32 *tcp_offset)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 tuple_len;

	if ((void *)(eth + 1) > data_end)
		return 0;
	if (eth->h_proto == ETH_P_IP_BE) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end || iph->ihl != 5 || iph->protocol != IPPROTO_TCP)
			return 0;
		tuple->ipv4.saddr = iph->saddr;
		tuple->ipv4.daddr = iph->daddr;
		*tcp_offset = sizeof(*eth) + sizeof(*iph);
		tuple_len = sizeof(tuple->ipv4);
	} else if (eth->h_proto == ETH_P_IPV6_BE) {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		if ((void *)(ip6h + 1) > data_end || ip6h->nexthdr != IPPROTO_TCP)
			return 0;
		__builtin_memcpy(tuple->ipv6.saddr, &ip6h->saddr, sizeof(tuple->ipv6.saddr));
		__builtin_memcpy(tuple->ipv6.daddr, &ip6h->daddr, sizeof(tuple->ipv6.daddr));
		*tcp_offset = sizeof(*eth) + sizeof(*ip6h);
		tuple_len = sizeof(tuple->ipv6);
	} else {
		return 0;
	}
	if (bpf_skb_load_bytes(skb, *tcp_offset, th, sizeof(*th)))
		return 0;
	/* sport and dport sit at the same place in both variants of the tuple. */
	if (tuple_len == sizeof(tuple->ipv4)) {
		tuple->ipv4.sport = th->source;
		tuple->ipv4.dport = th->dest;
	} else {
		tuple->ipv6.sport = th->source;
		tuple->ipv6.dport = th->dest;
	}
	return tuple_len;
}

/*
 * The timestamp option of the segment whose options start `at` bytes into the
 * packet and are `len` bytes long: 1 with its values in host order, or 0. Only
 * the layouts TCP stacks send on an ACK are read (the option first, or after two
 * NOPs, as the kernel's own tcp_parse_aligned_timestamp does): a loop over every
 * option would cost the verifier more than the rare other layout is worth, and
 * the caller has the handshake's own values to fall back on.
 */
static __always_inline int load_timestamps(struct __sk_buff *skb, __u32 at, __u32 len,
					   __u32 *tsval, __u32 *tsecr)
{
	__u8 option[TCPOLEN_TIMESTAMP + 2];
	__be32 values[2];
	__u32 values_at;

	if (len < TCPOLEN_TIMESTAMP || bpf_skb_load_bytes(skb, at, option, TCPOLEN_TIMESTAMP))
		return 0;
	if (option[0] == TCPOPT_TIMESTAMP && option[1] == TCPOLEN_TIMESTAMP) {
		values_at = at + 2;
	} else if (option[0] == TCPOPT_NOP && option[1] == TCPOPT_NOP &&
		   option[2] == TCPOPT_TIMESTAMP && option[3] == TCPOLEN_TIMESTAMP &&
		   len >= TCPOLEN_TIMESTAMP + 2) {
		values_at = at + 4;
	} else {
		return 0;
	}
	if (bpf_skb_load_bytes(skb, values_at, values, sizeof(values)))
		return 0;
	*tsval = bpf_ntohl(values[0]);
	*tsecr = bpf_ntohl(values[1]);
	return 1;
}

/*
 * Builds the connection with `attrs` on the listener of `tuple`: 0 or a status.
 *
 * bpf_sk_lookup_tcp gives full sockets only (a listener, or a live connection of the tuple):
 * a pointer the kfunc takes as it is. bpf_skc_to_tcp_sock would need CAP_PERFMON, which
 * synwall runs without. When it finds nothing, bpf_skc_lookup_tcp tells a TIME-WAIT (or
 * request) socket of the tuple from no socket at all.
 */
static __always_inline int assign(struct __sk_buff *skb, struct bpf_sock_tuple *tuple,
				  __u32 tuple_len, struct bpf_tcp_req_attrs *attrs)
{
	struct bpf_sock *sk;
	int status;

	sk = bpf_sk_lookup_tcp(skb, tuple, tuple_len, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		if (sk->state == STATE_LISTEN)
			status = bpf_sk_assign_tcp_reqsk(skb, (struct sock *)sk, attrs,
							 sizeof(*attrs));
		else
			status = STATUS_OCCUPIED;
		bpf_sk_release(sk);
		return status;
	}
	sk = bpf_skc_lookup_tcp(skb, tuple, tuple_len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return STATUS_NO_LISTENER;
	status = sk->state == STATE_TIME_WAIT ? STATUS_TIME_WAIT : STATUS_OCCUPIED;
	bpf_sk_release(sk);
	return status;
}

SEC("tc")
int synwall_handoff(struct __sk_buff *skb)
{
	struct bpf_sock_tuple tuple = {};
	struct pending_handoff *entry;
	struct tcphdr th;
	__u32 tcp_offset;
	__u32 tuple_len;
	int status;

	if (skb->priority != INJECTED_PRIORITY)
		return TCX_NEXT;
	tuple_len = load_tuple(skb, &tuple, &th, &tcp_offset);
	if (!tuple_len)
		return TCX_NEXT;
	entry = bpf_map_lookup_elem(&pending, &tuple);
	if (!entry || entry->status != STATUS_PENDING)
		return TCX_NEXT;
	status = assign(skb, &tuple, tuple_len, &entry->attrs);
	entry->status = status;
	return status == 0 ? TCX_PASS : TCX_DROP;
}

static __always_inline void report(struct bpf_sock_tuple *tuple, __u32 tuple_len,
				   struct kernel_handshake *entry, int status)
{
	struct completion_report report = {
		.tuple = *tuple,
		.family = tuple_len == sizeof(tuple->ipv4) ? 4 : 6,
		.queue = entry->queue,
		.ack = entry->ack,
		.status = status,
	};
	__u32 first = 0;
	__u64 *lost;

	/* No wake-up: the shard reads the ring on each round of its loop. */
	if (!bpf_ringbuf_output(&completion_reports, &report, sizeof(report), BPF_RB_NO_WAKEUP))
		return;
	lost = bpf_map_lookup_elem(&lost_reports, &first);
	if (lost)
		__sync_fetch_and_add(lost, 1);
}

SEC("tc")
int synwall_finish(struct __sk_buff *skb)
{
	struct bpf_sock_tuple tuple = {};
	struct kernel_handshake *entry;
	struct bpf_tcp_req_attrs attrs;
	struct tcphdr th;
	__u32 tcp_offset;
	__u32 tuple_len;
	int status;

	if (!completions_gate_open())
		return TCX_NEXT;
	tuple_len = load_tuple(skb, &tuple, &th, &tcp_offset);
	if (!tuple_len)
		return TCX_NEXT;
	entry = bpf_map_lookup_elem(&kernel_handshakes, &tuple);
	if (!entry || !th.ack || th.syn || th.rst || th.seq != entry->seq || th.ack_seq != entry->ack)
		return TCX_NEXT;
	if (entry->status != STATUS_PENDING)
		/* A later segment of a handshake already seen: to its socket, or, refused,
		 * not to the listener, which would reset the client. */
		return entry->status < 0 ? TCX_DROP : TCX_NEXT;
	attrs = entry->attrs;
	/* The ACK echoes the TSval of the SYN-ACK it answers (a retransmission's is later):
	 * the kernel's clock for the connection continues from it. */
	if (attrs.tstamp_ok)
		load_timestamps(skb, tcp_offset + sizeof(th), th.doff * 4 - sizeof(th),
				&attrs.rcv_tsval, &attrs.rcv_tsecr);
	status = assign(skb, &tuple, tuple_len, &attrs);
	entry->status = status;
	report(&tuple, tuple_len, entry, status);
	if (status == 0)
		return TCX_PASS;
	/* Refused: user space completes the handshake. Anything else belongs to the
	 * kernel, which answers as it would without synwall (a RST when nothing listens). */
	return status < 0 ? TCX_DROP : TCX_NEXT;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
