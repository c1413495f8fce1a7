#!/usr/bin/env bash
# synwall against the kernel's listener in the lab, N times, medians as a markdown table.
#
# Runs `synwall lab --compare --json` N times (default 3), one after another, and prints the
# median of each figure over the runs (each run's values in brackets) with the exact command,
# ready for the README. Needs root (the lab builds network namespaces) and a release build:
#
#   cargo build --release --workspace
#   sudo bench/lab-compare.sh                      # 3 runs, default lab settings
#   sudo bench/lab-compare.sh -n 5 -- --mode ack   # 5 runs; options after -- go to synwall lab
#
# Every run floods only between the lab's own namespaces (198.18.0.0/15), is bounded in time
# and packets, and removes its namespaces itself, also on failure or Ctrl-C; this script only
# removes its temporary files.
set -euo pipefail

usage() {
  echo "usage: $0 [-n RUNS] [--synwall PATH] [-- SYNWALL-LAB-OPTIONS...]" >&2
  exit 2
}

cd "$(dirname "$0")/.."
runs=3
synwall=target/release/synwall
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n) [[ $# -ge 2 ]] || usage; runs=$2; shift 2 ;;
    --synwall) [[ $# -ge 2 ]] || usage; synwall=$2; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || usage
if [[ ! -x "$synwall" ]]; then
  echo "$synwall is missing: build it with cargo build --release --workspace" >&2
  exit 1
fi

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
command=("$synwall" lab --compare --json "$@")
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


def run_of(report, target):
    return next(run for run in report["runs"] if run["target"] == target)


def p99_ms(run):
    us = run["connect_p99_us"]
    return None if us is None else us / 1000


def ratio(report, key):
    return (report.get("comparison") or {}).get(key)


ROWS = [
    ("offered pkt/s", lambda run: run["offered_pps"], "{:,.0f}"),
    ("SYN-ACK/s (steady mean)", lambda run: run["syn_ack_pps"], "{:,.0f}"),
    ("cookies/s", lambda run: run["cookies_pps"], "{:,.0f}"),
    ("legit connections ok %", lambda run: run["legit_success_pct"], "{:.1f}"),
    ("legit connect p99 ms", p99_ms, "{:.2f}"),
    ("accepted from spoofed sources", lambda run: run["forged_accepted"], "{:.0f}"),
    ("server CPU busy before the run %", lambda run: run["server_cpu_busy_before_pct"], "{:.0f}"),
]
RATIOS = {
    "SYN-ACK/s (steady mean)": "syn_ack_ratio",
    "legit connect p99 ms": "connect_p99_ratio",
}


def cell(values, form):
    present = [value for value in values if value is not None]
    if not present:
        return "-"
    each = ", ".join("-" if value is None else form.format(value) for value in values)
    return f"{form.format(statistics.median(present))} [{each}]"


print(f"Medians of {len(reports)} runs [each run]:\n")
print("| | synwall | kernel | synwall / kernel |")
print("|---|---:|---:|---:|")
for name, value, form in ROWS:
    columns = [cell([value(run_of(r, t)) for r in reports], form) for t in ("synwall", "kernel")]
    key = RATIOS.get(name)
    ratios = cell([ratio(r, key) for r in reports], "{:.2f}×") if key else ""
    print(f"| {name} | {columns[0]} | {columns[1]} | {ratios} |")
first = reports[0]
print(f"\nSYN-ACK/s: {first['syn_ack_measure']}.")
print(f"synwall: {run_of(first, 'synwall')['placement']}.")
print(f"kernel: {run_of(first, 'kernel')['placement']}.")
print(f"\nCommand ({len(reports)} times): `{command}`")
PYTHON
