#!/usr/bin/env bash
# Peacetime in the lab: the same service behind synwall and behind the kernel alone, no flood,
# N times per handoff mode; medians of each figure and of the ratios measured in one run, as
# markdown tables with the exact commands, ready for the README. Needs root and a release build:
#
#   cargo build --release --workspace
#   sudo bench/peacetime.sh                  # 3 runs of each setup below
#   sudo bench/peacetime.sh -n 1 native      # one run, native handoff only
#
# Setups: native (native handoff, synwall's default answer-syns = kernel-first: the service's
# own listener answers SYNs until a flood fills its SYN queue), native-xdp-pass (the same,
# against the kernel with a do-nothing XDP program on its veth, --kernel-rx xdp-pass: the
# receive path synwall's program puts every packet on, so the ratios show synwall's own cost
# without the veth's), native-synwall (native handoff, synwall answers every SYN: the cost of
# synwall's own handshake path), repair (repair handoff with the default answer-syns =
# kernel-first: the kernel completes the handshakes on synwall's own listening socket, synwall
# accepts and proxies them), repair-unix (the same, the service behind the proxy on a Unix
# stream socket instead of a TCP port: no second TCP connection per client on the loopback)
# and repair-synwall (repair handoff, synwall answers every SYN and builds each socket with
# TCP_REPAIR: the cost of that path).
#
# Each run is `synwall-lab --peacetime --handoff MODE [--answer-syns synwall] --json`: request latency at 100 new
# connections/s (request sent right after connect()), the server CPU's busy time per new
# connection at 2,000/s (below both targets' saturation: a cost figure that does not depend on
# where the search's steps fall), the most new connections/s of which 99.9 % succeed with
# p99 < 10 ms (a rate misses when two 2 s runs of it in a row miss: one stall of this VM
# spoils a short run's p99), and keep-alive requests/s over 20 connections, for synwall
# then for the kernel, each on fresh namespaces. Traffic stays between the lab's namespaces
# (198.18.0.0/15), every phase is bounded, and the lab removes its namespaces itself.
#
# The goals of issue 8, per run: native ≥ 0.9× the kernel's connections/s and ≥ 0.95× its
# keep-alive requests/s; repair ≥ 0.6× and ≥ 0.8×; latency p99 within 1 ms of the kernel's.
# A run whose server CPU was busy with other work before it is flagged: no result.
set -euo pipefail

usage() {
  echo "usage: $0 [-n RUNS] [--lab PATH] [native] [native-xdp-pass] [native-synwall] [repair] [repair-unix] [repair-synwall]" >&2
  exit 2
}

cd "$(dirname "$0")/.."
runs=3
lab=target/release/synwall-lab
modes=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n) [[ $# -ge 2 ]] || usage; runs=$2; shift 2 ;;
    --lab) [[ $# -ge 2 ]] || usage; lab=$2; shift 2 ;;
    native|native-xdp-pass|native-synwall|repair|repair-unix|repair-synwall) modes+=("$1"); shift ;;
    *) usage ;;
  esac
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || usage
[[ ${#modes[@]} -gt 0 ]] || modes=(native native-xdp-pass native-synwall repair repair-unix repair-synwall)
if [[ ! -x "$lab" ]]; then
  echo "$lab is missing: build it with cargo build --release --workspace" >&2
  exit 1
fi

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
for mode in "${modes[@]}"; do
  case "$mode" in
    native-xdp-pass) command=("$lab" --peacetime --handoff native --kernel-rx xdp-pass --json) ;;
    native-synwall) command=("$lab" --peacetime --handoff native --answer-syns synwall --json) ;;
    repair-synwall) command=("$lab" --peacetime --handoff repair --answer-syns synwall --json) ;;
    repair-unix) command=("$lab" --peacetime --handoff repair --upstream unix --json) ;;
    *) command=("$lab" --peacetime --handoff "$mode" --json) ;;
  esac
  for ((run = 1; run <= runs; run++)); do
    echo "$mode, run $run of $runs: ${command[*]}" >&2
    "${command[@]}" >"$results/$mode-run$run.json"
  done
  python3 - "${command[*]}" "$results/$mode"-run*.json <<'PYTHON'
import json
import statistics
import sys

command, paths = sys.argv[1], sys.argv[2:]
reports = [json.load(open(path)) for path in paths]


def run_of(report, target):
    return next(run for run in report["runs"] if run["target"] == target)


def p99_ms(run):
    exchange = run["latency"]["exchange_us"]
    return None if exchange is None else exchange["p99"] / 1000


cost_rate = run_of(reports[0], "synwall")["cost"]["connections"]["rate"]
ROWS = [
    (f"server CPU per new connection at {cost_rate:,}/s, µs",
     lambda run: run["cost"]["server_cpu_us_per_connection"], "{:.0f}",
     "cost_ratio", "{:.2f}×"),
    ("new connections/s within the objective",
     lambda run: (run["search"]["best"] or {}).get("rate", 0), "{:,.0f}",
     "connection_rate_ratio", "{:.2f}×"),
    ("request latency p99 at 100/s, ms", p99_ms, "{:.2f}",
     "latency_p99_difference_ms", "{:+.2f} ms"),
    ("keep-alive requests/s (20 connections)",
     lambda run: run["keepalive"]["requests_per_s"], "{:,.0f}",
     "keepalive_ratio", "{:.2f}×"),
    ("server CPU busy before the run %",
     lambda run: run["server_cpu_busy_before_pct"], "{:.0f}", None, None),
]


def cell(values, form):
    present = [value for value in values if value is not None]
    if not present:
        return "-"
    each = ", ".join("-" if value is None else form.format(value) for value in values)
    return f"{form.format(statistics.median(present))} [{each}]"


synwall = run_of(reports[0], "synwall")
mode = f"{synwall['handoff']} handoff"
if synwall.get("answer_syns"):
    mode += f", answer-syns {synwall['answer_syns']}"
if synwall.get("upstream"):
    mode += f", {synwall['upstream']} upstream"
print(f"\nPeacetime, {mode}: medians of {len(reports)} runs [each run]:\n")
kernel = "kernel"
if "do-nothing XDP" in run_of(reports[0], "kernel")["placement"]:
    kernel += ", do-nothing XDP on its veth"
print(f"| | synwall ({mode}) | {kernel} | synwall vs kernel, same run |")
print("|---|---:|---:|---:|")
for name, value, form, key, ratio_form in ROWS:
    columns = [cell([value(run_of(r, t)) for r in reports], form) for t in ("synwall", "kernel")]
    ratios = cell([(r.get("comparison") or {}).get(key) for r in reports], ratio_form) if key else ""
    print(f"| {name} | {columns[0]} | {columns[1]} | {ratios} |")
busy = [run_of(r, t)["server_cpu_busy_before_pct"] for r in reports for t in ("synwall", "kernel")]
if max(busy) > 10:
    print(f"\nWARNING: the server CPU was up to {max(busy):.0f} % busy with other work before a "
          "run: those figures measure that work too and are no result.")
print(f"\nObjective: {reports[0]['objective']}.")
print(f"synwall: {run_of(reports[0], 'synwall')['placement']}.")
print(f"kernel: {run_of(reports[0], 'kernel')['placement']}.")
print(f"\nCommand ({len(reports)} times): `{command}`")
PYTHON
done
