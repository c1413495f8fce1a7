#!/usr/bin/env bash
# Writes what the .deb ships besides the binary and deploy/'s own files into target/deb-assets/
# (the paths [package.metadata.deb] in Cargo.toml names): the systemd unit with the package's
# binary path, and the shell completions and man pages the binary writes of itself (clap_complete
# and clap_mangen, through the hidden `synwall completions` and `synwall man`).
# Usage: deploy/deb-assets.sh [BINARY]   (default target/release/synwall; `make deb` runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/synwall}
out=target/deb-assets

rm -rf "$out"
mkdir -p "$out/completions" "$out/man"
sed 's|/usr/local/bin/synwall|/usr/bin/synwall|g' deploy/synwall.service >"$out/synwall.service"
"$binary" completions bash >"$out/completions/synwall.bash"
"$binary" completions zsh >"$out/completions/_synwall"
"$binary" completions fish >"$out/completions/synwall.fish"
"$binary" man "$out/man"
# Under sudo (`sudo make deb`), the files go to the user who called it, as the rest of target/
# (see deploy/cargo): their next build may replace them.
# shellcheck source=deploy/install-deps.sh
source deploy/install-deps.sh
give_back "$out"
