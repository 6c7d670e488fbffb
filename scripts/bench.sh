#!/usr/bin/env bash
# `make bench`: the performance measurements on this machine, in one run:
# release build, binary and zip sizes, bcrypt cost, cold start / memory /
# rename scaling under the harness's Lambda Runtime API (bench/harness),
# warm latency with wrk against the local API, and `make run`'s build (the
# local profile) against release for GET and login. Prints one table with the
# ratios and budget checks and writes BENCHMARKS.md (bench/report.py) with
# its charts in docs/ (bench/charts.py, matplotlib from .venv).
#
# Uses MONGODB_URI when given (and then adds the 1,000,000-document rename),
# else starts SecantusDB; starts moto for Secrets Manager and EventBridge.
# Everything it starts is stopped by process id on exit.
#
# Knobs: BENCH_RUNS (cold runs per function, 20), BENCH_WARM (warm
# invocations per function, 1000), BENCH_SECONDS (wrk duration, 10),
# BENCH_CONNECTIONS (wrk connection counts, "1 4"), BENCH_PHASES (the
# harness's phases, "cold,rss,rename,pages"), BENCH_STRICT=1 (exit 1 when a
# budget fails).
source "$(dirname "$0")/env.sh"
cd "$ROOT"

RUNS="${BENCH_RUNS:-20}"
PHASES="${BENCH_PHASES:-cold,rss,rename,pages}"
WARM="${BENCH_WARM:-1000}"
SECONDS_PER_ROW="${BENCH_SECONDS:-10}"
CONNECTIONS="${BENCH_CONNECTIONS:-1 4}"
OUT="$STATE/bench"
mapfile -t FUNCTIONS < <(function_names)
started=$(date +%s)

ensure_venv
apt_updated=""
apt_install() { # command package: installs the Debian package when the command is missing
  command -v "$1" >/dev/null 2>&1 && return
  log "installing $2 (Debian package)"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  [ -n "$apt_updated" ] || { $sudo apt-get update -qq; apt_updated=1; }
  $sudo apt-get install -y -qq "$2" >/dev/null
}
apt_install wrk wrk
apt_install zip zip
apt_install curl curl

if [ -n "${MONGODB_URI:-}" ]; then
  SIZES=1,10000,100000,1000000
  MONGO_DESC="the server at MONGODB_URI (external)"
  MONGO_NOTE="On this server renameCollection within one database should be a metadata change."
else
  SIZES=1,10000,100000
  MONGO_DESC="SecantusDB secantusd-rs $SECANTUS_VERSION (MongoDB wire protocol, local, started by make bench)"
  MONGO_NOTE="SecantusDB copies the documents on renameCollection (mongod renames within a database as a metadata change), so locally the service's rename grows with size too."
fi

trap 'stop_started' EXIT
trap 'exit 130' INT TERM
rm -rf "$OUT"
mkdir -p "$OUT/zip"

log "release build (workspace release profile)"
build_started=$(date +%s)
cargo build --release --workspace --bins --quiet
build_seconds=$(( $(date +%s) - build_started ))
BIN="$ROOT/target/release"
TARGET="$(rustc -vV | sed -n 's/^host: //p')"

log "binary and zip sizes"
{
  printf '{"target": "%s", "functions": {' "$TARGET"
  sep=""
  for f in "${FUNCTIONS[@]}" hello; do
    mkdir -p "$OUT/zip/$f"
    cp "$BIN/$f" "$OUT/zip/$f/bootstrap"
    (cd "$OUT/zip/$f" && rm -f ../"$f".zip && zip -q -9 -X ../"$f".zip bootstrap)
    printf '%s"%s": {"binary": %s, "zip": %s}' "$sep" "$f" "$(stat -c %s "$BIN/$f")" "$(stat -c %s "$OUT/zip/$f.zip")"
    sep=", "
  done
  printf '}}\n'
} >"$OUT/sizes.json"

log "bcrypt: one verify at costs 10 to 13"
"$BIN/bcrypt-cost" 10 13 9 >"$OUT/bcrypt.jsonl"

start_mongo
start_moto

log "cold start, memory, rename scaling and paged reads under the harness's Runtime API (several minutes)"
"$BIN/harness" --bin-dir "$BIN" --events events --out "$OUT/harness.json" --log "$OUT/functions.log" \
  --runs "$RUNS" --warm "$WARM" --sizes "$SIZES" --phases "$PHASES"

log "warm latency: wrk against the local API (cargo lambda watch --release)"
API_DB="bench_api_$(date +%s)"
API_PORT=$(free_port)
API_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
# As start_local_api in env.sh, in release mode: what is measured is the
# release build, and a debug bcrypt would be many times slower.
cargo lambda watch --release --ignore-changes -A 127.0.0.1 -P "$API_PORT" \
  --env-var "MONGODB_URI=$MONGODB_URI" \
  --env-var "MASTER_DB=$API_DB" \
  --env-var "JWT_SECRET=$API_KEY" \
  --env-var "CREATE_LIMIT_PER_SOURCE_PER_HOUR=0" \
  --env-var "RUST_LOG=warn" \
  >"$OUT/api.log" 2>&1 &
STARTED_PIDS+=("$!")
WATCH_PID=$!
wait_for_port "$API_PORT" 600 "cargo lambda watch" || { tail -50 "$OUT/api.log" >&2; exit 1; }
API="http://127.0.0.1:$API_PORT"
ORG="wrk-main"
request() { # method path [body]; fails unless 2xx; the first call of a function builds and starts it
  curl -sS -o /dev/null -w '%{http_code}' -X "$1" "$API$2" ${3:+-H 'Content-Type: application/json' -d "$3"} \
    --max-time 600 | grep -q '^2' || { log "$1 $2 failed"; tail -30 "$OUT/api.log" >&2; exit 1; }
}
request POST /org/create "{\"organization_name\":\"$ORG\",\"email\":\"admin@$ORG.example\",\"password\":\"correct-horse-battery\"}"
request GET "/org/get?organization_name=$ORG"
request POST /admin/login "{\"email\":\"admin@$ORG.example\",\"password\":\"correct-horse-battery\"}"
export BENCH_WRK_DIR="$ROOT/bench/harness/wrk" BENCH_ORG="$ORG"
for route in get login create; do
  for c in $CONNECTIONS; do
    BENCH_NONCE="$(date +%s)c$c" wrk -t1 -c"$c" -d"${SECONDS_PER_ROW}s" --timeout 30s \
      -s "$BENCH_WRK_DIR/$route.lua" "$API" >"$OUT/wrk-$route-c$c.txt"
    grep '^{"requests"' "$OUT/wrk-$route-c$c.txt" >"$OUT/wrk-$route-c$c.json"
  done
done
stop_pid "$WATCH_PID"

log "make run's build (cargo profile local) against release: wrk GET and login, one connection, through local-api"
build_started=$(date +%s)
cargo build --profile local --workspace --bins --quiet
local_build_seconds=$(( $(date +%s) - build_started ))
for profile in release local; do
  MASTER_DB="$API_DB" JWT_SECRET="$API_KEY" CREATE_LIMIT_PER_SOURCE_PER_HOUR=0 RUST_LOG=warn \
    start_local_api "$ROOT/target/$profile" "$(free_port)"
  API="$ORG_API_URL"
  request GET "/org/get?organization_name=$ORG"
  request POST /admin/login "{\"email\":\"admin@$ORG.example\",\"password\":\"correct-horse-battery\"}"
  for route in get login; do
    wrk -t1 -c1 -d"${SECONDS_PER_ROW}s" --timeout 30s -s "$BENCH_WRK_DIR/$route.lua" "$API" \
      | grep '^{"requests"' >"$OUT/run-$profile-$route.json"
  done
  stop_pid "$API_PID"
done
"$BIN/harness" drop-database "$MONGODB_URI" "$API_DB" || log "could not drop $API_DB"
stop_started

cat >"$OUT/meta.json" <<JSON
{"elapsed_seconds": $(( $(date +%s) - started )), "build_seconds": $build_seconds,
 "local_build_seconds": $local_build_seconds, "wrk_seconds": $SECONDS_PER_ROW,
 "mongo": "$MONGO_DESC", "mongo_note": "$MONGO_NOTE",
 "moto": "$("$VENV/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null)"}
JSON
"$VENV/bin/python" bench/report.py "$OUT" BENCHMARKS.md
log "results written to BENCHMARKS.md, charts to docs/bench-*.svg (raw figures in .local/bench/)"
