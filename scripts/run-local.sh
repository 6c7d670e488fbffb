#!/usr/bin/env bash
# `make run`: serves every route of the contract on http://127.0.0.1:${PORT:-3000}
# through the functions' own binaries under a local Lambda Runtime API
# (local-api/), against MONGODB_URI or a SecantusDB it starts itself. The
# variables of LOCAL_API_VARS (scripts/env.sh) pass through from this
# environment. Foreground; Ctrl-C stops everything it started.
source "$(dirname "$0")/env.sh"

PORT="${PORT:-3000}"
export MASTER_DB="${MASTER_DB:-master_org_db}"
if [ -z "${JWT_SECRET:-}" ]; then
  JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
  log "JWT_SECRET not set: using a random key for this run (tokens end with it)"
fi
export JWT_SECRET

ensure_venv
trap 'stop_started' EXIT
trap 'exit 130' INT TERM
# Local data survives restarts of `make run`.
start_mongo "$STATE/run-data"

# The `local` profile (Cargo.toml): optimised like release, without its
# whole-program LTO, and incremental.
log "building the functions (cargo profile local: the first build takes minutes, later ones seconds)"
cargo build --workspace --bins --profile local --quiet
start_local_api "$ROOT/target/local" "$PORT"
cat >&2 <<MSG
==> serving on $ORG_API_URL  (logs: .local/api.log; Ctrl-C stops)
    curl -s -XPOST $ORG_API_URL/org/create -d '{"organization_name":"acme","email":"admin@acme.example","password":"correct-horse-battery"}'
    curl -s -XPOST $ORG_API_URL/admin/login -d '{"email":"admin@acme.example","password":"correct-horse-battery"}'
MSG
wait "$API_PID"
