//! `make run`'s front: serves the contract's routes on a loopback address,
//! each by its function's own binary running under a Lambda Runtime API, as
//! API Gateway and Lambda do in front of the deployed functions.
//!
//! - [`router`]: which function serves which method and path (Cargo.toml).
//! - [`event`]: an HTTP request as the gateway's payload 2.0 event, and the
//!   function's answer back as HTTP.
//! - [`environment`]: function processes under a Runtime API, pooled per
//!   function; a process that dies answers its invocation with a 502 and is
//!   replaced by a fresh one on the next.
//!
//! Lambda's own `Invoke` is served too, for the events no route carries (a
//! scheduled flush, an SQS batch).
//!
//! Only names are given on the command line: the values the functions get
//! (the database URI, the signing key) come from this process's environment,
//! so they never show in a process list. Development only; never deployed.

mod environment;
mod event;
mod router;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::environment::{Outcome, Pool, Processes, Settings};
use crate::router::Router;

const USAGE: &str = "usage: local-api --manifest Cargo.toml --bin-dir target/debug \
[--host 127.0.0.1] [--port 3000] [--pass NAME,NAME,...] [--timeout-secs 30] [--max-environments 4]
[--iam-caller ARN]

Serves the routes of the manifest's [workspace.metadata.lambda.watch.router]
table; each function is the binary of that name in --bin-dir. --pass names
the variables of this process's environment passed on to the functions.
--port 0 picks a free port; the first line on stdout names the address.
--iam-caller passes every request on as if the gateway had checked its SigV4
signature as this IAM principal's (requestContext.authorizer.iam), for tests
of the operators' route; without it no request carries an IAM identity, and
that route answers 403.

POST /2015-03-31/functions/NAME/invocations is Lambda's Invoke for any of
those functions: the body is the event, as it is (`aws lambda invoke
--endpoint-url http://127.0.0.1:3000 --function-name create --payload
fileb://events/provision-schedule.json out.json` runs the outbox flush).";

/// API Gateway's limit on a request's payload.
const MAX_BODY: usize = 10 * 1024 * 1024;

struct Options {
    manifest: PathBuf,
    bin_dir: PathBuf,
    host: IpAddr,
    port: u16,
    pass: Vec<String>,
    timeout: Duration,
    max_environments: usize,
    iam_caller: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut args = pico_args::Arguments::from_env();
    let usage = |e: pico_args::Error| format!("{e}\n{USAGE}");
    let opts = Options {
        manifest: args.value_from_str("--manifest").map_err(usage)?,
        bin_dir: args.value_from_str("--bin-dir").map_err(usage)?,
        host: args
            .opt_value_from_str("--host")
            .map_err(usage)?
            .unwrap_or(IpAddr::from([127, 0, 0, 1])),
        port: args
            .opt_value_from_str("--port")
            .map_err(usage)?
            .unwrap_or(3000),
        pass: args
            .opt_value_from_fn("--pass", |names: &str| -> Result<Vec<String>, String> {
                Ok(names
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect())
            })
            .map_err(usage)?
            .unwrap_or_default(),
        timeout: Duration::from_secs(
            args.opt_value_from_str("--timeout-secs")
                .map_err(usage)?
                .unwrap_or(30),
        ),
        max_environments: args
            .opt_value_from_str("--max-environments")
            .map_err(usage)?
            .unwrap_or(4),
        iam_caller: args.opt_value_from_str("--iam-caller").map_err(usage)?,
    };
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!("unexpected arguments {rest:?}\n{USAGE}"));
    }
    Ok(opts)
}

struct Front {
    router: Router,
    pools: BTreeMap<String, Pool>,
    iam_caller: Option<String>,
}

static REQUEST: AtomicU64 = AtomicU64::new(0);

impl Front {
    async fn handle(
        &self,
        req: Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> Response<Bytes> {
        let (parts, body) = req.into_parts();
        if let Some(function) = invoke_target(&parts.method, parts.uri.path()) {
            return match collect(body).await {
                Ok(event) => self.invoke(function, event).await,
                Err(answer) => answer,
            };
        }
        let Some(function) = self
            .router
            .function(parts.method.as_str(), parts.uri.path())
        else {
            return event::gateway_answer(StatusCode::NOT_FOUND, "Not Found");
        };
        let Some(pool) = self.pools.get(function) else {
            return event::gateway_answer(StatusCode::NOT_FOUND, "Not Found");
        };
        let body = match collect(body).await {
            Ok(body) => body,
            Err(answer) => return answer,
        };
        let request_id = next_request_id();
        let event = event::to_event(&event::Incoming {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body: &body,
            peer,
            request_id: &request_id,
            iam_caller: self.iam_caller.as_deref(),
        });
        match pool
            .invoke(&request_id, Bytes::from(event.to_string()))
            .await
        {
            Outcome::Response(output) => event::from_function(&output),
            Outcome::Error(detail) => {
                eprintln!(
                    "local-api: {function} {request_id}: error reported: {}",
                    String::from_utf8_lossy(&detail)
                );
                event::gateway_answer(StatusCode::BAD_GATEWAY, "Internal Server Error")
            }
            Outcome::Died(why) => {
                eprintln!("local-api: {function} {request_id}: {why}; the next request starts a new process");
                event::gateway_answer(StatusCode::BAD_GATEWAY, "Internal Server Error")
            }
            Outcome::TimedOut => {
                eprintln!("local-api: {function} {request_id}: timed out; process killed");
                event::gateway_answer(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out")
            }
        }
    }

    /// Lambda's `Invoke` (`aws lambda invoke --endpoint-url ...`): `event`
    /// as it is, to one of the front's functions, and its payload back; a
    /// function error is a 200 with `X-Amz-Function-Error`, as from Lambda.
    /// How a scheduled flush or an SQS batch is tried locally.
    async fn invoke(&self, function: &str, event: Bytes) -> Response<Bytes> {
        let Some(pool) = self.pools.get(function) else {
            return lambda_answer(
                StatusCode::NOT_FOUND,
                None,
                json!({ "Type": "User", "Message": format!("Function not found: {function}") }),
            );
        };
        match pool.invoke(&next_request_id(), event).await {
            Outcome::Response(payload) => {
                let mut resp = Response::new(payload);
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                resp
            }
            Outcome::Error(detail) => {
                let detail = serde_json::from_slice(&detail).unwrap_or_else(
                    |_| json!({ "errorMessage": String::from_utf8_lossy(&detail) }),
                );
                lambda_answer(StatusCode::OK, Some("Unhandled"), detail)
            }
            Outcome::Died(why) => lambda_answer(
                StatusCode::OK,
                Some("Unhandled"),
                json!({ "errorType": "Runtime.ExitError", "errorMessage": why }),
            ),
            Outcome::TimedOut => lambda_answer(
                StatusCode::OK,
                Some("Unhandled"),
                json!({ "errorMessage": "Task timed out" }),
            ),
        }
    }
}

/// The function a Lambda `Invoke` request names:
/// `POST /2015-03-31/functions/{name}/invocations`.
fn invoke_target<'a>(method: &hyper::Method, path: &'a str) -> Option<&'a str> {
    if method != hyper::Method::POST {
        return None;
    }
    path.strip_prefix("/2015-03-31/functions/")?
        .strip_suffix("/invocations")
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

fn lambda_answer(
    status: StatusCode,
    function_error: Option<&'static str>,
    body: Value,
) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(kind) = function_error {
        resp.headers_mut()
            .insert("x-amz-function-error", HeaderValue::from_static(kind));
    }
    resp
}

/// A request's body, up to the gateway's limit.
async fn collect(body: hyper::body::Incoming) -> Result<Bytes, Response<Bytes>> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(event::gateway_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request Entity Too Large",
            ))
        }
        Err(_) => Err(event::gateway_answer(
            StatusCode::BAD_REQUEST,
            "Bad Request",
        )),
    }
}

fn next_request_id() -> String {
    format!(
        "{:08x}-local-{:012x}",
        std::process::id(),
        REQUEST.fetch_add(1, Ordering::Relaxed)
    )
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("local-api: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let opts = options()?;
    let manifest = std::fs::read_to_string(&opts.manifest)
        .map_err(|e| format!("{}: {e}", opts.manifest.display()))?;
    let router = Router::parse(&manifest)?;
    for function in router.functions() {
        let binary = opts.bin_dir.join(&function);
        if !binary.is_file() {
            return Err(format!(
                "{}: no such binary; build the workspace first",
                binary.display()
            ));
        }
    }
    let env = opts
        .pass
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v)))
        .collect();
    let settings = Arc::new(Settings {
        bin_dir: opts.bin_dir.clone(),
        env,
        timeout: opts.timeout,
        max_environments: opts.max_environments,
    });
    let processes = Processes::default();
    let pools = router
        .functions()
        .into_iter()
        .map(|f| {
            let pool = Pool::new(&f, settings.clone(), processes.clone());
            (f, pool)
        })
        .collect();
    let front = Arc::new(Front {
        router,
        pools,
        iam_caller: opts.iam_caller.clone(),
    });

    let listener = TcpListener::bind((opts.host, opts.port))
        .await
        .map_err(|e| format!("{}:{}: {e}", opts.host, opts.port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let front = front.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let front = front.clone();
                        async move {
                            Ok::<_, Infallible>(front.handle(req, peer).await.map(Full::new))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    processes.kill_all();
    Ok(())
}
