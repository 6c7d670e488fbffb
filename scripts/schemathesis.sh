#!/usr/bin/env bash
# Fuzzes the running local API from openapi.yaml with schemathesis, as part of
# `make test` (after the local API is up): every operation gets a bounded
# number of generated requests, valid and invalid, and the run fails on any
# 5xx or any answer that the document does not describe (status, content
# type, headers, body schema).
#
# Needs ORG_API_URL (the local API) and `st` on PATH (.venv/bin). The
# protected routes are called with the bearer token of an organization this
# script creates; the fuzzer is free to rename or delete it. The operators'
# route answers only when the local API passes requests on as IAM-signed
# (LOCAL_API_IAM_CALLER, as `make test` starts it).
#
# SCHEMATHESIS_MAX_EXAMPLES  generated cases per operation and phase (default 200)
# SCHEMATHESIS_SEED          replays a run (default: random; printed)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
: "${ORG_API_URL:?ORG_API_URL must name the local API; scripts/test.sh starts it}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-200}"
SEED="${SCHEMATHESIS_SEED:-$(python3 -c 'import secrets; print(secrets.randbelow(2**31))')}"
REPORT_DIR="$ROOT/.local/schemathesis"
log() { printf '==> %s\n' "$*" >&2; }

command -v st >/dev/null || { log "st (schemathesis) is not on PATH; .venv/bin should be"; exit 1; }
# The Python beside `st` has what the run summary reads YAML with.
python="$(dirname "$(command -v st)")/python3"
rm -rf "$REPORT_DIR"
mkdir -p "$REPORT_DIR"

# The local API starts each function's process on its first request: wake
# each with a request that changes nothing, so that no start-up time lands
# on the fuzzer's calls.
warm() { # method path body expected-status
  local code body
  body="$(mktemp)"
  for attempt in 1 2 3; do
    code="$(curl -sS -o "$body" -w '%{http_code}' --max-time 300 -X "$1" "$ORG_API_URL$2" \
      -H 'content-type: application/json' --data-binary "$3" || true)"
    if [ "$code" = "$4" ]; then rm -f "$body"; return 0; fi
    [ "$attempt" = 3 ] || sleep 5
  done
  log "$1 $2 answered $code, expected $4: $(cat "$body")"
  rm -f "$body"
  return 1
}
warm POST /admin/login '{}' 422
warm POST /org/create '{}' 422
warm GET '/org/get?organization_name=-' '' 422
warm PUT /org/update '{}' 401
warm DELETE '/org/delete?organization_name=-' '' 401
warm POST /org/restore '{}' 422
warm GET /org/audit '' 401
warm GET '/org/list?limit=1' '' 200

# One organization to hold the token; its name is unique per run so that the
# script can run against a database that outlived earlier runs.
org="st-$(date +%s)-$$"
email="admin@$org.example"
password="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"

# POSTs $2 to $1; prints the body; fails unless the status is $3.
post() {
  local out status
  out="$(mktemp)"
  status="$(curl -sS -o "$out" -w '%{http_code}' --max-time 150 -X POST "$ORG_API_URL$1" \
    -H 'content-type: application/json' --data-binary "$2")"
  if [ "$status" != "$3" ]; then
    log "POST $1 answered $status, expected $3: $(cat "$out")"
    rm -f "$out"
    return 1
  fi
  cat "$out"
  rm -f "$out"
}

post /org/create "{\"organization_name\":\"$org\",\"email\":\"$email\",\"password\":\"$password\"}" 201 >/dev/null
token="$(post /admin/login "{\"email\":\"$email\",\"password\":\"$password\"}" 200 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"
log "schemathesis against $ORG_API_URL: organization $org, at most $MAX_EXAMPLES examples per operation and phase, seed $SEED"

# One worker: with two, hypothesis sometimes parses its own lambdas from two
# threads at once, which this Python (3.11.7; fixed in 3.11.8) can fail with
# "SystemError: AST constructor recursion depth mismatch".
# From the report directory: st keeps a cache (.schemathesis/) where it runs.
started=$SECONDS
status=0
(cd "$REPORT_DIR" && st run "$ROOT/openapi.yaml" \
  --url "$ORG_API_URL" \
  --header "Authorization: Bearer $token" \
  --phases examples,coverage,fuzzing \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "$MAX_EXAMPLES" \
  --seed "$SEED" \
  --workers 1 \
  --request-timeout 30 \
  --generation-database none \
  --no-color \
  --report ndjson --report-ndjson-path "$REPORT_DIR/events.ndjson") \
  || status=$?
elapsed=$((SECONDS - started))

# How many calls ran, from the run's event log: every request schemathesis
# sent, and the statuses that came back, per documented operation; the
# coverage phase also probes each path with undocumented methods.
"$python" - "$REPORT_DIR/events.ndjson" "$elapsed" openapi.yaml <<'PY' || true
import collections, json, sys
from urllib.parse import urlsplit

import yaml

events_path, elapsed, document = sys.argv[1:4]
with open(document) as f:
    operations = {
        f"{method.upper()} {path}"
        for path, item in yaml.safe_load(f)["paths"].items()
        for method in item
    }
calls = collections.defaultdict(collections.Counter)


def walk(node):
    if isinstance(node, dict):
        request, response = node.get("request"), node.get("response")
        if isinstance(request, dict) and isinstance(response, dict) and "status_code" in response:
            route = f"{request.get('method')} {urlsplit(request.get('uri', '')).path}"
            calls[route][response["status_code"]] += 1
        for value in node.values():
            walk(value)
    elif isinstance(node, list):
        for value in node:
            walk(value)


with open(events_path) as events:
    for line in events:
        walk(json.loads(line))
count = lambda routes: sum(sum(calls[r].values()) for r in routes)
documented = sorted(r for r in calls if r in operations)
probes = [r for r in calls if r not in operations]
print(
    f"==> schemathesis: {count(calls)} calls in {elapsed} s: {count(documented)} to the "
    f"{len(operations)} documented operations, {count(probes)} probes of undocumented methods",
    file=sys.stderr,
)
for route in documented:
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(calls[route].items()))
    print(f"    {route}: {count([route])} ({statuses})", file=sys.stderr)
PY

if [ "$status" -ne 0 ]; then
  log "schemathesis failed (exit $status); replay with SCHEMATHESIS_SEED=$SEED; events in $REPORT_DIR"
fi
exit "$status"
