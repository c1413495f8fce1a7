#!/usr/bin/env bash
# Installs what building, testing and running synwall need on Debian/Ubuntu, when run as root;
# otherwise lists what is missing. Idempotent: installs only missing packages.
set -euo pipefail

packages=(
  # build: the XDP program (clang, BPF headers) and libxdp/libbpf, built by xsk-rs
  clang llvm libelf-dev zlib1g-dev m4 pkg-config gcc make libbpf-dev linux-libc-dev
  # lab and privileged tests: namespaces, offloads, captures, a real HTTP client
  iproute2 ethtool nftables tshark curl iputils-ping util-linux python3 procps
  # checks of the deployment files
  systemd
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]})); then
  if [[ $EUID -eq 0 ]]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer no without a prompt.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "missing packages (run as root to install them): ${missing[*]}" >&2
  fi
fi

if ! command -v cargo >/dev/null; then
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    echo "cargo is in ~/.cargo/bin: add it to PATH" >&2
  else
    echo "installing the Rust toolchain (rustup, stable)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
  fi
fi
