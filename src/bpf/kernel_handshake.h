/* SPDX-License-Identifier: MIT OR GPL-2.0 */
/*
 * Handshakes the kernel completes itself: shared by the steering program (XDP,
 * steer.bpf.c), which lets their final ACK through to the kernel, and the
 * completion program (TC, handoff.bpf.c), which builds their socket.
 *
 * In native mode a shard records every handshake it admits to its SYN queue in
 * `kernel_handshakes` (src/sys/native.rs writes the entries; keep the layouts in
 * sync): the sequence numbers the final ACK must carry and the values the kfunc
 * bpf_sk_assign_tcp_reqsk needs. The final ACK then never reaches user space.
 */
#ifndef SYNWALL_KERNEL_HANDSHAKE_H
#define SYNWALL_KERNEL_HANDSHAKE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_KERNEL_HANDSHAKES 65536

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

/* The entry of a handshake admitted to a shard's SYN queue. `status` is
 * STATUS_PENDING (handoff.bpf.c) until the completion program saw the ACK, then
 * its outcome: 0 (a socket was built), or a negative errno or STATUS_* code. */
struct kernel_handshake {
	struct bpf_tcp_req_attrs attrs; /* tsval/tsecr: the SYN's TSval and ours */
	__be32 seq; /* the final ACK's sequence number: the client's ISN + 1 */
	__be32 ack; /* its acknowledgment number: our ISN + 1 */
	__u32 queue; /* the rx queue of the shard that admitted it */
	__s32 status;
};

/* Keyed by the tuple as the client sends it (zero-padded struct bpf_sock_tuple).
 * LRU: an entry whose report was read stays until a newer one needs the room. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_KERNEL_HANDSHAKES);
	__type(key, struct bpf_sock_tuple);
	__type(value, struct kernel_handshake);
} kernel_handshakes SEC(".maps");

/* How long the completion program keeps looking segments up in kernel_handshakes
 * after the steering program last let one through for the kernel to complete.
 * That segment reaches the completion program moments later, in the same receive
 * path (with RPS, after a hop to another CPU): a second is ample. */
#define COMPLETIONS_GATE_NS (1000ULL * 1000 * 1000)

/* Until when (bpf_ktime_get_coarse_ns) the completion program looks up the
 * segments it sees. Nearly every segment on the served interface belongs to a
 * connection the kernel already has, and the lookup, in a table of
 * MAX_KERNEL_HANDSHAKES entries, costs a cache miss: without a flood, when synwall
 * queues no handshake, the gate stays shut and the completion program costs a
 * clock read. The steering program's map, shared like kernel_handshakes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} completions_until SEC(".maps");

/* Steering program: a segment goes to the kernel for the completion program. */
static __always_inline void open_completions_gate(void)
{
	__u32 zero = 0;
	__u64 *until = bpf_map_lookup_elem(&completions_until, &zero);
	__u64 now;

	if (!until)
		return;
	now = bpf_ktime_get_coarse_ns();
	/* At most one write per half gate, however many CPUs pass such segments: the
	 * value is one cache line that every CPU reads. */
	if (*until < now + COMPLETIONS_GATE_NS / 2)
		*until = now + COMPLETIONS_GATE_NS;
}

/* Completion program: whether the steering program may have let a segment
 * through for it lately. */
static __always_inline int completions_gate_open(void)
{
	__u32 zero = 0;
	__u64 *until = bpf_map_lookup_elem(&completions_until, &zero);

	return until && bpf_ktime_get_coarse_ns() < *until;
}

#endif
