// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * The lab's XDP SYN proxy: the strongest peer synwall is measured against
 * (`synwall-lab --target xdp-synproxy`). Not part of synwall itself.
 *
 * On the server's interface, for TCP to the served address and port:
 *   - a segment of a connection a kernel socket owns (bpf_skc_lookup_tcp finds
 *     one that is not listening)                         -> XDP_PASS
 *   - a SYN: answered from here with a SYN-ACK whose sequence number is the
 *     kernel's own SYN cookie (bpf_tcp_raw_gen_syncookie_ipv4/6), MSS option
 *     only, turned around in place                       -> XDP_TX
 *   - an ACK whose acknowledgment number is a valid kernel cookie
 *     (bpf_tcp_raw_check_syncookie_ipv4/6)               -> XDP_PASS, to the
 *     nftables `synproxy` behind, which checks it again and opens the connection
 *     to the kernel's listener
 *   - any other segment to the served port                -> XDP_DROP
 * Everything else goes on (XDP_PASS). IPv4 without options and IPv6 without
 * extension headers only; other layouts pass to the kernel (the synproxy
 * behind still guards them).
 *
 * `synproxy_pass` is a plain pass program for the client's end of a veth pair:
 * a frame sent with XDP_TX reaches the peer only when the peer runs XDP.
 *
 * Every decision on a segment to the served address and port is counted in `outcomes`
 * (one entry, struct outcomes), read by src/sys/synproxy.rs: SYNs answered, SYNs
 * that could not be answered, cookie ACKs passed, ACKs without a valid cookie, segments
 * of connections a kernel socket owns, and other segments dropped. The counters are
 * shared by all CPUs and added to atomically: in the lab one CPU runs the program.
 *
 * Maps: served (array, one entry: struct served) filled by src/sys/synproxy.rs;
 * outcomes (array, one entry: struct outcomes) read by it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define ETH_P_IP_BE bpf_htons(0x0800)
#define ETH_P_IPV6_BE bpf_htons(0x86DD)
#define STATE_LISTEN 10
/* The SYN-ACK: TCP header with one option, MSS. */
#define SYNACK_TCP_LEN 24
#define SYNACK_WINDOW 65535
#define OPTION_MSS 2
#define OPTION_MSS_LEN 4

struct served {
	__be16 port;
	__u8 family; /* 4 or 6 */
	__u8 pad;
	__u8 addr[16]; /* IPv4 in the first 4 bytes */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct served);
} served SEC(".maps");

/* What happened to a segment to the served address and port: the order of the counters
 * in struct outcomes, which `SynProxyCounters` in src/sys/synproxy.rs follows. */
enum outcome {
	SYN_ANSWERED,	/* a SYN-ACK with a cookie sent by XDP_TX */
	SYN_UNANSWERED, /* the cookie helper or the tail adjustment failed: dropped */
	ACK_PASSED,	/* a valid cookie ACK, passed to nftables synproxy */
	ACK_INVALID,	/* an ACK without a valid cookie: dropped */
	OWNED,		/* a segment of a connection a kernel socket owns: passed */
	OTHER_DROPPED,	/* a bad header length or other flags: dropped */
	OUTCOME_COUNT,
};

struct outcomes {
	__u64 count[OUTCOME_COUNT];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct outcomes);
} outcomes SEC(".maps");

/* Counts `outcome` and returns `action`. */
static __always_inline int counted(enum outcome outcome, int action)
{
	__u32 zero = 0;
	struct outcomes *counts = bpf_map_lookup_elem(&outcomes, &zero);

	if (counts)
		__sync_fetch_and_add(&counts->count[outcome], 1);
	return action;
}

/* The decision on an ACK from the cookie check's `result` (0: a valid cookie), counted. */
static __always_inline int checked(int result)
{
	return result == 0 ? counted(ACK_PASSED, XDP_PASS) : counted(ACK_INVALID, XDP_DROP);
}

/* Folds a 32-bit one's-complement sum into 16 bits. */
static __always_inline __u16 fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Whether the IPv6 address `address` is the 16 bytes `want`. */
static __always_inline int same_address(const struct in6_addr *address, const __u8 *want)
{
	__u32 words[4];

	__builtin_memcpy(words, want, 16);
	return address->in6_u.u6_addr32[0] == words[0] && address->in6_u.u6_addr32[1] == words[1] &&
	       address->in6_u.u6_addr32[2] == words[2] && address->in6_u.u6_addr32[3] == words[3];
}

/* Whether a kernel socket other than a listener owns the tuple. */
static __always_inline int owned(struct xdp_md *ctx, struct bpf_sock_tuple *tuple, __u32 len)
{
	struct bpf_sock *sk = bpf_skc_lookup_tcp(ctx, tuple, len, BPF_F_CURRENT_NETNS, 0);
	int owned;

	if (!sk)
		return 0;
	owned = sk->state != STATE_LISTEN;
	bpf_sk_release(sk);
	return owned;
}

/*
 * Turns the SYN `th` into its SYN-ACK with sequence number `cookie` and the MSS option
 * `mss`, in place; the caller swaps the addresses and fixes the IP header.
 */
static __always_inline void syn_ack(struct tcphdr *th, __u32 cookie, __u16 mss)
{
	__be16 port = th->source;
	__u32 *options = (__u32 *)(th + 1);

	th->source = th->dest;
	th->dest = port;
	th->ack_seq = bpf_htonl(bpf_ntohl(th->seq) + 1);
	th->seq = bpf_htonl(cookie);
	*((__u16 *)th + 6) = bpf_htons((SYNACK_TCP_LEN / 4) << 12 | 0x12); /* doff, SYN|ACK */
	th->window = bpf_htons(SYNACK_WINDOW);
	th->check = 0;
	th->urg_ptr = 0;
	*options = bpf_htonl(OPTION_MSS << 24 | OPTION_MSS_LEN << 16 | mss);
}

static __always_inline int tcp_sum(struct tcphdr *th, void *data_end, __u64 *sum)
{
	__u16 *word = (__u16 *)th;

#pragma unroll
	for (int i = 0; i < SYNACK_TCP_LEN / 2; i++) {
		if ((void *)(word + i + 1) > data_end)
			return -1;
		*sum += word[i];
	}
	return 0;
}

/* Cuts the frame to `len` bytes, the headers of the SYN-ACK about to be written over the SYN;
 * non-zero when the kernel refuses. The frame's pointers must be taken again after it. */
static __always_inline int shrink_to(struct xdp_md *ctx, __u32 len)
{
	return bpf_xdp_adjust_tail(ctx, (int)len - (int)(ctx->data_end - ctx->data));
}

/* Turns the frame around on the link: its Ethernet source and destination swapped. */
static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 mac[ETH_ALEN];

	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
}

static __always_inline int ipv4(struct xdp_md *ctx, struct ethhdr *eth, void *data_end,
				struct served *want)
{
	struct iphdr *iph = (void *)(eth + 1);
	struct bpf_sock_tuple tuple = {};
	struct tcphdr *th;
	__u32 th_len, addr;
	__s64 cookie;
	__u64 sum;

	if ((void *)(iph + 1) > data_end || iph->ihl != 5 || iph->protocol != IPPROTO_TCP)
		return XDP_PASS;
	th = (void *)(iph + 1);
	if ((void *)(th + 1) > data_end)
		return XDP_PASS;
	__builtin_memcpy(&addr, want->addr, 4);
	if (want->family != 4 || th->dest != want->port || iph->daddr != addr)
		return XDP_PASS;
	tuple.ipv4.saddr = iph->saddr;
	tuple.ipv4.daddr = iph->daddr;
	tuple.ipv4.sport = th->source;
	tuple.ipv4.dport = th->dest;
	if (owned(ctx, &tuple, sizeof(tuple.ipv4)))
		return counted(OWNED, XDP_PASS);
	th_len = th->doff * 4;
	if (th_len < sizeof(*th) || th_len > 60)
		return counted(OTHER_DROPPED, XDP_DROP);
	if (th->syn && !th->ack && !th->rst && !th->fin) {
		__u8 header[60];

		/* The cookie helper reads the whole header with its options: from a copy, whose
		 * length the verifier can bound. */
		if (bpf_xdp_load_bytes(ctx, sizeof(*eth) + sizeof(*iph), header, th_len))
			return counted(SYN_UNANSWERED, XDP_DROP);
		cookie = bpf_tcp_raw_gen_syncookie_ipv4(iph, (struct tcphdr *)header, th_len);
		if (cookie < 0)
			return counted(SYN_UNANSWERED, XDP_DROP);
		if (shrink_to(ctx, sizeof(*eth) + sizeof(*iph) + SYNACK_TCP_LEN))
			return counted(SYN_UNANSWERED, XDP_DROP);
		/* The frame moved: take its headers again. */
		eth = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		iph = (void *)(eth + 1);
		th = (void *)(iph + 1);
		if ((void *)th + SYNACK_TCP_LEN > data_end)
			return counted(SYN_UNANSWERED, XDP_DROP);
		syn_ack(th, (__u32)cookie, (__u16)(cookie >> 32));
		swap_macs(eth);
		addr = iph->saddr;
		iph->saddr = iph->daddr;
		iph->daddr = addr;
		iph->tot_len = bpf_htons(sizeof(*iph) + SYNACK_TCP_LEN);
		iph->ttl = 64;
		iph->id = 0;
		iph->tos = 0;
		iph->check = 0;
		sum = 0;
#pragma unroll
		for (int i = 0; i < 10; i++)
			sum += ((__u16 *)iph)[i];
		iph->check = fold(sum);
		/* Pseudo-header: addresses, protocol, TCP length. */
		sum = (iph->saddr & 0xffff) + (iph->saddr >> 16) + (iph->daddr & 0xffff) +
		      (iph->daddr >> 16) + bpf_htons(IPPROTO_TCP) + bpf_htons(SYNACK_TCP_LEN);
		if (tcp_sum(th, data_end, &sum))
			return counted(SYN_UNANSWERED, XDP_DROP);
		th->check = fold(sum);
		return counted(SYN_ANSWERED, XDP_TX);
	}
	if (th->ack && !th->syn && !th->rst)
		return checked(bpf_tcp_raw_check_syncookie_ipv4(iph, th));
	return counted(OTHER_DROPPED, XDP_DROP);
}

static __always_inline int ipv6(struct xdp_md *ctx, struct ethhdr *eth, void *data_end,
				struct served *want)
{
	struct ipv6hdr *ip6h = (void *)(eth + 1);
	struct bpf_sock_tuple tuple = {};
	struct tcphdr *th;
	__u32 th_len;
	__s64 cookie;
	__u64 sum;

	if ((void *)(ip6h + 1) > data_end || ip6h->nexthdr != IPPROTO_TCP)
		return XDP_PASS;
	th = (void *)(ip6h + 1);
	if ((void *)(th + 1) > data_end)
		return XDP_PASS;
	if (want->family != 6 || th->dest != want->port || !same_address(&ip6h->daddr, want->addr))
		return XDP_PASS;
	__builtin_memcpy(tuple.ipv6.saddr, &ip6h->saddr, 16);
	__builtin_memcpy(tuple.ipv6.daddr, &ip6h->daddr, 16);
	tuple.ipv6.sport = th->source;
	tuple.ipv6.dport = th->dest;
	if (owned(ctx, &tuple, sizeof(tuple.ipv6)))
		return counted(OWNED, XDP_PASS);
	th_len = th->doff * 4;
	if (th_len < sizeof(*th) || th_len > 60)
		return counted(OTHER_DROPPED, XDP_DROP);
	if (th->syn && !th->ack && !th->rst && !th->fin) {
		struct in6_addr address;
		__u8 header[60];

		if (bpf_xdp_load_bytes(ctx, sizeof(*eth) + sizeof(*ip6h), header, th_len))
			return counted(SYN_UNANSWERED, XDP_DROP);
		cookie = bpf_tcp_raw_gen_syncookie_ipv6(ip6h, (struct tcphdr *)header, th_len);
		if (cookie < 0)
			return counted(SYN_UNANSWERED, XDP_DROP);
		if (shrink_to(ctx, sizeof(*eth) + sizeof(*ip6h) + SYNACK_TCP_LEN))
			return counted(SYN_UNANSWERED, XDP_DROP);
		eth = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		ip6h = (void *)(eth + 1);
		th = (void *)(ip6h + 1);
		if ((void *)th + SYNACK_TCP_LEN > data_end)
			return counted(SYN_UNANSWERED, XDP_DROP);
		syn_ack(th, (__u32)cookie, (__u16)(cookie >> 32));
		swap_macs(eth);
		address = ip6h->saddr;
		ip6h->saddr = ip6h->daddr;
		ip6h->daddr = address;
		ip6h->payload_len = bpf_htons(SYNACK_TCP_LEN);
		ip6h->hop_limit = 64;
		sum = bpf_htons(IPPROTO_TCP) + bpf_htons(SYNACK_TCP_LEN);
#pragma unroll
		for (int i = 0; i < 8; i++)
			sum += ((__u16 *)&ip6h->saddr)[i] + ((__u16 *)&ip6h->daddr)[i];
		if (tcp_sum(th, data_end, &sum))
			return counted(SYN_UNANSWERED, XDP_DROP);
		th->check = fold(sum);
		return counted(SYN_ANSWERED, XDP_TX);
	}
	if (th->ack && !th->syn && !th->rst)
		return checked(bpf_tcp_raw_check_syncookie_ipv6(ip6h, th));
	return counted(OTHER_DROPPED, XDP_DROP);
}

SEC("xdp")
int synproxy_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 zero = 0;
	struct served *want = bpf_map_lookup_elem(&served, &zero);

	if (!want || (void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == ETH_P_IP_BE)
		return ipv4(ctx, eth, data_end, want);
	if (eth->h_proto == ETH_P_IPV6_BE)
		return ipv6(ctx, eth, data_end, want);
	return XDP_PASS;
}

SEC("xdp")
int synproxy_pass(struct xdp_md *ctx __attribute__((unused)))
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
