# The two commands of the README:
#   sudo make lab    the lab demo: synwall against a SYN flood, side by side with the kernel
#   make test        every test; as root the privileged tier (namespaces, AF_XDP) runs too
# Both install missing Debian/Ubuntu packages first when run as root.

export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo

.PHONY: deps build release lab test bench

deps:
	@deploy/install-deps.sh

build: deps
	$(CARGO) build --workspace

release: deps
	$(CARGO) build --release --workspace

lab: release
	target/release/synwall lab --compare

# The binaries (synwall, loadgen) are built first: the privileged tests run them.
test: build
	$(CARGO) test --workspace

bench: release
	$(CARGO) bench --bench listener
