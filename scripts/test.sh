#!/usr/bin/env bash
# `make test`: the whole suite on a fresh machine. Installs what is missing,
# starts SecantusDB (unless MONGODB_URI is given), a local AWS endpoint (moto)
# and the local API, runs every check and test, and stops what it started.
source "$(dirname "$0")/env.sh"
cd "$ROOT"

ensure_venv
trap 'stop_started' EXIT
trap 'exit 130' INT TERM

log "bench charts: bench/charts.py --selftest (a few seconds)"
"$VENV/bin/python" bench/charts.py --selftest

log "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --features shared/failpoints --quiet -- -D warnings

log "dependencies: cargo deny check licenses bans sources (deny.toml; advisories need the network, see README)"
ensure_cargo_deny
# Not --offline: cargo metadata may still need to download the manifests of
# crates only other platforms use (from crates.io, which is reachable).
cargo deny --locked check licenses bans sources

log "template: sam validate --lint and cfn-lint"
AWS_DEFAULT_REGION=us-east-1 sam validate --lint --template template.yaml
cfn-lint template.yaml

log "openapi.yaml: openapi-spec-validator, and the error models of a Python client generated from it"
openapi-spec-validator openapi.yaml
"$VENV/bin/python" scripts/client_check.py openapi.yaml

start_mongo
start_moto

log "local API (local-api/) for the HTTP flow test and schemathesis"
# With the failpoints feature, as `cargo test` builds the workspace below:
# one build of `shared` serves both, and local-api's tests find functions
# that can be paused mid-operation.
cargo build --workspace --bins --features shared/failpoints --quiet
export E2E_MASTER_DB="e2e_$(date +%s)_$$"
# Every request comes from 127.0.0.1: no per-source creation limit.
# Every request is taken as signed by an operator: schemathesis reaches the
# listing's answers, not only its 403 (which the tests check without it).
MASTER_DB="$E2E_MASTER_DB" JWT_SECRET="e2e-$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" BCRYPT_COST=4 \
  CREATE_LIMIT_PER_SOURCE_PER_HOUR=0 LOCAL_API_IAM_CALLER="arn:aws:iam::123456789012:role/schemathesis" \
  start_local_api "$ROOT/target/debug" "$(free_port)"

log "cargo test"
cargo test --workspace --features shared/failpoints 2>&1 | tee "$STATE/cargo-test.log"

log "schemathesis against the local API, from openapi.yaml"
bash scripts/schemathesis.sh

# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$STATE/cargo-test.log"
