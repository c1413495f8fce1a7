#!/usr/bin/env bash
# What synwall's BPF programs cost per run while a lab command runs: the kernel's own statistics
# of each program the command holds open (sysctl kernel.bpf_stats_enabled, which adds two clock
# reads to every run, so the figures are upper bounds: a do-nothing XDP program measures about
# 50 ns per run on the Intel VM), sampled every 2 s; each program's last sample before it
# closed is printed (type, id, runs, ns per run), in the order the programs appeared. Needs
# root and a release build:
#
#   cargo build --release --workspace
#   sudo bench/bpf-cost.sh target/release/synwall-lab --peacetime
#
# In the synwall lab the programs are synwall_steer (XDP, every frame on the served veth),
# synwall_finish (sched_cls on the same veth's tcx ingress, every frame that passes) and, in
# native handoff, synwall_handoff (sched_cls on lo's tcx ingress, which sees no lab traffic);
# with --peacetime --kernel-rx xdp-pass, the do-nothing XDP program on the kernel target's veth
# comes last.
# The command's own output goes to a file named on standard error. The sysctl is put back.
set -euo pipefail

(($#)) || {
  echo "usage: $0 COMMAND [ARG...]   (a synwall-lab run, as root)" >&2
  exit 2
}
[[ $EUID -eq 0 ]] || {
  echo "$0: needs root (BPF statistics and the lab)" >&2
  exit 1
}

output=$(mktemp /tmp/bpf-cost.XXXXXX)
previous=$(sysctl -n kernel.bpf_stats_enabled)
trap 'sysctl -qw kernel.bpf_stats_enabled="$previous"' EXIT
sysctl -qw kernel.bpf_stats_enabled=1
echo "the command's output: $output" >&2
"$@" >"$output" 2>&1 &
command_pid=$!

# One line per BPF program that a process of the command holds: type, id, run time, runs.
sample() {
  local pid fd info
  for pid in $command_pid $(pgrep -P "$command_pid" || true); do
    for fd in /proc/"$pid"/fd/*; do
      [[ $(readlink "$fd" 2>/dev/null) == anon_inode:bpf-prog ]] || continue
      info=/proc/$pid/fdinfo/${fd##*/}
      awk '$1 == "prog_type:" {t = $2} $1 == "prog_id:" {i = $2}
           $1 == "run_time_ns:" {ns = $2} $1 == "run_cnt:" {n = $2}
           END {print t, i, ns, n}' "$info" 2>/dev/null || true
    done
  done | sort -u
}

# Every sample, in order: the lab runs its targets one after the other, each with its own
# programs, and keeps none open past its target.
samples=""
while kill -0 "$command_pid" 2>/dev/null; do
  sleep 2
  samples+=$(sample)$'\n'
done
status=0
wait "$command_pid" || status=$?

echo "type      id     runs          ns/run"
awk 'NF == 4 && $4 > 0 {
       if (!($2 in line)) order[++count] = $2
       name = ($1 == 6) ? "xdp" : ($1 == 3) ? "sched_cls" : "type " $1
       line[$2] = sprintf("%-9s %-6s %-13d %.1f", name, $2, $4, $3 / $4)
     }
     END {for (i = 1; i <= count; i++) print line[order[i]]}' <<<"$samples"
exit "$status"
