#!/usr/bin/env bash
# synwall against the kernel's listener and the kernel's XDP SYN proxy in the lab, N times,
# medians as markdown tables: one for the flood asked for (max rate by default), one for the
# fixed-rate SYN flood (the server CPU per SYN-ACK; 200k/s by default).
#
# Runs `synwall-lab --compare --json` N times (default 3), one after another, and prints the
# median of each figure over the runs (each run's values in brackets) with the exact command,
# ready for the README. A run whose server CPU was busy with other work has no ratios; its
# figures are still listed, and the table says how many runs were busy. Needs root (the lab
# builds network namespaces) and a release build:
#
#   cargo build --release --workspace
#   sudo bench/lab-compare.sh                      # 3 runs, default lab settings
#   sudo bench/lab-compare.sh -n 5 -- --mode ack   # 5 runs; options after -- go to synwall-lab
#   sudo bench/lab-compare.sh -- --fixed-rate 100k # the fixed-rate flood at 100k SYN/s
#
# Every run floods only between the lab's own namespaces (198.18.0.0/15), is bounded in time
# and packets, and removes its namespaces itself, also on failure or Ctrl-C; this script only
# removes its temporary files.
set -euo pipefail

usage() {
  echo "usage: $0 [-n RUNS] [--lab PATH] [-- SYNWALL-LAB-OPTIONS...]" >&2
  exit 2
}

cd "$(dirname "$0")/.."
runs=3
lab=target/release/synwall-lab
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n) [[ $# -ge 2 ]] || usage; runs=$2; shift 2 ;;
    --lab) [[ $# -ge 2 ]] || usage; lab=$2; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || usage
if [[ ! -x "$lab" ]]; then
  echo "$lab is missing: build it with cargo build --release --workspace" >&2
  exit 1
fi

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
command=("$lab" --compare --json "$@")
for ((run = 1; run <= runs; run++)); do
  echo "run $run of $runs: ${command[*]}" >&2
  "${command[@]}" >"$results/run$run.json"
done

python3 - "${command[*]}" "$results"/run*.json <<'PYTHON'
import json
import statistics
import sys

command, paths = sys.argv[1], sys.argv[2:]
reports = [json.load(open(path)) for path in paths]
TARGETS = ("synwall", "kernel", "xdp-synproxy")


def run_of(flood, target):
    return next(run for run in flood["runs"] if run["target"] == target)


def ms(field):
    def value(run):
        us = run[field]
        return None if us is None else us / 1000

    return value


def ratio(flood, other, key):
    return ((flood.get("comparison") or {}).get(other) or {}).get(key)


ROWS = [
    ("offered pkt/s", lambda run: run["offered_pps"], "{:,.0f}"),
    ("SYN-ACK/s (steady mean)", lambda run: run["syn_ack_pps"], "{:,.0f}"),
    ("SYN-ACKs per offered SYN %", lambda run: run["answered_pct"], "{:.1f}"),
    ("cookies/s", lambda run: run["cookies_pps"], "{:,.0f}"),
    ("server CPU busy %", lambda run: run["server_cpu_busy_pct"], "{:.0f}"),
    ("server CPU per SYN-ACK µs", lambda run: run["server_cpu_us_per_syn_ack"], "{:.2f}"),
    ("SYN-ACKs per server-CPU-second", lambda run: run["syn_acks_per_server_cpu_s"], "{:,.0f}"),
    ("legit connections ok %", lambda run: run["legit_success_pct"], "{:.1f}"),
    ("legit connect p50 ms", ms("connect_p50_us"), "{:.2f}"),
    ("legit connect p99 ms", ms("connect_p99_us"), "{:.2f}"),
    ("accepted from spoofed sources", lambda run: run["forged_accepted"], "{:.0f}"),
    ("server CPU busy before the run %", lambda run: run["server_cpu_busy_before_pct"], "{:.0f}"),
]
RATIOS = {
    "SYN-ACK/s (steady mean)": "syn_ack_ratio",
    "server CPU per SYN-ACK µs": "cpu_per_syn_ack_ratio",
    "legit connect p99 ms": "connect_p99_ratio",
}


def cell(values, form):
    present = [value for value in values if value is not None]
    if not present:
        return "-"
    each = ", ".join("-" if value is None else form.format(value) for value in values)
    return f"{form.format(statistics.median(present))} [{each}]"


def table(floods, title):
    first = floods[0]
    rate = "max rate" if first["rate_pps"] is None else f"{first['rate_pps']:,} pkt/s"
    compared = sum(flood["comparison"] is not None for flood in floods)
    print(f"\n{title}: {first['mode']} flood at {rate}; medians of {len(floods)} runs [each run]"
          f" ({compared} of them quiet enough for ratios):\n")
    others = TARGETS[1:]
    print("| | " + " | ".join(TARGETS) + " | " + " | ".join(f"synwall / {o}" for o in others) + " |")
    print("|---|" + "---:|" * (len(TARGETS) + len(others)))
    for name, value, form in ROWS:
        columns = [cell([value(run_of(f, t)) for f in floods], form) for t in TARGETS]
        key = RATIOS.get(name)
        ratios = [cell([ratio(f, o, key) for f in floods], "{:.2f}×") if key else "" for o in others]
        print(f"| {name} | " + " | ".join(columns + ratios) + " |")


table(reports, "The flood asked for")
fixed = [report["fixed_rate"] for report in reports if report.get("fixed_rate")]
if fixed:
    table(fixed, "The fixed-rate flood (server CPU per SYN-ACK)")
first = reports[0]
print(f"\nSYN-ACK/s: {first['syn_ack_measure']}.")
print(f"Server CPU per SYN-ACK: {first['server_cpu_measure']}.")
for target in TARGETS:
    print(f"{target}: {run_of(first, target)['placement']}.")
print(f"\nCommand ({len(reports)} times): `{command}`")
PYTHON
