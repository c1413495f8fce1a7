// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * synwall native handoff program (TC, tcx ingress of the loopback device).
 *
 * A handoff worker has a handshake that synwall completed. It records what the
 * handshake negotiated in `pending`, keyed by the connection's tuple as the client
 * sends it, then sends the final ACK to the local stack through a raw socket: a
 * locally addressed packet travels through `lo`, whose ingress runs this program.
 * For a packet whose tuple is pending, the program finds the listening socket of
 * the served port (the protected service's own) and asks the kernel to build the
 * connection as if it had checked its own SYN cookie (kfunc
 * bpf_sk_assign_tcp_reqsk, Linux 6.9+). The kernel then queues an ordinary
 * established socket on that listener, with the client's address and the
 * negotiated options, and takes in the ACK's data.
 *
 * The program writes the outcome into the entry (`status`) for the worker, which
 * deletes the entry. An ACK that gets no socket is dropped here, so that the
 * kernel does not answer it; synwall resets the client itself. Every other packet
 * goes on untouched, to the next program or the stack (TCX_NEXT).
 *
 * The worker builds the ACK itself: an IPv4 header without options, or an IPv6
 * header followed directly by TCP, so no other layout needs to be followed here.
 *
 * Maps (written and read by src/sys/native.rs; keep the layouts in sync):
 *   pending : hash, struct bpf_sock_tuple (zero-padded, source = the client)
 *             -> struct pending_handoff.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_PENDING 4096

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
	STATUS_PENDING = 1, /* written by the worker: not seen yet */
	STATUS_NO_LISTENER = 2, /* nothing listens on the served port */
	STATUS_TIME_WAIT = 3, /* a TIME_WAIT socket still holds the tuple */
	STATUS_OCCUPIED = 4, /* another live socket holds the tuple */
};

/* As include/net/tcp.h has it: the kfunc checks the size, libbpf the name. */
struct bpf_tcp_req_attrs {
	__u32 rcv_tsval;
	__u32 rcv_tsecr;
	__u16 mss;
	__u8 rcv_wscale;
	__u8 snd_wscale;
	__u8 ecn_ok;
	__u8 wscale_ok;
	__u8 sack_ok;
	__u8 tstamp_ok;
	__u8 usec_ts_ok;
	__u8 reserved[3];
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

/* The tuple of a TCP packet that starts with an Ethernet header; its size, or 0. */
static __always_inline __u32 load_tuple(struct __sk_buff *skb, struct bpf_sock_tuple *tuple)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct tcphdr *th;

	if ((void *)(eth + 1) > data_end)
		return 0;
	if (eth->h_proto == ETH_P_IP_BE) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end || iph->ihl != 5 || iph->protocol != IPPROTO_TCP)
			return 0;
		th = (void *)(iph + 1);
		if ((void *)(th + 1) > data_end)
			return 0;
		tuple->ipv4.saddr = iph->saddr;
		tuple->ipv4.daddr = iph->daddr;
		tuple->ipv4.sport = th->source;
		tuple->ipv4.dport = th->dest;
		return sizeof(tuple->ipv4);
	}
	if (eth->h_proto == ETH_P_IPV6_BE) {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		if ((void *)(ip6h + 1) > data_end || ip6h->nexthdr != IPPROTO_TCP)
			return 0;
		th = (void *)(ip6h + 1);
		if ((void *)(th + 1) > data_end)
			return 0;
		__builtin_memcpy(tuple->ipv6.saddr, &ip6h->saddr, sizeof(tuple->ipv6.saddr));
		__builtin_memcpy(tuple->ipv6.daddr, &ip6h->daddr, sizeof(tuple->ipv6.daddr));
		tuple->ipv6.sport = th->source;
		tuple->ipv6.dport = th->dest;
		return sizeof(tuple->ipv6);
	}
	return 0;
}

/*
 * Builds the connection of `entry` on the listener of `tuple`: 0 or a status.
 *
 * bpf_sk_lookup_tcp gives full sockets only (a listener, or a live connection of the tuple):
 * a pointer the kfunc takes as it is. bpf_skc_to_tcp_sock would need CAP_PERFMON, which
 * synwall runs without. When it finds nothing, bpf_skc_lookup_tcp tells a TIME-WAIT (or
 * request) socket of the tuple from no socket at all.
 */
static __always_inline int assign(struct __sk_buff *skb, struct bpf_sock_tuple *tuple,
				  __u32 tuple_len, struct pending_handoff *entry)
{
	struct bpf_sock *sk;
	int status;

	sk = bpf_sk_lookup_tcp(skb, tuple, tuple_len, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		if (sk->state == STATE_LISTEN)
			status = bpf_sk_assign_tcp_reqsk(skb, (struct sock *)sk, &entry->attrs,
							 sizeof(entry->attrs));
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
	__u32 tuple_len;
	int status;

	tuple_len = load_tuple(skb, &tuple);
	if (!tuple_len)
		return TCX_NEXT;
	entry = bpf_map_lookup_elem(&pending, &tuple);
	if (!entry || entry->status != STATUS_PENDING)
		return TCX_NEXT;
	status = assign(skb, &tuple, tuple_len, entry);
	entry->status = status;
	return status == 0 ? TCX_PASS : TCX_DROP;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
