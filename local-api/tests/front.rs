//! `make run`'s front, started as `make run` starts it, in front of the
//! functions' own binaries and the real database (`MONGODB_URI`, started by
//! `make test`): a client's bytes reach the function whatever they are, and a
//! function process that dies mid-request answers 502 and is replaced.
//!
//! The function binaries are the workspace's `target/debug` ones, built with
//! the `failpoints` feature as `make test` builds them, so that a request can
//! be held at a named step while the test kills its process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Front {
    child: Child,
    base: String,
    /// Every line the front and its functions have written to stdout.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Front {
    fn drop(&mut self) {
        // SIGTERM: the front kills its function processes, then exits.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("local-api sits inside the workspace")
        .to_path_buf()
}

/// `target/debug`, where this test's own executable lives (in `deps/`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/debug/deps/<test>")
        .to_path_buf();
    assert!(
        dir.join("create").is_file(),
        "{}: no function binaries; `cargo build --workspace --bins --features shared/failpoints` \
         first (make test does)",
        dir.display()
    );
    dir
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Starts the front on a free loopback port; `env` is its own environment,
/// of which the names in `pass` reach the functions.
fn start(env: &[(&str, String)], pass: &[&str]) -> Front {
    start_with(env, pass, &[])
}

/// [`start`], with more command-line arguments.
fn start_with(env: &[(&str, String)], pass: &[&str], args: &[&str]) -> Front {
    let uri = std::env::var("MONGODB_URI")
        .expect("MONGODB_URI must name a MongoDB server; `make test` starts one");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_local-api"));
    cmd.args(["--manifest"])
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(["--host", "127.0.0.1", "--port", "0", "--pass"])
        .arg(
            ["MONGODB_URI", "MASTER_DB", "JWT_SECRET", "BCRYPT_COST"]
                .iter()
                .chain(pass)
                .copied()
                .collect::<Vec<_>>()
                .join(","),
        )
        .args(args)
        .env("MONGODB_URI", uri)
        .env("MASTER_DB", unique("front"))
        // At least the 32 bytes a function demands of a signing key.
        .env(
            "JWT_SECRET",
            format!("{}-{}", unique("key"), "k".repeat(32)),
        )
        .env("BCRYPT_COST", "4")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start local-api");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stdout = BufReader::new(stdout);
    let mut first = String::new();
    stdout
        .read_line(&mut first)
        .expect("read the front's address");
    // The functions log to the same stdout: keep reading it, so that they
    // never write into a closed pipe, and keep it for the tests that read it.
    let lines = Arc::new(Mutex::new(Vec::new()));
    let kept = lines.clone();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            kept.lock().unwrap().push(line);
        }
    });
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    Front { child, base, lines }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn send(base: &str, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .unwrap();
    let mut resp = agent().run(req).unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The running processes whose parent is `parent` and whose executable is
/// the function binary `name`.
fn function_pids(parent: u32, name: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        let exited = rest.starts_with('Z');
        if ppid == Some(parent) && comm.ends_with(&format!("({name}")) && !exited {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn a_json_labelled_body_that_is_not_utf8_reaches_the_function_and_gets_its_400() {
    let front = start(&[], &[]);

    let (status, body) = send(
        &front.base,
        "POST",
        "/org/create",
        b"{\"organization_name\": \"\xff\xfe\", \"email\": \"a@b.example\"}",
    );

    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["code"].is_string(),
        "the service's own error shape: {body}"
    );
}

#[test]
fn a_header_value_that_is_not_ascii_reaches_the_function() {
    let front = start(&[], &[]);

    let req = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{}/org/create", front.base))
        .header("content-type", "application/json")
        .header(
            "idempotency-key",
            ureq::http::HeaderValue::from_bytes("schlüssel".as_bytes()).unwrap(),
        )
        .body(b"{}".to_vec())
        .unwrap();
    let mut resp = agent().run(req).unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();

    assert_eq!(status, 422, "{text}");
}

#[test]
fn the_operators_route_answers_403_unless_the_front_is_told_who_signed() {
    // As `make run` starts it: nothing signs, so the function refuses.
    let unsigned = start(&[], &[]);
    let (status, body) = send(&unsigned.base, "GET", "/org/list", b"");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    drop(unsigned);

    let arn = "arn:aws:iam::123456789012:role/local-operator";
    let signed = start_with(&[], &[], &["--iam-caller", arn]);
    let (status, body) = send(&signed.base, "GET", "/org/list?limit=5", b"");
    assert_eq!(status, 200, "{body}");
    assert!(body["organizations"].is_array(), "{body}");
    assert!(body["next_cursor"].is_null(), "{body}");
}

#[test]
fn routes_outside_the_table_are_the_gateways_404_and_no_function_runs() {
    let front = start(&[], &[]);

    let (status, body) = send(&front.base, "PATCH", "/org/create", b"{}");

    assert_eq!(status, 404);
    assert_eq!(body["message"], "Not Found");
    assert!(function_pids(front.child.id(), "create").is_empty());
}

#[test]
fn a_function_that_dies_mid_request_answers_502_and_the_next_request_gets_a_fresh_process() {
    let dir = std::env::temp_dir().join(unique("front-fp"));
    std::fs::create_dir_all(&dir).unwrap();
    let gate = dir.join("create");
    let front = start(
        &[
            ("ORG_FAILPOINT", "create:after_org_insert".to_owned()),
            (
                "ORG_FAILPOINT_ACTION",
                format!("wait:{}", gate.to_string_lossy()),
            ),
        ],
        &["ORG_FAILPOINT", "ORG_FAILPOINT_ACTION"],
    );
    let base = front.base.clone();
    let in_flight = std::thread::spawn(move || {
        send(
            &base,
            "POST",
            "/org/create",
            br#"{"organization_name":"crashes","email":"admin@crashes.example","password":"correct-horse-battery"}"#,
        )
    });

    // The request is held inside the create function, after its first write.
    let reached = gate.with_extension("reached");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reached.exists() {
        assert!(
            Instant::now() < deadline,
            "the create function never reached its failpoint: are the binaries built with \
             --features shared/failpoints?"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = function_pids(front.child.id(), "create");
    assert_eq!(before.len(), 1, "one create process: {before:?}");
    Command::new("kill")
        .args(["-KILL", &before[0].to_string()])
        .status()
        .unwrap();

    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 502, "{body}");

    // The next request gets a new process, which answers it.
    let (status, body) = send(&front.base, "POST", "/org/create", b"{}");
    assert_eq!(status, 422, "{body}");
    let after = function_pids(front.child.id(), "create");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "a fresh process, not the killed one");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The CloudWatch Embedded Metric Format documents written so far.
fn metric_documents(front: &Front) -> Vec<Value> {
    front
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|doc| doc.get("_aws").is_some())
        .collect()
}

/// The first document that carries `metric`, waiting for the reader thread.
fn document_with(front: &Front, metric: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(doc) = metric_documents(front)
            .into_iter()
            .find(|d| d.get(metric).is_some())
        {
            return doc;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics document with {metric}; stdout: {:#?}",
            front.lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The metric names a document declares, with their units; and checks the
/// namespace, the one `Service` dimension and the request id on the way.
fn declared(doc: &Value, service: &str) -> Vec<(String, String)> {
    let directive = &doc["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "OrganizationService", "{doc}");
    assert_eq!(
        directive["Dimensions"],
        serde_json::json!([["Service"]]),
        "{doc}"
    );
    assert_eq!(doc["Service"], service, "{doc}");
    assert!(
        doc["requestId"].as_str().is_some_and(|id| !id.is_empty()),
        "{doc}"
    );
    directive["Metrics"]
        .as_array()
        .expect("a Metrics list")
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().unwrap_or_default().to_owned(),
                m["Unit"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_create_a_failed_login_and_an_outbox_flush_write_their_metrics_in_embedded_metric_format() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL must name the local AWS endpoint; `make test` starts moto");
    let service = unique("metrics");
    let front = start(
        &[
            ("EVENT_BUS_NAME", "default".to_owned()),
            ("LOCAL_AWS_ENDPOINT_URL", endpoint),
            ("SERVICE_NAME", service.clone()),
            ("PASSWORD_MIN_SCORE", "0".to_owned()),
        ],
        &[
            "EVENT_BUS_NAME",
            "LOCAL_AWS_ENDPOINT_URL",
            "SERVICE_NAME",
            "PASSWORD_MIN_SCORE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        ],
    );
    let name = unique("m").replace('_', "-");
    let email = format!("{name}@example.com");

    let (status, body) = send(
        &front.base,
        "POST",
        "/org/create",
        serde_json::json!({
            "organization_name": name, "email": email, "password": "correct horse battery"
        })
        .to_string()
        .as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
    let created = document_with(&front, "OrganizationsCreated");
    let names = declared(&created, &service);
    for metric in ["OrganizationsCreated", "OutboxPublished", "ColdStart"] {
        assert!(
            names.contains(&(metric.to_owned(), "Count".to_owned())),
            "{metric} in {created}"
        );
        assert_eq!(created[metric], 1, "{metric} in {created}");
    }

    let (status, body) = send(
        &front.base,
        "POST",
        "/admin/login",
        serde_json::json!({ "email": email, "password": "not the password" })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 401, "{body}");
    let failed = document_with(&front, "LoginFailed");
    let names = declared(&failed, &service);
    assert!(names.contains(&("LoginFailed".to_owned(), "Count".to_owned())));
    assert_eq!(failed["LoginFailed"], 1, "{failed}");
    assert!(failed.get("LoginSucceeded").is_none(), "{failed}");

    // The schedule's event, through Lambda's Invoke, as the rule sends it.
    let event = std::fs::read(workspace_root().join("events/provision-schedule.json")).unwrap();
    let (status, body) = send(
        &front.base,
        "POST",
        "/2015-03-31/functions/create/invocations",
        &event,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "flushed", "{body}");
    let flushed = document_with(&front, "OutboxPending");
    let names = declared(&flushed, &service);
    assert!(names.contains(&("OutboxPending".to_owned(), "Count".to_owned())));
    assert!(names.contains(&("OutboxOldestPendingAge".to_owned(), "Seconds".to_owned())));
    // The create's event went out with its request: nothing is left.
    assert_eq!(
        flushed["OutboxPending"],
        serde_json::json!([0.0]),
        "{flushed}"
    );
    assert_eq!(
        flushed["OutboxOldestPendingAge"],
        serde_json::json!([0.0]),
        "{flushed}"
    );
    // A warm environment's invocation is no cold start.
    assert!(flushed.get("ColdStart").is_none(), "{flushed}");
}

#[test]
fn lambda_s_invoke_answers_a_function_error_as_lambda_does() {
    let front = start(&[], &[]);

    let (status, body) = send(
        &front.base,
        "POST",
        "/2015-03-31/functions/create/invocations",
        b"{\"neither\": \"http nor sqs nor a schedule\"}",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["errorMessage"].is_string(), "{body}");

    let (status, _) = send(
        &front.base,
        "POST",
        "/2015-03-31/functions/no-such-function/invocations",
        b"{}",
    );
    assert_eq!(status, 404);
}

/// A TCP relay in front of the MongoDB server that keeps every byte the
/// clients send, so a test can see which commands reached the server.
struct Relay {
    uri: String,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    /// A relay to the server of `MONGODB_URI`, and the URI through it; none
    /// when that URI names anything but one plain host (a replica set's or
    /// an SRV URI's driver would go around the relay).
    fn start() -> Option<Self> {
        let uri = std::env::var("MONGODB_URI").ok()?;
        let rest = uri.strip_prefix("mongodb://")?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (host, tail) = rest.split_at(end);
        let lower = tail.to_ascii_lowercase();
        if host.contains([',', '@']) || lower.contains("tls=true") || lower.contains("ssl=true") {
            return None;
        }
        let tail = if lower.contains("directconnection=true") {
            tail.to_owned()
        } else if tail.contains('?') {
            format!("{tail}&directConnection=true")
        } else {
            format!(
                "{}?directConnection=true",
                if tail.is_empty() { "/" } else { tail }
            )
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (server, kept) = (host.to_owned(), sent.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { break };
                let Ok(mut upstream) = std::net::TcpStream::connect(&server) else {
                    continue;
                };
                let (Ok(mut back), Ok(mut down)) = (upstream.try_clone(), client.try_clone())
                else {
                    continue;
                };
                std::thread::spawn(move || std::io::copy(&mut back, &mut down));
                let kept = kept.clone();
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = client.read(&mut buf) {
                        kept.lock().unwrap().extend_from_slice(&buf[..n]);
                        if upstream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Some(Self {
            uri: format!("mongodb://127.0.0.1:{port}{tail}"),
            sent,
        })
    }

    /// How many `ping` commands went through (the command's name leads its
    /// OP_MSG body: `{ping: 1}` as an int32 or a double).
    fn pings(&self) -> usize {
        let sent = self.sent.lock().unwrap();
        [&b"\x10ping\x00"[..], &b"\x01ping\x00"[..]]
            .iter()
            .map(|needle| sent.windows(needle.len()).filter(|w| w == needle).count())
            .sum()
    }
}

#[test]
fn an_environment_started_for_a_request_sends_nothing_ahead_of_it_and_a_provisioned_one_opens_its_connection(
) {
    let login =
        serde_json::json!({ "email": "nobody@example.com", "password": "not the password" })
            .to_string();
    let mut pings = Vec::new();
    for init in ["on-demand", "provisioned-concurrency"] {
        let Some(relay) = Relay::start() else {
            eprintln!("MONGODB_URI names no single plain host to relay; nothing to check");
            return;
        };
        let front = start(
            &[
                ("MONGODB_URI", relay.uri.clone()),
                ("AWS_LAMBDA_INITIALIZATION_TYPE", init.to_owned()),
            ],
            &["AWS_LAMBDA_INITIALIZATION_TYPE"],
        );
        // The login reads the store at once; with its URI given directly the
        // warm-up has the store before the invocation is handed over.
        let (status, body) = send(&front.base, "POST", "/admin/login", login.as_bytes());
        assert_eq!(status, 401, "{init}: {body}");
        pings.push((init, relay.pings()));
    }
    assert_eq!(
        pings,
        [("on-demand", 0), ("provisioned-concurrency", 1)],
        "an on-demand environment's request opens the connection with its own command; a \
         provisioned one's warm-up opens it with a ping"
    );
}
