# Two entry points, both doing all set-up on a fresh machine (Rust, Go and the module
# proxy are the only prerequisites):
#   make demo   build what is missing, start the sandbox, open the wizard on it
#   make test   build what is missing, then fmt, clippy and every test (integration tests
#               run against the real servers; none may skip)
SANDBOX ?= .sandbox
BIN := target/debug/istio-vault-wizard

.PHONY: demo test servers sandbox-down bench

servers:
	tests/servers/build.sh

demo: servers
	cargo build
	$(BIN) sandbox up --state-dir $(SANDBOX)
	$(BIN) --config $(SANDBOX)/wizard.toml

sandbox-down:
	$(BIN) sandbox down --state-dir $(SANDBOX)

test: servers
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	IVW_REQUIRE_SERVERS=1 cargo test --all-targets

bench: servers
	benches/run.sh
