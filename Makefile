# The two commands of the README:
#   sudo make lab    the lab demo: synwall against a SYN flood, side by side with the kernel
#   make test        every test; as root the privileged tier (namespaces, AF_XDP) runs too
# Both install missing Debian/Ubuntu packages first when run as root, and check that cargo is
# at least the workspace's rust-version (deploy/install-deps.sh says what to do when it is not).
#
# Every cargo command goes through deploy/cargo: the toolchain install-deps.sh picks, first on
# PATH, here and in .ci/run alike (which runs `lint`). Under sudo, cargo builds as the user who
# called sudo, with their toolchain, so a later `make test` as that user finds target/ theirs;
# only the lab and the privileged tests run as root, and give back what they write.
CARGO := deploy/cargo

.PHONY: deps build release lab test lint fuzz bench deb image

deps:
	@deploy/install-deps.sh

build: deps
	$(CARGO) build --workspace

release: deps
	$(CARGO) build --release --workspace

# The lab is loadgen's binary, not the product's: `synwall` ships no lab.
lab: release
	target/release/synwall-lab --compare

# The binaries (synwall, loadgen) are built first: the privileged tests run them. The tests are
# built by the user who builds, then run by whoever runs make (root, for the privileged tier).
test: build
	$(CARGO) test --workspace --no-run
	SYNWALL_CARGO_AS_ROOT=1 $(CARGO) test --workspace

# The format and lint checks CI runs.
lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet
	@# The protocol core's contract (src/proto/lib.rs): none of these anywhere under it.
	@if $(CARGO) tree -p synwall-proto -e normal,build --prefix none \
		| grep -E '^(clap|serde|toml|tiny_http|libbpf-sys|libxdp-sys|xsk-rs|tracing-subscriber) '; then \
		echo "synwall-proto depends on a crate its contract forbids (listed above)" >&2; exit 1; fi
	@# The library's (src/lib.rs): it builds without the CLI, and nothing of the CLI's is under it.
	$(CARGO) check -p synwall --lib --no-default-features --quiet
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -p synwall --no-deps --no-default-features --quiet
	@# Inside the library, the system layer (src/sys) names no module of the server above it.
	@if grep -rnE 'crate::(server|proxy|handoff|shard|accept_queue|metrics|status|preflight|flood|shutdown)\b' src/sys; then \
		echo "src/sys uses a module of the server layer above it (listed above)" >&2; exit 1; fi
	@if $(CARGO) tree -p synwall --no-default-features -e normal,build --prefix none \
		| grep -E '^(clap|clap_complete|clap_mangen|serde|toml|anyhow|tracing-subscriber|humantime-serde) '; then \
		echo "the synwall library depends on a crate of the CLI's (listed above)" >&2; exit 1; fi

# The protocol core's fuzz targets, a bounded minute each on the stable toolchain
# (tests/fuzz/README.md); cargo-fuzz is installed from crates.io when missing.
fuzz: deps
	CARGO=$(abspath $(CARGO)) tests/fuzz/run.sh 60

bench: release
	$(CARGO) bench --bench listener

# The Debian package, target/debian/synwall_<version>-1_<arch>.deb: cargo-deb (deps installs
# it) packs the release binary, the unit, the example configuration, completions and man pages.
deb: deps
	$(CARGO) build --release --package synwall
	deploy/deb-assets.sh target/release/synwall
	$(CARGO) deb --package synwall --no-build

# The container image deploy/kubernetes.yaml runs, with docker where its engine answers, else
# buildah.
IMAGE ?= registry.example.invalid/synwall:0.1.0
image:
	if docker info >/dev/null 2>&1; then \
		docker build -f deploy/Dockerfile -t $(IMAGE) .; \
	else \
		buildah build -f deploy/Dockerfile -t $(IMAGE) .; \
	fi
