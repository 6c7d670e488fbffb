#!/usr/bin/env bash
# `make sam-api` (sam.sh api) and `make sam-test` (sam.sh test): the
# functions as template.yaml wires them, under SAM CLI's own local emulation
# in Docker: `sam build` (this machine's architecture), then
# `sam local start-api` on 127.0.0.1:${PORT:-3000} with the Lambda authorizer
# in front of the bearer routes; `test` also runs `sam local invoke` of every
# function with every fixture and checks the answers (scripts/sam_check.py).
#
# Honours MONGODB_URI, MASTER_DB, JWT_SECRET and PORT like `make run`, and
# starts a SecantusDB when no MONGODB_URI is given; a local AWS endpoint
# (moto) serves EventBridge. Needs a Docker engine: as root it installs
# docker.io (and debootstrap) when missing and starts dockerd when none runs.
# It uses the official emulation image when it is present or can be pulled,
# and otherwise a stand-in built here from Debian (debootstrap).
#
# Networking: the function containers run on a Docker network of their own,
# created here; the database and moto listen on loopback, and one relay each
# (scripts/relay.py) listens on that network's gateway address and nowhere
# else. Ctrl-C (or the end of the test) stops everything started here,
# containers and network included, by id.
source "$(dirname "$0")/env.sh"
cd "$ROOT"

MODE="${1:-}"
case "$MODE" in api | test) ;; *) log "usage: scripts/sam.sh api|test"; exit 2 ;; esac

case "$(uname -m)" in
  aarch64 | arm64) ARCH=arm64 ;;
  *) ARCH=x86_64 ;;
esac
OFFICIAL_IMAGE="public.ecr.aws/lambda/provided:al2023-$ARCH"
STANDIN_IMAGE="local/lambda-provided:al2023"
# The parameter without a default; env.json blanks the variable it feeds.
PLACEHOLDER_ARN="arn:aws:secretsmanager:us-east-1:000000000000:secret:local-placeholder-AbCdEf"
PARAMETERS="Architecture=$ARCH MongoUriSecretArn=$PLACEHOLDER_ARN"
SAM_DIR="$STATE/sam"
mkdir -p "$SAM_DIR"

SAM_PID=""
DOCKERD_PID=""
SAM_NETWORK=""

stop_sam() {
  if [ -n "$SAM_PID" ] && kill -0 "$SAM_PID" 2>/dev/null; then
    kill "$SAM_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SAM_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SAM_PID" 2>/dev/null || true
  fi
  SAM_PID=""
  if [ -n "$SAM_NETWORK" ]; then
    # Every container SAM made here is on this network: remove them by id.
    local ids
    ids="$(docker ps -aq --filter "network=$SAM_NETWORK" 2>/dev/null || true)"
    if [ -n "$ids" ]; then
      log "removing the function containers: $(echo $ids)"
      # shellcheck disable=SC2086
      docker rm -f $ids >/dev/null 2>&1 || true
    fi
    docker network rm "$SAM_NETWORK" >/dev/null 2>&1 || true
    SAM_NETWORK=""
  fi
  stop_started
  if [ -n "$DOCKERD_PID" ]; then
    log "stopping the dockerd started here (pid $DOCKERD_PID)"
    kill "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DOCKERD_PID" 2>/dev/null || true
    DOCKERD_PID=""
  fi
}
trap 'stop_sam' EXIT
trap 'exit 130' INT TERM

ensure_docker() {
  if docker info >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" != 0 ]; then
    log "make sam-$MODE needs Docker: no Docker engine answers here, and installing or starting one needs root"
    exit 1
  fi
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    log "installing docker.io and debootstrap (apt)"
    apt-get update -qq && apt-get install -y -qq docker.io debootstrap >/dev/null
  fi
  log "starting dockerd (stopped again at the end)"
  dockerd >"$STATE/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && return
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.5
  done
  tail -20 "$STATE/dockerd.log" >&2
  log "dockerd did not start"
  exit 1
}

# Sets INVOKE_IMAGE: the official image when present or pullable, else the
# stand-in (built once: a Debian minbase root file system; SAM adds its own
# runtime interface emulator on top of whichever image it is given).
ensure_invoke_image() {
  if docker image inspect "$OFFICIAL_IMAGE" >/dev/null 2>&1 ||
    timeout 300 docker pull -q "$OFFICIAL_IMAGE" >/dev/null 2>&1; then
    INVOKE_IMAGE="$OFFICIAL_IMAGE"
    log "emulation image: $OFFICIAL_IMAGE (official)"
    return
  fi
  if ! docker image inspect "$STANDIN_IMAGE" >/dev/null 2>&1; then
    if ! command -v debootstrap >/dev/null 2>&1; then
      if [ "$(id -u)" != 0 ]; then
        log "$OFFICIAL_IMAGE cannot be pulled, and building the stand-in needs debootstrap and root"
        exit 1
      fi
      apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
    fi
    log "$OFFICIAL_IMAGE cannot be pulled: building the stand-in $STANDIN_IMAGE (debootstrap, about a minute, once)"
    local dir
    dir="$(mktemp -d "$STATE/rootfs.XXXXXX")"
    CLEANUP_DIRS+=("$dir")
    debootstrap --variant=minbase bookworm "$dir/root" >"$STATE/debootstrap.log" 2>&1 ||
      { tail -20 "$STATE/debootstrap.log" >&2; exit 1; }
    tar -C "$dir/root" -c . | docker import \
      --change 'LABEL org-service.stand-in=provided.al2023' \
      - "$STANDIN_IMAGE" >/dev/null
    rm -rf "$dir"
  fi
  INVOKE_IMAGE="$STANDIN_IMAGE"
  log "emulation image: $OFFICIAL_IMAGE cannot be pulled here; using the stand-in $STANDIN_IMAGE"
}

# Release build without link-time optimisation and with parallel code
# generation: what matters locally is the template's wiring, not the last
# percent of speed, and LTO with one codegen unit makes each function's final
# link minutes long on a small machine. A target directory of its own keeps
# these settings from invalidating `make package`'s artefacts.
sam_build() {
  log "sam build ($ARCH, release without LTO)"
  local started=$SECONDS
  CARGO_TARGET_DIR="$ROOT/target/sam" \
    CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    sam build --no-cached --parameter-overrides "$PARAMETERS" >"$STATE/sam-build.log" 2>&1 ||
    { tail -40 "$STATE/sam-build.log" >&2; log "sam build failed (log: .local/sam-build.log)"; exit 1; }
  log "sam build took $((SECONDS - started)) s"
}

# Starts a relay on the network's gateway to 127.0.0.1:$1; sets RELAY_PORT.
relay() {
  local file
  file="$(mktemp "$SAM_DIR/relay.XXXXXX")"
  rm -f "$file"
  python3 "$ROOT/scripts/relay.py" "$GATEWAY" 127.0.0.1 "$1" "$file" >>"$STATE/relay.log" 2>&1 &
  STARTED_PIDS+=("$!")
  for _ in $(seq 100); do
    if [ -s "$file" ]; then
      RELAY_PORT="$(cat "$file")"
      rm -f "$file"
      return
    fi
    sleep 0.1
  done
  log "the relay to port $1 did not start"
  exit 1
}

ensure_venv
ensure_docker
ensure_invoke_image
sam_build

PORT="${PORT:-3000}"
if [ "$MODE" = test ]; then
  PORT="$(free_port)"
  export MASTER_DB="samtest_$(date +%s)_$$"
  # Cost 4: the SQS fixture's pre-hashed message is a cost-4 hash.
  export BCRYPT_COST=4
  unset JWT_SECRET
fi
export MASTER_DB="${MASTER_DB:-master_org_db}"
if [ -z "${JWT_SECRET:-}" ]; then
  JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
  if [ "$MODE" = api ]; then
    log "JWT_SECRET not set: using a random key for this run (tokens end with it)"
  fi
fi
export JWT_SECRET

if [ -n "${MONGODB_URI:-}" ]; then
  log "using the MongoDB given in MONGODB_URI"
elif [ "$MODE" = api ]; then
  start_mongo "$STATE/sam-data"
else
  start_mongo
fi
start_moto

SAM_NETWORK="org-service-sam-$$"
docker network create --driver bridge "$SAM_NETWORK" >/dev/null
GATEWAY="$(docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' "$SAM_NETWORK")"
log "Docker network $SAM_NETWORK, gateway $GATEWAY"

# The containers' view: a loopback database is reached through a relay.
loopback_port="$(python3 - "$MONGODB_URI" <<'PY'
import sys
from urllib.parse import urlsplit
parts = urlsplit(sys.argv[1])
hosts = parts.netloc.rsplit("@", 1)[-1]
if parts.scheme == "mongodb" and "," not in hosts and parts.hostname in ("127.0.0.1", "localhost", "::1"):
    print(parts.port or 27017)
PY
)"
CONTAINER_MONGODB_URI="$MONGODB_URI"
if [ -n "$loopback_port" ]; then
  relay "$loopback_port"
  CONTAINER_MONGODB_URI="$(python3 - "$MONGODB_URI" "$GATEWAY:$RELAY_PORT" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit, parse_qsl, urlencode
uri, target = sys.argv[1:]
parts = urlsplit(uri)
user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
query = dict(parse_qsl(parts.query))
query.setdefault("directConnection", "true")
print(urlunsplit((parts.scheme, user + target, parts.path or "/", urlencode(query), "")))
PY
)"
fi
relay "${AWS_ENDPOINT_URL##*:}"
moto_relay="$RELAY_PORT"

# The bus SAM resolves `!Ref OrgEventBus` to locally is its logical id.
"$VENV/bin/python" - <<'PY'
import boto3
boto3.client("events").create_event_bus(Name="OrgEventBus")
PY

# env.json with this run's values; only in a file (mode 600), never on a
# command line.
ENV_FILE="$SAM_DIR/env.json"
(umask 077 && CONTAINER_MONGODB_URI="$CONTAINER_MONGODB_URI" \
  CONTAINER_AWS_ENDPOINT_URL="http://$GATEWAY:$moto_relay" \
  python3 - "$ROOT/env.json" "${LOCAL_API_VARS[@]}" >"$ENV_FILE" <<'PY'
import json, os, sys
with open(sys.argv[1]) as f:
    env = json.load(f)
params = env.setdefault("Parameters", {})
for name in sys.argv[2:]:
    if os.environ.get(name):
        params[name] = os.environ[name]
params["MONGODB_URI"] = os.environ["CONTAINER_MONGODB_URI"]
params["LOCAL_AWS_ENDPOINT_URL"] = os.environ["CONTAINER_AWS_ENDPOINT_URL"]
params["EVENT_BUS_NAME"] = "OrgEventBus"
# SAM lets the shell environment fill declared variables: keep this
# machine's own CA bundle path (not in the image) out.
params["AWS_CA_BUNDLE"] = ""
json.dump(env, sys.stdout, indent=2)
PY
)

COMMON_ARGS=(--env-vars "$ENV_FILE" --parameter-overrides "$PARAMETERS"
  --docker-network "$SAM_NETWORK" --invoke-image "$INVOKE_IMAGE" --skip-pull-image)

"$VENV/bin/python" "$ROOT/scripts/sam_local.py" local start-api --host 127.0.0.1 --port "$PORT" \
  --warm-containers LAZY "${COMMON_ARGS[@]}" >"$STATE/sam-api.log" 2>&1 &
SAM_PID=$!
wait_for_port "$PORT" 120 "sam local start-api" || { tail -40 "$STATE/sam-api.log" >&2; exit 1; }

if [ "$MODE" = api ]; then
  cat >&2 <<MSG
==> SAM's local gateway on http://127.0.0.1:$PORT  (logs: .local/sam-api.log; Ctrl-C stops)
    POST /admin/login, POST /org/create, GET /org/get, POST /org/restore; PUT /org/update, DELETE /org/delete
    and GET /org/audit behind the authorizer
    curl -s -XPOST http://127.0.0.1:$PORT/org/create -d '{"organization_name":"acme","email":"admin@acme.example","password":"correct-horse-battery"}'
MSG
  wait "$SAM_PID"
else
  SAM_API_URL="http://127.0.0.1:$PORT" SAM_PYTHON="$VENV/bin/python" \
    SAM_INVOKE_ARGS="$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${COMMON_ARGS[@]}")" \
    "$VENV/bin/python" "$ROOT/scripts/sam_check.py"
fi
