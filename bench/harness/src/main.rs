//! `make bench`'s measuring half: runs the release binaries of the functions
//! under a local Lambda Runtime API and writes what it measured as JSON (the
//! report, ratios and budgets are `bench/report.py`'s).
//!
//! - `runtime`: the Runtime API and a function process under it.
//! - `proxy`: timestamping proxies in front of MongoDB and Secrets Manager,
//!   which break a cold start into its round trips.
//! - `breakdown`: one cold start's parts from those timestamps.
//! - `events`: the fixtures of `events/` made into real requests.
//! - `moto`: the benchmark's secrets, created in the local endpoint.
//! - `mongo`: filling tenants, and the `$out` rename it is compared with.
//! - `pages`: the listing and the audit trail, paged, at scale.
//!
//! Phases: `cold` (each function exec'd fresh per run, baseline `hello` in
//! the same rounds), `rss` (1,000 warm invocations per function), `rename`
//! (rename against tenant size), `pages` (the listing at 10,000
//! organizations, an audit trail of 100,000 entries). Usage: see [`USAGE`].

mod breakdown;
mod events;
mod http1;
mod mongo;
mod moto;
mod pages;
mod proxy;
mod runtime;

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::events::Events;
use crate::proxy::{Protocol, Proxy};
use crate::runtime::{ms, Function, Memory};

const USAGE: &str = "usage: harness drop-database URI DB
       harness --bin-dir DIR --events DIR --out FILE --log FILE \
[--mongodb-uri URI] [--aws-endpoint URL] [--runs N] [--warm N] [--sizes 1,10000,100000] \
[--phases cold,rss,rename,pages] [--db NAME]
MONGODB_URI and AWS_ENDPOINT_URL are read from the environment when not given.";

const TIMEOUT: Duration = Duration::from_secs(120);

struct Options {
    bin_dir: PathBuf,
    events: PathBuf,
    out: PathBuf,
    log: PathBuf,
    mongodb_uri: String,
    aws_endpoint: String,
    runs: usize,
    warm: usize,
    sizes: Vec<u64>,
    phases: Vec<String>,
    db: String,
}

fn options() -> Result<Options, String> {
    let mut args = pico_args::Arguments::from_env();
    let usage = |e: pico_args::Error| format!("{e}\n{USAGE}");
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let list = |s: &str| -> Result<Vec<String>, String> {
        Ok(s.split(',').map(|v| v.trim().to_owned()).collect())
    };
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let opts = Options {
        bin_dir: args.value_from_str("--bin-dir").map_err(usage)?,
        events: args.value_from_str("--events").map_err(usage)?,
        out: args.value_from_str("--out").map_err(usage)?,
        log: args.value_from_str("--log").map_err(usage)?,
        mongodb_uri: args
            .opt_value_from_str("--mongodb-uri")
            .map_err(usage)?
            .or_else(|| env("MONGODB_URI"))
            .ok_or("MONGODB_URI is not set")?,
        aws_endpoint: args
            .opt_value_from_str("--aws-endpoint")
            .map_err(usage)?
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .ok_or("AWS_ENDPOINT_URL is not set (the local Secrets Manager)")?,
        runs: args
            .opt_value_from_str("--runs")
            .map_err(usage)?
            .unwrap_or(20),
        warm: args
            .opt_value_from_str("--warm")
            .map_err(usage)?
            .unwrap_or(1000),
        sizes: args
            .opt_value_from_fn("--sizes", |s: &str| {
                s.split(',')
                    .map(|v| v.trim().parse().map_err(|_| format!("--sizes {v}")))
                    .collect::<Result<Vec<u64>, String>>()
            })
            .map_err(usage)?
            .unwrap_or_else(|| vec![1, 10_000, 100_000]),
        phases: args
            .opt_value_from_fn("--phases", list)
            .map_err(usage)?
            .unwrap_or_else(|| {
                ["cold", "rss", "rename", "pages"]
                    .map(str::to_owned)
                    .to_vec()
            }),
        db: args
            .opt_value_from_str("--db")
            .map_err(usage)?
            .unwrap_or_else(|| format!("bench_{stamp}")),
    };
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!("unexpected arguments {rest:?}\n{USAGE}"));
    }
    Ok(opts)
}

/// The MongoDB URI the functions get: the same server through the proxy,
/// when the URI names one plain host (a replica set or SRV URI would make the
/// driver go around it; then the MongoDB part of the breakdown is absent).
fn proxied_uri(uri: &str, proxy: &str) -> Option<String> {
    let rest = uri.strip_prefix("mongodb://")?;
    let lower = rest.to_ascii_lowercase();
    if lower.contains("tls=true") || lower.contains("ssl=true") {
        return None;
    }
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (creds, hosts) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    if hosts.contains(',') {
        return None;
    }
    let mut tail = tail.to_owned();
    if !lower.contains("directconnection=") {
        if tail.is_empty() {
            tail.push('/');
        }
        tail.push(if tail.contains('?') { '&' } else { '?' });
        tail.push_str("directConnection=true");
    }
    Some(format!("mongodb://{creds}{proxy}{tail}"))
}

fn say(msg: impl AsRef<str>) {
    eprintln!("--> {}", msg.as_ref());
}

struct Bench {
    opts: Options,
    events: Events,
    log: File,
    env: Vec<(String, String)>,
    mongo_proxy: Option<Proxy>,
    moto_proxy: Proxy,
    mongo: mongo::Mongo,
}

impl Bench {
    fn bin(&self, name: &str) -> String {
        self.opts.bin_dir.join(name).display().to_string()
    }

    fn spawn(&self, name: &str, extra: &[(&str, &str)]) -> Result<Function, String> {
        let mut env = self.env.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Function::spawn(name, &self.bin(name), &env, &self.log).map_err(|e| format!("{name}: {e}"))
    }

    /// Forgets the round trips the proxies have seen, so that the next
    /// measured invocation's are the only ones.
    fn clear_proxies(&self) {
        if let Some(p) = &self.mongo_proxy {
            p.clear();
        }
        self.moto_proxy.clear();
    }

    /// A process that makes organizations cheaply (bcrypt cost 4) for the
    /// phases that need many.
    fn seeder(&self) -> Result<Function, String> {
        self.spawn("create", &[("BCRYPT_COST", "4")])
    }
}

/// One bcrypt verify at the service's default cost, timed in this process
/// (the crate and release profile the functions use) right beside the run it
/// is compared with. The machine's speed drifts over a bench run by several
/// per cent, so a cold start or warm login is judged against a verify made
/// under the same conditions, not against a table measured minutes earlier.
struct BcryptReference {
    hash: String,
}

impl BcryptReference {
    const PASSWORD: &'static str = "correct-horse-battery";

    fn new() -> Result<Self, String> {
        let hash = bcrypt::hash(Self::PASSWORD, shared::config::DEFAULT_BCRYPT_COST)
            .map_err(|e| format!("bcrypt reference: {e}"))?;
        Ok(Self { hash })
    }

    fn verify_ms(&self) -> f64 {
        let started = Instant::now();
        let matched = bcrypt::verify(Self::PASSWORD, &self.hash).unwrap_or(false);
        let elapsed = ms(started.elapsed());
        debug_assert!(matched);
        elapsed
    }
}

fn call(f: &mut Function, event: Arc<Vec<u8>>, expect: u16) -> Result<(Value, f64), String> {
    let inv = f.invoke(event, TIMEOUT).map_err(|e| e.to_string())?;
    let answer = inv.json();
    let status = events::status(&answer);
    if status != expect {
        return Err(format!(
            "{}: expected {expect}, got {status}: {}",
            f.name,
            String::from_utf8_lossy(&inv.body)
        ));
    }
    Ok((answer, inv.millis()))
}

fn create_org(b: &Bench, seeder: &mut Function, org: &str) -> Result<(), String> {
    call(seeder, b.events.create(org), 201).map(|_| ())
}

fn token(b: &Bench, login: &mut Function, org: &str) -> Result<String, String> {
    let (answer, _) = call(login, b.events.login(org), 200)?;
    events::body(&answer)["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("login answered {answer}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = if args.get(1).map(String::as_str) == Some("drop-database") {
        match (args.get(2), args.get(3)) {
            (Some(uri), Some(db)) => mongo::Mongo::connect(uri).and_then(|m| m.drop_database(db)),
            _ => Err("usage: harness drop-database URI DB".to_owned()),
        }
    } else {
        run()
    };
    if let Err(e) = result {
        eprintln!("harness: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let opts = options()?;
    let events = Events::load(&opts.events)?;
    let log = File::options()
        .create(true)
        .append(true)
        .open(&opts.log)
        .map_err(|e| format!("{}: {e}", opts.log.display()))?;
    let mongo = mongo::Mongo::connect(&opts.mongodb_uri)?;

    let mongo_host = opts
        .mongodb_uri
        .strip_prefix("mongodb://")
        .map(|r| r.split(['/', '?']).next().unwrap_or(""))
        .map(|a| a.rsplit('@').next().unwrap_or("").to_owned())
        .unwrap_or_default();
    let mongo_proxy = if proxied_uri(&opts.mongodb_uri, "x").is_some() {
        Some(Proxy::start(mongo_host, Protocol::Mongo).map_err(|e| e.to_string())?)
    } else {
        say("MONGODB_URI is not a single plain host: MongoDB round trips are not broken down");
        None
    };
    let function_uri = match &mongo_proxy {
        Some(p) => proxied_uri(&opts.mongodb_uri, &p.addr.to_string()).unwrap_or_default(),
        None => opts.mongodb_uri.clone(),
    };
    let moto_addr = opts
        .aws_endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let moto_proxy = Proxy::start(moto_addr, Protocol::Http).map_err(|e| e.to_string())?;

    let jwt_key: String = (0..48)
        .map(|i| {
            let n = (SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos() as usize
                + i * 7919)
                % 62;
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[n] as char
        })
        .collect();
    let jwt_arn = moto::create_secret(
        &opts.aws_endpoint,
        &format!("{}/jwt-signing-key", opts.db),
        &jwt_key,
    )?;
    let uri_arn = moto::create_secret(
        &opts.aws_endpoint,
        &format!("{}/mongodb-uri", opts.db),
        &function_uri,
    )?;
    let bus = format!("{}-events", opts.db);
    moto::create_event_bus(&opts.aws_endpoint, &bus)?;
    say(format!(
        "in moto: secrets {jwt_arn}, {uri_arn}, event bus {bus}; database {}",
        opts.db
    ));

    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", format!("http://{}", moto_proxy.addr)),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("MONGODB_URI_SECRET_ARN", uri_arn),
        ("JWT_SECRET_ARN", jwt_arn),
        ("MASTER_DB", opts.db.clone()),
        // As template.yaml: create, rename and delete publish lifecycle
        // events; the others do not read it.
        ("EVENT_BUS_NAME", bus),
        // Every benchmark request comes from one address and the runs make
        // thousands of organizations: the abuse limits would refuse them.
        ("CREATE_LIMIT_PER_SOURCE_PER_HOUR", "0".into()),
        ("MAX_ORGANIZATIONS", "0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    let b = Bench {
        opts,
        events,
        log,
        env,
        mongo_proxy,
        moto_proxy,
        mongo,
    };
    let mut out = json!({
        "config": {
            "runs": b.opts.runs,
            "warm": b.opts.warm,
            "sizes": b.opts.sizes,
            "db": b.opts.db,
            "mongo_broken_down": b.mongo_proxy.is_some(),
        }
    });
    let started = Instant::now();
    let result = (|| -> Result<(), String> {
        if b.opts.phases.iter().any(|p| p == "cold") {
            out["cold"] = cold(&b)?;
        }
        if b.opts.phases.iter().any(|p| p == "rss") {
            out["rss"] = rss(&b)?;
        }
        if b.opts.phases.iter().any(|p| p == "rename") {
            out["rename"] = rename_scaling(&b)?;
        }
        if b.opts.phases.iter().any(|p| p == "pages") {
            out["pages"] = pages::pages(&b)?;
        }
        Ok(())
    })();
    out["harness_seconds"] = json!(started.elapsed().as_secs_f64());
    if let Err(e) = b.mongo.drop_database(&b.opts.db) {
        say(format!("could not drop database {}: {e}", b.opts.db));
    }
    std::fs::write(
        &b.opts.out,
        serde_json::to_vec_pretty(&out).expect("results serialize"),
    )
    .map_err(|e| format!("{}: {e}", b.opts.out.display()))?;
    result
}

// ---------------------------------------------------------------- cold

/// One cold start: exec, init, one real event, first response.
fn cold_once(b: &Bench, name: &str, event: Arc<Vec<u8>>, expect: u16) -> Result<Value, String> {
    b.clear_proxies();
    let mut f = b.spawn(name, &[])?;
    let inv = f.invoke(event, TIMEOUT).map_err(|e| e.to_string())?;
    let memory = f.memory().unwrap_or_default();
    let first_next = f.first_next.unwrap_or(inv.delivered);
    let spawned = f.spawned;
    // Let replies already on the wire land in the log, then stop.
    std::thread::sleep(Duration::from_millis(5));
    let mongo = b
        .mongo_proxy
        .as_ref()
        .map(|p| p.exchanges())
        .unwrap_or_default();
    let secrets = b.moto_proxy.exchanges();
    f.stop();
    let answer = inv.json();
    let status = events::status(&answer);
    if status != expect {
        return Err(format!(
            "cold {name}: expected {expect}, got {status}: {}",
            String::from_utf8_lossy(&inv.body)
        ));
    }
    let mut record = breakdown::cold_start(
        &breakdown::Timeline {
            spawned,
            first_next,
            delivered: inv.delivered,
            responded: inv.responded,
        },
        &mongo,
        &secrets,
    );
    record["fn"] = json!(name);
    record["status"] = json!(status);
    record["hwm_kib"] = json!(memory.hwm_kib);
    Ok(record)
}

fn cold(b: &Bench) -> Result<Value, String> {
    let runs = b.opts.runs;
    say(format!(
        "cold start: {runs} runs of each function and of the baseline, interleaved"
    ));
    let mut seeder = b.seeder()?;
    let mut login = b.spawn("login", &[])?;
    create_org(b, &mut seeder, "cold-ren")?;
    let ren_token = token(b, &mut login, "cold-ren")?;
    let mut del_tokens = Vec::new();
    for i in 0..=runs {
        let org = format!("cold-del-{i}");
        create_org(b, &mut seeder, &org)?;
        del_tokens.push(token(b, &mut login, &org)?);
    }
    seeder.stop();
    login.stop();

    let reference = BcryptReference::new()?;
    let mut records = Vec::new();
    // Round 0 warms the page cache and is not kept. Within a round the
    // baseline runs beside every function, and a reference bcrypt verify
    // beside every function whose request runs one, so drift hits them alike.
    for (round, del_token) in del_tokens.iter().enumerate() {
        let tag = if round == 0 {
            "w".to_owned()
        } else {
            round.to_string()
        };
        let org = "cold-new-w";
        // (function, event, expected status, runs one bcrypt at the default cost)
        let plan: Vec<(&str, Arc<Vec<u8>>, u16, bool)> = vec![
            ("hello", b.events.get(org), 200, false),
            (
                "create",
                b.events.create(&format!("cold-new-{tag}")),
                201,
                true,
            ),
            ("get", b.events.get(org), 200, false),
            ("login", b.events.login(org), 200, true),
            (
                "rename",
                b.events.rename(&ren_token, &format!("cold-ren-{tag}")),
                200,
                false,
            ),
            (
                "delete",
                b.events.delete(del_token, &format!("cold-del-{round}")),
                200,
                false,
            ),
            // The organization the delete has just deleted.
            (
                "restore",
                b.events
                    .restore(&format!("cold-del-{round}"), &format!("cold-del-{round}")),
                200,
                true,
            ),
            ("authorizer", b.events.authorizer(&ren_token), 200, false),
        ];
        for (name, event, expect, bcrypt) in plan {
            let reference_ms = bcrypt.then(|| reference.verify_ms());
            let mut r = cold_once(b, name, event, expect)?;
            if let Some(reference_ms) = reference_ms {
                r["bcrypt_ref_ms"] = json!(reference_ms);
            }
            if round > 0 {
                r["run"] = json!(round);
                records.push(r);
            }
        }
        if round > 0 && round % 5 == 0 {
            say(format!("  cold round {round}/{runs}"));
        }
    }

    // Init alone, with and without the system certificate store (rustls
    // native roots, which honour SSL_CERT_FILE / SSL_CERT_DIR): how much of
    // init is reading and parsing certificates. The endpoints here are plain
    // TCP, so an empty store changes nothing else.
    let empty = std::env::temp_dir().join(format!("bench-empty-certs-{}", std::process::id()));
    std::fs::create_dir_all(empty.join("dir")).map_err(|e| e.to_string())?;
    std::fs::write(empty.join("none.pem"), b"").map_err(|e| e.to_string())?;
    let (no_file, no_dir) = (
        empty.join("none.pem").display().to_string(),
        empty.join("dir").display().to_string(),
    );
    let mut inits = Vec::new();
    for round in 0..=runs {
        for name in [
            "hello",
            "login",
            "create",
            "get",
            "rename",
            "delete",
            "restore",
            "authorizer",
        ] {
            for certs in [true, false] {
                let extra: Vec<(&str, &str)> = if certs {
                    vec![]
                } else {
                    vec![("SSL_CERT_FILE", &no_file), ("SSL_CERT_DIR", &no_dir)]
                };
                let mut f = b.spawn(name, &extra)?;
                let ready = f.wait_ready(TIMEOUT).map_err(|e| e.to_string())?;
                let init_ms = ms(ready - f.spawned);
                f.stop();
                if round > 0 {
                    inits.push(json!({ "fn": name, "cert_store": certs, "init_ms": init_ms }));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&empty);

    // What the MongoDB proxy itself adds: a new client's connect + ping,
    // straight to the server and through the proxy, alternately.
    let mut proxy_check = json!(null);
    if let Some(p) = &b.mongo_proxy {
        let via = proxied_uri(&b.opts.mongodb_uri, &p.addr.to_string()).unwrap_or_default();
        let (mut direct, mut proxied) = (Vec::new(), Vec::new());
        for _ in 0..runs.max(5) {
            direct.push(ms(b.mongo.fresh_ping(&b.opts.mongodb_uri)?));
            proxied.push(ms(b.mongo.fresh_ping(&via)?));
        }
        proxy_check = json!({ "direct_ms": direct, "proxied_ms": proxied });
    }

    // Warm login against an admin whose hash has the default cost (made by
    // the cold creates above): what a login costs besides its bcrypt verify,
    // each login paired with a reference verify just before it.
    let mut login = b.spawn("login", &[])?;
    call(&mut login, b.events.login("cold-new-w"), 200)?;
    let (mut login_ms, mut login_ref_ms) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        login_ref_ms.push(reference.verify_ms());
        login_ms.push(call(&mut login, b.events.login("cold-new-w"), 200)?.1);
    }
    login.stop();
    Ok(json!({
        "runs": records,
        "login_warm_ms": login_ms,
        "login_warm_ref_ms": login_ref_ms,
        "init_only": inits,
        "proxy_check": proxy_check,
    }))
}

// ----------------------------------------------------------------- rss

/// `n` warm invocations of one process; memory after every hundred.
fn warm_series(
    f: &mut Function,
    n: usize,
    mut event: impl FnMut(usize) -> Arc<Vec<u8>>,
    expect: u16,
    mut each: impl FnMut(usize, &Value),
) -> Result<Value, String> {
    let mut samples = Vec::new();
    let mut failures = 0;
    let mut first_failure = Value::Null;
    let mut total_ms = 0.0;
    for i in 0..n {
        let inv = f.invoke(event(i), TIMEOUT).map_err(|e| e.to_string())?;
        total_ms += inv.millis();
        let answer = inv.json();
        if events::status(&answer) != expect {
            failures += 1;
            if first_failure.is_null() {
                first_failure = answer.clone();
            }
        }
        each(i, &answer);
        if (i + 1) % 100 == 0 || i + 1 == n {
            let m = f.memory().map_err(|e| e.to_string())?;
            samples.push(json!({ "after": i + 1, "rss_kib": m.rss_kib, "hwm_kib": m.hwm_kib }));
        }
    }
    Ok(json!({
        "fn": f.name,
        "invocations": n,
        "failures": failures,
        "first_failure": first_failure,
        "mean_invoke_ms": total_ms / n.max(1) as f64,
        "samples": samples,
    }))
}

fn rss(b: &Bench) -> Result<Value, String> {
    let n = b.opts.warm;
    say(format!(
        "memory: {n} warm invocations per function (organizations made at bcrypt cost 4)"
    ));
    let names: Vec<String> = (0..n).map(|i| format!("rss-{i}")).collect();
    let mut results = Vec::new();

    let mut f = b.spawn("create", &[("BCRYPT_COST", "4")])?;
    results.push(warm_series(
        &mut f,
        n,
        |i| b.events.create(&names[i]),
        201,
        |_, _| {},
    )?);
    f.stop();
    say("  create done");

    // The same cost as the hashes: a login at another cost rehashes.
    let mut tokens = vec![String::new(); n];
    let mut f = b.spawn("login", &[("BCRYPT_COST", "4")])?;
    results.push(warm_series(
        &mut f,
        n,
        |i| b.events.login(&names[i]),
        200,
        |i, answer| {
            tokens[i] = events::body(answer)["access_token"]
                .as_str()
                .unwrap_or("")
                .to_owned();
        },
    )?);
    f.stop();
    say("  login done");

    let mut f = b.spawn("get", &[])?;
    results.push(warm_series(
        &mut f,
        n,
        |i| b.events.get(&names[i]),
        200,
        |_, _| {},
    )?);
    f.stop();

    let mut f = b.spawn("authorizer", &[])?;
    results.push(warm_series(
        &mut f,
        n,
        |i| b.events.authorizer(&tokens[i]),
        200,
        |_, _| {},
    )?);
    f.stop();
    say("  get, authorizer done");

    let mut f = b.spawn("rename", &[])?;
    results.push(warm_series(
        &mut f,
        n,
        |i| b.events.rename(&tokens[i], &format!("{}-r", names[i])),
        200,
        |_, _| {},
    )?);
    f.stop();

    let mut f = b.spawn("delete", &[])?;
    results.push(warm_series(
        &mut f,
        n,
        |i| b.events.delete(&tokens[i], &format!("{}-r", names[i])),
        200,
        |_, _| {},
    )?);
    f.stop();

    // Organizations made at cost 4, so restore at the hashes' cost.
    let mut f = b.spawn("restore", &[("BCRYPT_COST", "4")])?;
    results.push(warm_series(
        &mut f,
        n,
        |i| b.events.restore(&format!("{}-r", names[i]), &names[i]),
        200,
        |_, _| {},
    )?);
    f.stop();
    say("  rename, delete, restore done");

    let mut f = b.spawn("hello", &[])?;
    results.push(warm_series(
        &mut f,
        n,
        |_| b.events.get("x"),
        200,
        |_, _| {},
    )?);
    f.stop();
    Ok(Value::Array(results))
}

// -------------------------------------------------------------- rename

/// Polls a process's resident set until stopped; the highest value seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Ok(m) = Memory::of(pid) {
                    p.fetch_max(m.rss_kib, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Self { stop, peak, handle }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.handle.join();
        self.peak.load(Ordering::SeqCst)
    }
}

fn rename_scaling(b: &Bench) -> Result<Value, String> {
    say(format!(
        "rename against tenant size: {:?} documents",
        b.opts.sizes
    ));
    let db = &b.opts.db;
    let mut seeder = b.seeder()?;
    // At the seeder's cost: a login at another would rehash, and the
    // restore's one verify would then be a cost-12 bcrypt, not the move.
    let mut login = b.spawn("login", &[("BCRYPT_COST", "4")])?;
    let mut rename = b.spawn("rename", &[])?;
    let mut delete = b.spawn("delete", &[])?;
    let mut restore = b.spawn("restore", &[("BCRYPT_COST", "4")])?;
    // One small rename first, so the timed ones run on a warm process.
    create_org(b, &mut seeder, "scale-warmup")?;
    let t = token(b, &mut login, "scale-warmup")?;
    call(&mut rename, b.events.rename(&t, "scale-warmup-r"), 200)?;

    let mut records = Vec::new();
    for &size in &b.opts.sizes {
        let reps = if size <= 10_000 { 3 } else { 1 };
        for rep in 0..reps {
            let org = format!("scale-{size}-{rep}");
            create_org(b, &mut seeder, &org)?;
            let t = token(b, &mut login, &org)?;
            let seed = b.mongo.fill(db, &format!("org_{org}"), size)?;
            b.clear_proxies();
            let before = rename.memory().map_err(|e| e.to_string())?;
            let sampler = Sampler::start(rename.pid());
            let inv = rename
                .invoke(
                    b.events.rename(&t, &format!("{org}-r")),
                    Duration::from_secs(3600),
                )
                .map_err(|e| e.to_string())?;
            let peak_during = sampler.finish();
            let status = events::status(&inv.json());
            if status != 200 {
                return Err(format!(
                    "rename of {org}: {status}: {}",
                    String::from_utf8_lossy(&inv.body)
                ));
            }
            let after = rename.memory().map_err(|e| e.to_string())?;
            // The round trips of the timed rename, in order, with their times.
            let round_trips: Vec<Value> = b
                .mongo_proxy
                .iter()
                .flat_map(|p| p.exchanges())
                .chain(b.moto_proxy.exchanges())
                .filter(|e| e.start >= inv.delivered && e.start <= inv.responded)
                .map(|e| {
                    let end = e.end.unwrap_or(inv.responded);
                    json!([e.label, ms(e.start - inv.delivered), ms(end - e.start)])
                })
                .collect();
            // The same data deleted (soft) and restored: the restore moves
            // it back from its holding collection, the same server-side
            // renameCollection as the rename, with its index.
            call(&mut delete, b.events.delete(&t, &format!("{org}-r")), 200)?;
            let (_, restore_ms) = call(
                &mut restore,
                b.events.restore(&format!("{org}-r"), &org),
                200,
            )?;
            let restored = b.mongo.count(db, &format!("org_{org}-r"))?;
            if restored != size {
                return Err(format!(
                    "restore brought back {restored} of {size} documents"
                ));
            }
            let server =
                b.mongo
                    .rename_collection(db, &format!("org_{org}-r"), &format!("org_{org}-s"))?;
            let (copied, dropped) =
                b.mongo
                    .out_then_drop(db, &format!("org_{org}-s"), &format!("org_{org}-o"))?;
            let count = b.mongo.count(db, &format!("org_{org}-o"))?;
            if count != size {
                return Err(format!("$out copied {count} of {size} documents"));
            }
            b.mongo.drop_collection(db, &format!("org_{org}-o"))?;
            let record = json!({
                "size": size,
                "rep": rep,
                "seed_ms": ms(seed),
                "service_ms": inv.millis(),
                "restore_ms": restore_ms,
                "server_rename_ms": ms(server),
                "out_ms": ms(copied),
                "drop_ms": ms(dropped),
                "out_total_ms": ms(copied + dropped),
                "rss_before_kib": before.rss_kib,
                "rss_peak_during_kib": peak_during.max(after.rss_kib),
                "hwm_after_kib": after.hwm_kib,
                "round_trips": round_trips,
            });
            say(format!(
                "  {size} documents: service rename {:.1} ms, restore {:.1} ms, renameCollection {:.1} ms, $out+drop {:.1} ms",
                inv.millis(),
                restore_ms,
                ms(server),
                ms(copied + dropped)
            ));
            records.push(record);
        }
    }
    Ok(Value::Array(records))
}

#[cfg(test)]
mod tests {
    use super::proxied_uri;

    #[test]
    fn a_single_host_uri_is_pointed_at_the_proxy_directly() {
        assert_eq!(
            proxied_uri(
                "mongodb://127.0.0.1:27017/?directConnection=true",
                "127.0.0.1:9"
            )
            .as_deref(),
            Some("mongodb://127.0.0.1:9/?directConnection=true")
        );
        assert_eq!(
            proxied_uri("mongodb://u:p@db:27017/admin", "127.0.0.1:9").as_deref(),
            Some("mongodb://u:p@127.0.0.1:9/admin?directConnection=true")
        );
        assert_eq!(
            proxied_uri("mongodb://db:1", "127.0.0.1:9").as_deref(),
            Some("mongodb://127.0.0.1:9/?directConnection=true")
        );
    }

    #[test]
    fn replica_sets_srv_and_tls_are_left_alone() {
        assert!(proxied_uri("mongodb://a:1,b:2/?replicaSet=rs", "p:1").is_none());
        assert!(proxied_uri("mongodb+srv://c.example.net/", "p:1").is_none());
        assert!(proxied_uri("mongodb://a:1/?tls=true", "p:1").is_none());
    }
}
