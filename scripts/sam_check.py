"""`make sam-test`'s checks, run by scripts/sam.sh once everything is up.

(a) `sam local invoke` of every function with every fixture in events/,
    asserting each answer: the HTTP events' statuses, the authorizer's allow
    and deny, the listing with and without the gateway's IAM identity,
    EventBridge and the schedule, and the SQS batch's partial batch
    response naming exactly the messages that must fail.
(b) The contract through `sam local start-api` (the template's routes and
    its authorizer): create, get, login, update, delete, restore, the gateway's 401
    without a token and 403 for a forged one, the listing's 403 from the
    function (SAM's gateway does not emulate IAM, so no request carries an
    identity), and a JSON-labelled body that is not UTF-8 answered by the
    function's own 400.

Environment (set by scripts/sam.sh): SAM_API_URL, SAM_INVOKE_ARGS (a JSON
list of the arguments every `sam local invoke` takes), SAM_PYTHON (the
Python that runs scripts/sam_local.py).
"""

import base64
import copy
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENTS = os.path.join(ROOT, "events")
API = os.environ["SAM_API_URL"]
INVOKE_ARGS = json.loads(os.environ["SAM_INVOKE_ARGS"])
SAM = [os.environ["SAM_PYTHON"], os.path.join(ROOT, "scripts", "sam_local.py")]

results = []


def check(name, condition, detail=""):
    results.append((name, bool(condition)))
    print(f"    {'ok  ' if condition else 'FAIL'} {name}" + ("" if condition else f": {detail}"), flush=True)


def fixture(name):
    with open(os.path.join(EVENTS, name)) as f:
        return json.load(f)


def invoke(function, event):
    """`sam local invoke FUNCTION` with EVENT; the function's answer as JSON."""
    path = os.path.join(ROOT, ".local", "sam", "event.json")
    with open(path, "w") as f:
        json.dump(event, f)
    started = time.monotonic()
    run = subprocess.run(
        SAM + ["local", "invoke", function, "--event", path, *INVOKE_ARGS],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    took = time.monotonic() - started
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    try:
        answer = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        answer = None
    if run.returncode != 0 or answer is None:
        print(run.stderr[-3000:], file=sys.stderr)
    print(f"    ({function}: {took:.1f} s)", flush=True)
    return answer


def http_body(answer):
    try:
        return json.loads(answer.get("body") or "null")
    except (AttributeError, json.JSONDecodeError):
        return None


def with_token(event, token):
    event = copy.deepcopy(event)
    text = json.dumps(event).replace("REPLACE_WITH_TOKEN", token)
    return json.loads(text)


def forge(token):
    """The same header and claims, signed with a key the service never had."""
    header, claims, _ = token.split(".")
    signature = hmac.new(b"not-the-service-key", f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def request(method, path, body=None, token=None, content_type="application/json"):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(API + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", content_type)
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            status, text = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    try:
        return status, json.loads(text or b"null")
    except json.JSONDecodeError:
        return status, text


def invoke_every_fixture():
    print("==> (a) sam local invoke, every function with every fixture", flush=True)
    created = invoke("CreateFunction", fixture("create.json"))
    check("create.json: 201 and the organization", created and created.get("statusCode") == 201
          and http_body(created).get("organization_name") == "acme", created)

    got = invoke("GetFunction", fixture("get.json"))
    check("get.json: 200 acme", got and got.get("statusCode") == 200
          and http_body(got).get("organization_name") == "acme", got)

    # state=active&prefix=acme: acme is the first name on the first page.
    listed = invoke("ListFunction", fixture("list.json"))
    page = http_body(listed) or {}
    rows = page.get("organizations")
    check("list.json: 200, a page of active organizations with acme on it, and next_cursor",
          listed and listed.get("statusCode") == 200 and isinstance(rows, list) and "next_cursor" in page
          and "acme" in [row.get("organization_name") for row in rows]
          and all(row.get("state") == "active" for row in rows), listed)
    refused = invoke("ListFunction", fixture("list-no-iam.json"))
    check("list-no-iam.json (no IAM identity): 403 forbidden", refused and refused.get("statusCode") == 403
          and ((http_body(refused) or {}).get("error") or {}).get("code") == "forbidden", refused)

    login = invoke("LoginFunction", fixture("login.json"))
    token = (http_body(login) or {}).get("access_token") if login else None
    check("login.json: 200 and a bearer token", login and login.get("statusCode") == 200 and token, login)
    token = token or "none.none.none"

    allowed = invoke("AuthorizerFunction", with_token(fixture("authorizer.json"), token))
    check("authorizer.json with the token: allowed, with the organization in the context",
          allowed and allowed.get("isAuthorized") is True
          and allowed.get("context", {}).get("organization_id"), allowed)
    denied = invoke("AuthorizerFunction", with_token(fixture("authorizer.json"), forge(token)))
    check("authorizer.json with a forged token: denied", denied and denied.get("isAuthorized") is False, denied)

    trail = invoke("AuditFunction", with_token(fixture("audit.json"), token))
    check("audit.json: 200, newest first, the login then the create",
          trail and trail.get("statusCode") == 200
          and [e.get("action") for e in (http_body(trail) or {}).get("entries", [])][:2]
          == ["login.succeeded", "organization.created"], trail)

    renamed = invoke("RenameFunction", with_token(fixture("update.json"), token))
    check("update.json: 200 acme-renamed", renamed and renamed.get("statusCode") == 200
          and http_body(renamed).get("organization_name") == "acme-renamed", renamed)

    deleted = invoke("DeleteFunction", with_token(fixture("delete.json"), token))
    check("delete.json: 200 deleted", deleted and deleted.get("statusCode") == 200
          and http_body(deleted).get("status") == "deleted", deleted)

    # The deleted organization, listed with its deletion and purge times.
    gone = fixture("list.json")
    gone["rawQueryString"] = "state=deleted&prefix=acme-renamed"
    gone["queryStringParameters"] = {"state": "deleted", "prefix": "acme-renamed"}
    listed = invoke("ListFunction", gone)
    rows = (http_body(listed) or {}).get("organizations") or []
    check("list.json with state=deleted: acme-renamed, with deleted_at and purge_after",
          listed and listed.get("statusCode") == 200
          and any(row.get("organization_name") == "acme-renamed" and row.get("deleted_at")
                  and row.get("purge_after") for row in rows), listed)

    restored = invoke("RestoreFunction", fixture("restore.json"))
    check("restore.json: 200 acme-renamed back", restored and restored.get("statusCode") == 200
          and http_body(restored).get("organization_name") == "acme-renamed", restored)

    purged = invoke("PurgeFunction", fixture("purge-schedule.json"))
    check("purge-schedule.json: a purge run's report (nothing due yet)",
          isinstance(purged, dict) and purged.get("purged") == 0 and "more" in purged, purged)

    bus = invoke("CreateFunction", fixture("provision-eventbridge.json"))
    check("provision-eventbridge.json: created", bus and bus.get("status") == "created", bus)

    # The batch's msg-existing asks for "taken" with another admin's email.
    taken = fixture("create.json")
    taken["body"] = json.dumps({"organization_name": "taken", "email": "first@taken.example",
                                "password": "correct-horse-battery"})
    first = invoke("CreateFunction", taken)
    check("create.json as 'taken': 201", first and first.get("statusCode") == 201, first)
    batch = invoke("CreateFunction", fixture("provision-sqs-batch.json"))
    failed = sorted(f.get("itemIdentifier") for f in (batch or {}).get("batchItemFailures", []))
    check("provision-sqs-batch.json: batchItemFailures are exactly msg-existing and msg-invalid",
          failed == ["msg-existing", "msg-invalid"], batch)

    flushed = invoke("CreateFunction", fixture("provision-schedule.json"))
    check("provision-schedule.json: flushed", flushed and flushed.get("status") == "flushed", flushed)


def contract_through_start_api():
    print(f"==> (b) the contract through sam local start-api at {API}", flush=True)
    org = f"sam-{int(time.time())}"
    email, password = f"admin@{org}.example", "correct-horse-battery"

    status, body = request("POST", "/org/create", {"organization_name": org, "email": email, "password": password})
    check("POST /org/create: 201", status == 201 and body.get("organization_name") == org, (status, body))

    status, body = request("GET", f"/org/get?organization_name={org}")
    check("GET /org/get: 200", status == 200 and body.get("organization_name") == org, (status, body))

    status, body = request("POST", "/admin/login", {"email": email, "password": password})
    token = body.get("access_token") if isinstance(body, dict) else None
    check("POST /admin/login: 200 and a token", status == 200 and token, (status, body))
    token = token or "none.none.none"

    status, body = request("PUT", "/org/update", {"organization_name": f"{org}-x"})
    check("PUT /org/update without a token: the gateway's 401", status == 401, (status, body))

    status, body = request("PUT", "/org/update", {"organization_name": f"{org}-x"}, token=forge(token))
    check("PUT /org/update with a forged token: refused by the authorizer (403)", status == 403, (status, body))

    status, body = request("PUT", "/org/update", {"organization_name": f"{org}-x"}, token=token)
    check("PUT /org/update: 200 renamed", status == 200 and body.get("organization_name") == f"{org}-x",
          (status, body))

    status, body = request("DELETE", f"/org/delete?organization_name={org}-x", token=token)
    check("DELETE /org/delete: 200 deleted", status == 200 and body.get("status") == "deleted", (status, body))

    status, body = request("GET", f"/org/get?organization_name={org}-x")
    check("GET /org/get after the delete: 404", status == 404, (status, body))

    status, body = request("POST", "/org/restore", {"organization_name": f"{org}-x", "email": email,
                                                    "password": password})
    check("POST /org/restore (public, no token): 200 back", status == 200
          and body.get("organization_name") == f"{org}-x", (status, body))

    status, body = request("GET", f"/org/list?prefix={org}")
    check("GET /org/list without an IAM identity: the function's 403", status == 403
          and isinstance(body, dict) and (body.get("error") or {}).get("code") == "forbidden", (status, body))

    status, body = request("POST", "/org/create", b'{"organization_name": "\xff\xfe"}')
    check("POST /org/create with a JSON-labelled body that is not UTF-8: the function's 400",
          status == 400 and isinstance(body, dict) and "error" in body, (status, body))


def main():
    started = time.monotonic()
    invoke_every_fixture()
    part_a = time.monotonic() - started
    contract_through_start_api()
    total = time.monotonic() - started
    passed = sum(1 for _, ok in results if ok)
    failed = len(results) - passed
    print(f"==> sam checks took {total:.0f} s ((a) {part_a:.0f} s, (b) {total - part_a:.0f} s)")
    print(f"sam-test: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
