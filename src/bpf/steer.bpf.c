// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * synwall steering program (XDP).
 *
 * Decides, for every frame received on the interface, who handles it:
 *   - not ours (ARP, ICMP, ICMPv6/NDP, UDP, other ports, other addresses,
 *     non-first fragments)                                 -> XDP_PASS (kernel)
 *   - TCP to a served address:port that a kernel socket in a non-LISTEN state
 *     owns (ESTABLISHED, TIME_WAIT, SYN_RECV, ...)         -> XDP_PASS (kernel),
 *     except pure SYNs over TIME_WAIT, tuples in handing_off and the TIME_WAIT
 *     tuples in tw_handshakes (below)
 *   - a SYN for a served port where a kernel socket listens (the service's own in
 *     native handoff, synwall's own in repair mode; bit SERVED_KERNEL_FIRST) while
 *     the listener's SYN queue has room and this CPU has not found it full in
 *     the last TAKEOVER_HOLD_NS                             -> XDP_PASS (kernel:
 *     the listener answers, as without synwall). Once this CPU finds
 *     the queue full, the point where the kernel would answer with syncookies,
 *     every SYN it sees is ours for TAKEOVER_HOLD_NS
 *   - an ACK that no kernel socket but the port's listener matches, carrying
 *     a valid syncookie of that listener (SERVED_KERNEL_FIRST: the kernel sent it
 *     for a SYN passed to it as its SYN queue filled)     -> XDP_PASS (kernel,
 *     whose listener completes the handshake from its cookie)
 *   - a SYN that finds a TIME_WAIT socket: the client reconnects over a 4-tuple
 *     the kernel still holds. When a kernel socket listens on the port (the
 *     service's in native handoff, synwall's own in repair mode with kernel-first;
 *     bit SERVED_KERNEL_REOPENS)                           -> XDP_PASS (kernel:
 *     the TIME_WAIT socket gives way to that listener, RFC 6191, as without
 *     synwall; no flood picks these tuples).
 *     Otherwise its tuple is remembered (tw_handshakes), so the rest of the new
 *     handshake also comes to us, as the kernel's own listener would take it;
 *     the handoff then replaces the TIME_WAIT socket
 *   - a frame with an 802.1Q tag of a VLAN that `vlans` does not list (one the host
 *     has no served address on)                           -> XDP_PASS (kernel, which
 *     drops it or hands it to its VLAN device, as it does any tagged frame)
 *   - the final ACK of a handshake in kernel_handshakes (native mode), and the
 *     segments after it, while no kernel socket has the tuple yet: the
 *     sequence and acknowledgment numbers the handshake expects, not a SYN or
 *     RST, not refused by the completion program, no VLAN tag, no IPv4
 *     options or IPv6 extension headers                    -> XDP_PASS (kernel,
 *     where synwall's completion program builds the socket, its gate,
 *     completions_until, opened for COMPLETIONS_GATE_NS)
 *   - every other TCP segment to a served address:port     -> XSKMAP[rx queue]
 *     and, when no AF_XDP socket is registered there, XDP_DROP: a served
 *     port's segments never leak to the kernel, which would answer with a RST
 *     or let a kernel listener complete the handshake.
 *
 * Maps (filled and read by src/sys/steer.rs; keep the layouts in sync):
 *   served   : hash, struct served_key -> __u8 bits: SERVED, and the
 *              SERVED_KERNEL_* bits of enum served_flag. Port 0 is the "this address
 *              serves some port" marker used for segments whose ports are not
 *              visible. An all-zero address is the wildcard of its family.
 *   xsks     : XSKMAP, rx queue index -> AF_XDP socket.
 *   counters : per-CPU array of __u64, indexed by enum counter.
 *   takeover_until : per-CPU array of one __u64: until when (bpf_ktime_get_coarse_ns)
 *              this CPU sends every SYN to synwall, after it found a full SYN queue.
 *   kernel_cookies_until : array of one __u64: until when ACKs may carry a syncookie
 *              the port's listener sent, KERNEL_COOKIES_NS after any CPU last
 *              found its SYN queue full.
 *   vlans    : array of __u8, indexed by VLAN id: 1 for a VLAN whose device on this
 *              interface holds a served address.
 *   tw_handshakes : LRU hash of struct bpf_sock_tuple (zero-padded) -> __u8:
 *              4-tuples of handshakes begun over a TIME_WAIT socket.
 *   handing_off : LRU hash of struct bpf_sock_tuple (zero-padded) -> __u8:
 *              4-tuples whose kernel socket a worker is building with TCP_REPAIR.
 *              Such a socket is hashed (ESTABLISHED) before its timestamps,
 *              options and windows are restored; its segments keep going to
 *              user space, which holds them for it, until it is ready.
 *   kernel_handshakes, completions_until : see kernel_handshake.h; shared with
 *              the native handoff's completion program.
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

#define MAX_QUEUES 256
#define VLAN_IDS 4096
#define VLAN_ID_MASK 0x0FFF
#define MAX_SERVED 256
#define MAX_IPV6_EXT_HDRS 4
#define MAX_TW_HANDSHAKES 4096
#define MAX_HANDING_OFF 65536
/* How long a CPU keeps sending every SYN to synwall after it found the service's
 * SYN queue full. Each time it ends during a flood, up to a queue's worth of SYNs
 * reach the kernel again before the queue is full again. */
#define TAKEOVER_HOLD_NS (10ULL * 1000 * 1000 * 1000)
/* How long the kernel accepts its syncookies after its listener's SYN queue last
 * overflowed (TCP_SYNCOOKIE_VALID: two minutes). */
#define KERNEL_COOKIES_NS (120ULL * 1000 * 1000 * 1000)
/* The longest TCP header: bpf_tcp_gen_syncookie reads the options. */
#define MAX_TCP_HEADER 60

/* `served` values: bits. */
enum served_flag {
	SERVED = 1,
	SERVED_KERNEL_LISTENS = 2, /* the service listens on the port itself (native) */
	SERVED_KERNEL_FIRST = 4, /* its listener (native or repair) answers SYNs until full */
	SERVED_KERNEL_REOPENS = 8, /* a SYN over a TIME-WAIT tuple goes to its listener */
};

#define ETH_P_8021Q_BE bpf_htons(0x8100)
#define ETH_P_IP_BE bpf_htons(0x0800)
#define ETH_P_IPV6_BE bpf_htons(0x86DD)
#define IPV4_FRAG_OFFSET_MASK 0x1FFF
#define IPV6_FRAG_OFFSET_MASK 0xFFF8

/* Where the TCP header starts in a frame without VLAN tag, IPv4 options or IPv6
 * extension headers: the only layout the completion program reads. */
#define PLAIN_IPV4_TCP_OFFSET (14 + 20)
#define PLAIN_IPV6_TCP_OFFSET (14 + 40)

#define NEXTHDR_HOP 0
#define NEXTHDR_TCP 6
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60

enum counter {
	COUNTER_PASSED = 0,
	COUNTER_REDIRECTED = 1,
	COUNTER_DROPPED_NO_XSK = 2,
	COUNTER_KERNEL_OWNED = 3,
	COUNTER_KERNEL_COMPLETES = 4,
	COUNTER_KERNEL_REOPENS = 5,
	COUNTER_KERNEL_ANSWERS = 6,
	COUNTER_TAKEOVERS = 7,
	COUNTER_KERNEL_COOKIES = 8,
	COUNTER_MAX = 9,
};

struct served_key {
	__u8 family; /* 4 or 6 */
	__u8 pad;
	__be16 port; /* network byte order; 0 = address marker */
	__u8 addr[16]; /* IPv4 in the first 4 bytes; all zero = wildcard */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVED);
	__type(key, struct served_key);
	__type(value, __u8);
} served SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} takeover_until SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kernel_cookies_until SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VLAN_IDS);
	__type(key, __u32);
	__type(value, __u8);
} vlans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_TW_HANDSHAKES);
	__type(key, struct bpf_sock_tuple);
	__type(value, __u8);
} tw_handshakes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_HANDING_OFF);
	__type(key, struct bpf_sock_tuple);
	__type(value, __u8);
} handing_off SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct ipv6_ext_hdr {
	__u8 nexthdr;
	__u8 hdrlen; /* in 8-octet units, not counting the first 8 octets */
};

struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-octet units << 3 | flags */
	__be32 identification;
};

enum verdict {
	VERDICT_PASS, /* not ours */
	VERDICT_KERNEL, /* ours, but a kernel socket owns the connection */
	VERDICT_XSK, /* ours: to user space */
	VERDICT_KERNEL_COMPLETES, /* ours: the kernel builds the handshake's socket */
	VERDICT_KERNEL_REOPENS, /* ours: a SYN over a TIME-WAIT tuple, for the port's listener */
	VERDICT_KERNEL_ANSWERS, /* ours: a SYN the port's listener answers, no flood seen */
	VERDICT_KERNEL_COOKIE, /* ours: an ACK with a syncookie the port's listener sent */
};

static __always_inline void count(__u32 which)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &which);

	if (value)
		*value += 1;
}

/* The `served` value of the key: exact address first, then the wildcard of the
 * family; 0 when not served. Clobbers key->addr. */
static __always_inline __u8 served_flags(struct served_key *key)
{
	__u8 *flags = bpf_map_lookup_elem(&served, key);

	if (flags)
		return *flags;
	__builtin_memset(key->addr, 0, sizeof(key->addr));
	flags = bpf_map_lookup_elem(&served, key);
	return flags ? *flags : 0;
}

static __always_inline int is_served(struct served_key *key)
{
	return served_flags(key) != 0;
}

/* Segments whose ports cannot be seen: ours when the address serves anything. */
static __always_inline enum verdict served_address_verdict(struct served_key *key)
{
	key->port = 0;
	return is_served(key) ? VERDICT_XSK : VERDICT_PASS;
}

/* The state of the kernel socket for the tuple, or -1 when there is none. */
static __always_inline int socket_state(struct xdp_md *ctx, struct bpf_sock_tuple *tuple,
					__u32 tuple_len)
{
	struct bpf_sock *sk;
	int state;

	sk = bpf_skc_lookup_tcp(ctx, tuple, tuple_len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return -1;
	state = sk->state;
	bpf_sk_release(sk);
	return state;
}

/*
 * A segment's IP and TCP headers, copied for the kernel's syncookie helpers. The
 * lengths are 64-bit: the verifier keeps the bounds of a whole register spilled
 * to the stack, and the helpers need them.
 */
struct headers {
	__u8 ip[sizeof(struct ipv6hdr)];
	__u8 tcp[MAX_TCP_HEADER];
	__u64 ip_len;
	__u64 tcp_len;
};

/*
 * Copies the IP header (its first 20 or 40 bytes: the kernel's helpers refuse
 * IPv4 options and IPv6 extension headers) and the whole TCP header of the frame
 * into `h`, and returns the socket of the 4-tuple `tuple` if it is a listener,
 * NULL otherwise. The caller releases it. The IP header starts `ip_offset` bytes
 * into the frame, the TCP header `tcp_offset`.
 */
static __always_inline struct bpf_sock *listener_and_headers(struct xdp_md *ctx,
							     __u32 ip_offset, __u32 tcp_offset,
							     struct bpf_sock_tuple *tuple,
							     __u32 is_ipv4, struct headers *h)
{
	__u32 tuple_len = is_ipv4 ? sizeof(tuple->ipv4) : sizeof(tuple->ipv6);
	struct bpf_sock *sk;

	h->ip_len = is_ipv4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	if (bpf_xdp_load_bytes(ctx, ip_offset, h->ip, h->ip_len) ||
	    bpf_xdp_load_bytes(ctx, tcp_offset, h->tcp, sizeof(struct tcphdr)))
		return NULL;
	h->tcp_len = (__u64)((struct tcphdr *)h->tcp)->doff * 4;
	if (h->tcp_len < sizeof(struct tcphdr) || h->tcp_len > MAX_TCP_HEADER ||
	    bpf_xdp_load_bytes(ctx, tcp_offset, h->tcp, h->tcp_len))
		return NULL;
	sk = bpf_skc_lookup_tcp(ctx, tuple, tuple_len, BPF_F_CURRENT_NETNS, 0);
	if (sk && sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

/*
 * Whether the port's listener (the service's, or synwall's own in repair mode)
 * answers this SYN itself: this CPU has not found
 * its SYN queue full in the last TAKEOVER_HOLD_NS, and it is not full now.
 * bpf_tcp_gen_syncookie makes a cookie only where the kernel would send one: with
 * net.ipv4.tcp_syncookies = 1 when the listener's SYN queue is full (the answer
 * is then ours, and this CPU holds to that); with 2 always (every SYN is ours).
 * The IP header starts `ip_offset` bytes into the frame, the TCP header
 * `tcp_offset`; `tuple` holds the SYN's 4-tuple.
 *
 * A global function: the verifier checks it once, with unknown arguments.
 */
__noinline int kernel_answers(struct xdp_md *ctx, __u32 ip_offset, __u32 tcp_offset,
			      struct bpf_sock_tuple *tuple, __u32 is_ipv4)
{
	__u64 now, *until, *cookies_until;
	struct headers h = {};
	struct bpf_sock *sk;
	__u32 zero = 0;
	__s64 cookie;

	if (!tuple)
		return 0;
	until = bpf_map_lookup_elem(&takeover_until, &zero);
	if (!until)
		return 0;
	now = bpf_ktime_get_coarse_ns();
	if (now < *until)
		return 0;
	sk = listener_and_headers(ctx, ip_offset, tcp_offset, tuple, is_ipv4, &h);
	if (!sk)
		return 0;
	cookie = bpf_tcp_gen_syncookie(sk, h.ip, h.ip_len, (struct tcphdr *)h.tcp, h.tcp_len);
	bpf_sk_release(sk);
	if (cookie >= 0) {
		*until = now + TAKEOVER_HOLD_NS;
		cookies_until = bpf_map_lookup_elem(&kernel_cookies_until, &zero);
		if (cookies_until)
			*cookies_until = now + KERNEL_COOKIES_NS;
		count(COUNTER_TAKEOVERS);
		return 0;
	}
	return 1;
}

/*
 * Whether this ACK carries a valid syncookie of the port's listener: one
 * the kernel sent itself, for a SYN passed to it just as its SYN queue filled
 * (the SYNs of one receive batch all pass this program before the kernel takes
 * the first), while this CPU had not yet found the queue full. Only the kernel
 * can complete such a handshake: synwall's cookies are its own. Asked only within
 * KERNEL_COOKIES_NS of a takeover (the kernel sends cookies only when the queue is
 * full, which a takeover follows at once), so an ACK flood without a SYN flood
 * costs no second lookup. Arguments as for kernel_answers; a global function too.
 */
__noinline int kernel_cookie(struct xdp_md *ctx, __u32 ip_offset, __u32 tcp_offset,
			     struct bpf_sock_tuple *tuple, __u32 is_ipv4)
{
	struct headers h = {};
	struct bpf_sock *sk;
	__u64 *until;
	__u32 zero = 0;
	long checked;

	if (!tuple)
		return 0;
	until = bpf_map_lookup_elem(&kernel_cookies_until, &zero);
	if (!until || bpf_ktime_get_coarse_ns() >= *until)
		return 0;
	sk = listener_and_headers(ctx, ip_offset, tcp_offset, tuple, is_ipv4, &h);
	if (!sk)
		return 0;
	checked = bpf_tcp_check_syncookie(sk, h.ip, h.ip_len, (struct tcphdr *)h.tcp,
					  h.tcp_len);
	bpf_sk_release(sk);
	return checked == 0;
}

/*
 * Whether the kernel completes the handshake of this segment: the entry the shard
 * recorded expects exactly these numbers, and the completion program has not
 * refused it (a refused handshake completes in user space).
 */
/* Whether `th` can end a handshake: ACK set, neither SYN nor RST. */
static __always_inline int is_handshake_ack(const struct tcphdr *th)
{
	return th->ack && !th->syn && !th->rst;
}

static __always_inline int kernel_completes(const struct tcphdr *th,
					    struct bpf_sock_tuple *tuple, int plain_layout)
{
	struct kernel_handshake *entry;

	if (!plain_layout || !is_handshake_ack(th))
		return 0;
	entry = bpf_map_lookup_elem(&kernel_handshakes, tuple);
	return entry && entry->seq == th->seq && entry->ack == th->ack_seq && entry->status >= 0;
}

/*
 * The TCP part, shared by both families; the header starts `offset` bytes into
 * the frame, the IP header `ip_offset` bytes. `key` holds the destination
 * address; `tuple` the addresses, filled by the caller (ports are filled here).
 *
 * Headers at a variable offset (after IPv4 options, IPv6 extension headers) are
 * copied with bpf_xdp_load_bytes, never reached by packet-pointer arithmetic:
 * without CAP_PERFMON the verifier forbids variable-offset pointer arithmetic,
 * and synwall runs with CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW, CAP_IPC_LOCK and
 * CAP_NET_BIND_SERVICE only.
 */
static __always_inline enum verdict classify_tcp(struct xdp_md *ctx, __u32 ip_offset,
						 __u32 offset, struct served_key *key,
						 struct bpf_sock_tuple *tuple, __u32 tuple_len,
						 int is_ipv4)
{
	const __u8 one = 1;
	struct tcphdr th;
	__u8 flags;
	int state;

	if (bpf_xdp_load_bytes(ctx, offset, &th, sizeof(th))) {
		/* Header cut short (tiny first fragment, truncated frame): judged by its
		 * ports (the first 4 bytes) when present; user space drops what it takes. */
		if (bpf_xdp_load_bytes(ctx, offset, &th, 4))
			return served_address_verdict(key);
		key->port = th.dest;
		return is_served(key) ? VERDICT_XSK : VERDICT_PASS;
	}
	key->port = th.dest;
	flags = served_flags(key);
	if (!flags)
		return VERDICT_PASS;
	if (is_ipv4) {
		tuple->ipv4.sport = th.source;
		tuple->ipv4.dport = th.dest;
	} else {
		tuple->ipv6.sport = th.source;
		tuple->ipv6.dport = th.dest;
	}
	state = socket_state(ctx, tuple, tuple_len);
	/* A pure SYN is a new connection attempt, ours to answer, unless a live kernel
	 * socket holds its tuple: then it is a duplicate or a retransmission of a
	 * handshake the kernel already answers (a request socket), or it hits a
	 * connection, whose socket answers with a challenge ACK (RFC 5961). */
	if (th.syn && !th.ack) {
		if (state == BPF_TCP_TIME_WAIT) {
			if (flags & SERVED_KERNEL_REOPENS)
				return VERDICT_KERNEL_REOPENS;
			bpf_map_update_elem(&tw_handshakes, tuple, &one, BPF_ANY);
		} else if (state >= 0 && state != BPF_TCP_LISTEN) {
			return VERDICT_KERNEL;
		}
		if (state == BPF_TCP_LISTEN && (flags & SERVED_KERNEL_FIRST) &&
		    kernel_answers(ctx, ip_offset, offset, tuple, is_ipv4))
			return VERDICT_KERNEL_ANSWERS;
		return VERDICT_XSK;
	}
	if (state < 0 || state == BPF_TCP_LISTEN) {
		int plain = offset == (is_ipv4 ? PLAIN_IPV4_TCP_OFFSET : PLAIN_IPV6_TCP_OFFSET);

		if (kernel_completes(&th, tuple, plain))
			return VERDICT_KERNEL_COMPLETES;
		if (state == BPF_TCP_LISTEN && (flags & SERVED_KERNEL_FIRST) && is_handshake_ack(&th) &&
		    kernel_cookie(ctx, ip_offset, offset, tuple, is_ipv4))
			return VERDICT_KERNEL_COOKIE;
		return VERDICT_XSK;
	}
	if (state == BPF_TCP_TIME_WAIT && bpf_map_lookup_elem(&tw_handshakes, tuple))
		return VERDICT_XSK;
	/* Shields are raised in repair mode only: native mode skips the lookup. */
	if (!(flags & SERVED_KERNEL_LISTENS) && bpf_map_lookup_elem(&handing_off, tuple))
		return VERDICT_XSK;
	return VERDICT_KERNEL;
}

/* The IPv4 header `iph` starts `offset` bytes into the frame. */
static __always_inline enum verdict classify_ipv4(struct xdp_md *ctx, struct iphdr *iph,
						  __u32 offset, void *data_end)
{
	struct served_key key = { .family = 4 };
	struct bpf_sock_tuple tuple = {};
	__u32 header_len;

	if ((void *)(iph + 1) > data_end)
		return VERDICT_PASS;
	if (iph->version != 4 || iph->protocol != IPPROTO_TCP)
		return VERDICT_PASS;
	header_len = iph->ihl * 4;
	if (header_len < sizeof(*iph))
		return VERDICT_PASS; /* malformed: the kernel drops it */
	/* A non-first fragment cannot be reassembled without the first one,
	 * which is ours when it is to a served port: the kernel drops it. */
	if (bpf_ntohs(iph->frag_off) & IPV4_FRAG_OFFSET_MASK)
		return VERDICT_PASS;

	__builtin_memcpy(key.addr, &iph->daddr, 4);
	tuple.ipv4.saddr = iph->saddr;
	tuple.ipv4.daddr = iph->daddr;
	return classify_tcp(ctx, offset, offset + header_len, &key, &tuple, sizeof(tuple.ipv4), 1);
}

/* ipv6_tcp_offset's answers besides an offset. */
#define OFFSET_NOT_TCP -1 /* not TCP, or a non-first fragment: the kernel's */
#define OFFSET_UNSEEN -2 /* the chain is longer than we follow or cut short */

/*
 * Walks the IPv6 extension headers that start `cursor` bytes into the frame,
 * the first of type `nexthdr`: the offset of the TCP header, or OFFSET_*.
 *
 * A global function: the verifier checks it once, on its own, with unknown
 * arguments. Inlined, the walk multiplies the states of everything around it
 * past what the verifier accepts without CAP_PERFMON (it then also explores
 * the speculative side of every branch).
 */
__noinline int ipv6_tcp_offset(struct xdp_md *ctx, __u32 cursor, __u32 nexthdr)
{
	int i;

	for (i = 0; i < MAX_IPV6_EXT_HDRS; i++) {
		if (nexthdr == NEXTHDR_TCP)
			return cursor & 0xFFFF;
		if (nexthdr == NEXTHDR_FRAGMENT) {
			struct ipv6_frag_hdr fh;

			if (bpf_xdp_load_bytes(ctx, cursor, &fh, sizeof(fh)))
				return OFFSET_UNSEEN;
			if (bpf_ntohs(fh.frag_off) & IPV6_FRAG_OFFSET_MASK)
				return OFFSET_NOT_TCP;
			nexthdr = fh.nexthdr;
			cursor += sizeof(fh);
		} else if (nexthdr == NEXTHDR_HOP || nexthdr == NEXTHDR_ROUTING ||
			   nexthdr == NEXTHDR_DEST) {
			struct ipv6_ext_hdr eh;

			if (bpf_xdp_load_bytes(ctx, cursor, &eh, sizeof(eh)))
				return OFFSET_UNSEEN;
			nexthdr = eh.nexthdr;
			cursor += ((__u32)eh.hdrlen + 1) * 8;
		} else {
			return OFFSET_NOT_TCP; /* ICMPv6, UDP, ESP, AH, no next header, ... */
		}
	}
	/* The walk ended on an extension header: the chain is longer than we
	 * follow. User space parses it fully (and drops it). */
	return nexthdr == NEXTHDR_TCP ? (int)(cursor & 0xFFFF) : OFFSET_UNSEEN;
}

/* The IPv6 header `ip6h` starts `offset` bytes into the frame. */
static __always_inline enum verdict classify_ipv6(struct xdp_md *ctx, struct ipv6hdr *ip6h,
						  __u32 offset, void *data_end)
{
	struct served_key key = { .family = 6 };
	struct bpf_sock_tuple tuple = {};
	int tcp_offset;

	if ((void *)(ip6h + 1) > data_end)
		return VERDICT_PASS;
	if (ip6h->version != 6)
		return VERDICT_PASS;

	__builtin_memcpy(key.addr, &ip6h->daddr, 16);
	tcp_offset = ipv6_tcp_offset(ctx, offset + sizeof(*ip6h), ip6h->nexthdr);
	if (tcp_offset == OFFSET_NOT_TCP)
		return VERDICT_PASS;
	if (tcp_offset < 0)
		return served_address_verdict(&key);

	__builtin_memcpy(tuple.ipv6.saddr, &ip6h->saddr, 16);
	__builtin_memcpy(tuple.ipv6.daddr, &ip6h->daddr, 16);
	return classify_tcp(ctx, offset, tcp_offset, &key, &tuple, sizeof(tuple.ipv6), 0);
}

SEC("xdp")
int synwall_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	enum verdict verdict = VERDICT_PASS;
	__u32 l3_offset = sizeof(*eth);
	void *l3;
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		goto out;
	proto = eth->h_proto;
	l3 = eth + 1;
	if (proto == ETH_P_8021Q_BE) {
		struct vlan_hdr *vh = l3;
		__u32 vid;
		__u8 *served_vlan;

		if ((void *)(vh + 1) > data_end)
			goto out;
		vid = bpf_ntohs(vh->tci) & VLAN_ID_MASK;
		served_vlan = bpf_map_lookup_elem(&vlans, &vid);
		if (!served_vlan || !*served_vlan)
			goto out;
		proto = vh->encapsulated_proto;
		l3 = vh + 1;
		l3_offset += sizeof(*vh);
	}
	if (proto == ETH_P_IP_BE)
		verdict = classify_ipv4(ctx, l3, l3_offset, data_end);
	else if (proto == ETH_P_IPV6_BE)
		verdict = classify_ipv6(ctx, l3, l3_offset, data_end);

out:
	if (verdict == VERDICT_XSK) {
		/* The low bits of the flags are the action when the map has no
		 * socket at this index: drop, never pass. */
		long action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_DROP);

		count(action == XDP_REDIRECT ? COUNTER_REDIRECTED : COUNTER_DROPPED_NO_XSK);
		return action;
	}
	switch (verdict) {
	case VERDICT_KERNEL:
		count(COUNTER_KERNEL_OWNED);
		break;
	case VERDICT_KERNEL_COMPLETES:
		count(COUNTER_KERNEL_COMPLETES);
		open_completions_gate();
		break;
	case VERDICT_KERNEL_REOPENS:
		count(COUNTER_KERNEL_REOPENS);
		break;
	case VERDICT_KERNEL_ANSWERS:
		count(COUNTER_KERNEL_ANSWERS);
		break;
	case VERDICT_KERNEL_COOKIE:
		count(COUNTER_KERNEL_COOKIES);
		break;
	default:
		count(COUNTER_PASSED);
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
