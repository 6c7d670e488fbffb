# Shared by the Makefile's scripts: installs the local tools this project needs
# and starts (and later stops, by process id) the local services.
# Source it; do not run it.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STATE="$ROOT/.local"
mkdir -p "$STATE"

# Pinned versions of the tools from the package registries.
# matplotlib draws make bench's charts (bench/charts.py); openapi-python-client
# and openapi-spec-validator check openapi.yaml (scripts/client_check.py).
PY_TOOLS=(aws-sam-cli==1.170.0 cargo-lambda==1.9.2 ziglang==0.17.1 "moto[server]==5.2.5" schemathesis==4.32.5
  matplotlib==3.11.2 openapi-python-client==0.29.1 openapi-spec-validator==0.9.0)
SECANTUS_VERSION=0.5.3-beta.196
# cargo-deny checks licenses, bans and sources against deny.toml.
CARGO_DENY_VERSION=0.20.2

# The functions, one package each under functions/ (tests/template.rs holds
# that set equal to shared::functions::Function::ALL and to template.yaml).
function_names() {
  local dir
  for dir in "$ROOT"/functions/*/; do basename "$dir"; done
}

STARTED_PIDS=()
CLEANUP_DIRS=()
log() { printf '==> %s\n' "$*" >&2; }

# Stops one process this script started (TERM, then KILL after 5 s) and
# forgets it.
stop_pid() {
  local pid=$1 kept=() p
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  for p in "${STARTED_PIDS[@]:-}"; do
    [ -n "$p" ] && [ "$p" != "$pid" ] && kept+=("$p")
  done
  STARTED_PIDS=("${kept[@]:-}")
}

stop_started() {
  local pid
  for pid in "${STARTED_PIDS[@]:-}"; do
    [ -n "$pid" ] && stop_pid "$pid"
  done
  STARTED_PIDS=()
  local dir
  for dir in "${CLEANUP_DIRS[@]:-}"; do
    [ -n "$dir" ] && rm -rf "$dir"
  done
  CLEANUP_DIRS=()
}

ensure_venv() {
  local stamp="$VENV/.tools-$(printf '%s\n' "${PY_TOOLS[@]}" | sha1sum | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    log "installing Python-packaged tools into .venv (SAM CLI, cargo-lambda, zig, moto, schemathesis, matplotlib, openapi-python-client, openapi-spec-validator)"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}"
    touch "$stamp"
  fi
  # cargo-lambda finds zig through the first python3 on PATH.
  export PATH="$VENV/bin:$PATH"
}

ensure_secantus() {
  if command -v secantusd-rs >/dev/null 2>&1; then return; fi
  if [ -x "$HOME/.cargo/bin/secantusd-rs" ]; then export PATH="$HOME/.cargo/bin:$PATH"; return; fi
  log "installing the SecantusDB server (MongoDB wire protocol; about 8 minutes, once per machine)"
  if ! command -v cmake >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq cmake >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq cmake >/dev/null; fi
  fi
  cargo install --locked --ignore-rust-version secantus-mdb --version "$SECANTUS_VERSION"
  export PATH="$HOME/.cargo/bin:$PATH"
}

# Installs cargo-deny at the pinned version when it is missing or another
# version is on PATH (a few minutes, once per machine).
ensure_cargo_deny() {
  if [ -x "$HOME/.cargo/bin/cargo-deny" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
  if [ "$(cargo-deny --version 2>/dev/null)" = "cargo-deny $CARGO_DENY_VERSION" ]; then return; fi
  log "installing cargo-deny $CARGO_DENY_VERSION (a few minutes, once per machine)"
  cargo install --locked cargo-deny --version "$CARGO_DENY_VERSION"
  export PATH="$HOME/.cargo/bin:$PATH"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() { # port seconds what
  local i
  for i in $(seq $(( $2 * 10 ))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "$3 did not start listening on port $1 within $2 s"; return 1
}

# Starts SecantusDB unless MONGODB_URI is already given; exports MONGODB_URI.
# With a directory, the data lives there and outlives the run; without, in a
# temporary one removed at the end.
start_mongo() { # [data-dir]
  if [ -n "${MONGODB_URI:-}" ]; then
    log "using the MongoDB given in MONGODB_URI"
    return
  fi
  ensure_secantus
  local port dir data server_log
  port=$(free_port)
  if [ -n "${1:-}" ]; then
    dir="$1"
    data="$1"
    server_log="$1.log"
  else
    dir=$(mktemp -d "$STATE/mongo.XXXXXX")
    data="$dir/data"
    server_log="$dir/server.log"
    CLEANUP_DIRS+=("$dir")
  fi
  mkdir -p "$data"
  secantusd-rs --host 127.0.0.1 --port "$port" --storage-path "$data" \
    --cache-size 256M --log-file-max 16MB >"$server_log" 2>&1 &
  STARTED_PIDS+=("$!")
  MONGO_PID=$!
  wait_for_port "$port" 30 "secantusd-rs" || { cat "$server_log" >&2; return 1; }
  export MONGODB_URI="mongodb://127.0.0.1:$port/?directConnection=true"
  export MONGO_DIR="$dir"
  log "SecantusDB (secantusd-rs) pid $MONGO_PID on port $port, data in ${dir#"$ROOT/"}"
}

# Starts a local AWS endpoint (moto) for Secrets Manager and EventBridge.
start_moto() {
  local port
  port=$(free_port)
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$STATE/moto.log" 2>&1 &
  STARTED_PIDS+=("$!")
  wait_for_port "$port" 30 "moto_server" || { cat "$STATE/moto.log" >&2; return 1; }
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  log "moto (local AWS endpoint) pid ${STARTED_PIDS[-1]} on port $port"
}

# The variables `make run`, `make test` and `make sam-api` pass from their
# own environment to every function, when set. Values travel only through
# the environment, never on a command line, where `ps` would show them.
LOCAL_API_VARS=(
  MONGODB_URI MASTER_DB TENANT_DB JWT_SECRET BCRYPT_COST RUST_LOG
  MAX_ORGANIZATIONS CREATE_LIMIT_PER_SOURCE_PER_HOUR
)

# Serves the contract's routes with the local front (local-api/): each route
# by its function's own binary, from the cargo output directory `bin_dir`
# (target/debug for the tests, target/local for `make run`), under a Lambda
# Runtime API, the request turned into the gateway's event. Exports
# ORG_API_URL and API_PID; logs to $STATE/api.log. With LOCAL_API_IAM_CALLER
# (an IAM ARN; tests only), every request is passed on as signed by that
# principal, so the operators' route answers.
start_local_api() { # bin_dir port [extra variable names passed on]
  local bin=$1 port=$2
  shift 2
  local names
  names="$(IFS=,; echo "${LOCAL_API_VARS[*]}${*:+,$*}")"
  "$bin/local-api" --manifest "$ROOT/Cargo.toml" --bin-dir "$bin" \
    --host 127.0.0.1 --port "$port" --pass "${names// /,}" \
    ${LOCAL_API_IAM_CALLER:+--iam-caller "$LOCAL_API_IAM_CALLER"} \
    >"$STATE/api.log" 2>&1 &
  STARTED_PIDS+=("$!")
  API_PID=$!
  wait_for_port "$port" 60 "the local API" || { tail -50 "$STATE/api.log" >&2; return 1; }
  export ORG_API_URL="http://127.0.0.1:$port"
}
