//! Execution environments: a function's binary running under a Lambda
//! Runtime API of its own (the `2018-06-01` interface `lambda_runtime`
//! polls), and the pool of them behind each function.
//!
//! As on Lambda, an environment serves one invocation at a time; a request
//! that finds every environment of its function busy gets a new one, up to a
//! limit, and waits beyond it. An environment whose process has died (a crash,
//! an abort, a kill) is discarded: the invocation in flight is answered as a
//! failed one and the next gets a freshly started process. One that overruns
//! the timeout is killed and discarded the same way.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, Semaphore};

const PREFIX: &str = "/2018-06-01/runtime";

/// How an invocation ended.
#[derive(Debug)]
pub enum Outcome {
    /// The function's response payload.
    Response(Bytes),
    /// The runtime reported an error (of the invocation or of init).
    Error(Bytes),
    /// The process exited before answering.
    Died(String),
    /// No answer within the timeout; the process was killed.
    TimedOut,
}

/// What every environment is started with.
pub struct Settings {
    pub bin_dir: PathBuf,
    /// Variables passed to the functions, besides Lambda's own.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub max_environments: usize,
}

/// The process ids of every live function process, so that stopping the
/// front stops them all, wherever their environments are.
#[derive(Clone, Default)]
pub struct Processes(Arc<Mutex<Vec<u32>>>);

impl Processes {
    fn add(&self, pid: u32) {
        if let Ok(mut pids) = self.0.lock() {
            pids.push(pid);
        }
    }

    fn remove(&self, pid: u32) {
        if let Ok(mut pids) = self.0.lock() {
            pids.retain(|p| *p != pid);
        }
    }

    /// SIGKILLs every process still running.
    pub fn kill_all(&self) {
        if let Ok(pids) = self.0.lock() {
            for pid in pids.iter() {
                if let Ok(pid) = libc::pid_t::try_from(*pid) {
                    // SAFETY: kill(2) with a pid this process spawned and
                    // has not reaped; no memory is touched.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

/// The environments of one function.
pub struct Pool {
    function: String,
    settings: Arc<Settings>,
    processes: Processes,
    idle: Mutex<Vec<Environment>>,
    slots: Semaphore,
}

impl Pool {
    pub fn new(function: &str, settings: Arc<Settings>, processes: Processes) -> Self {
        let slots = Semaphore::new(settings.max_environments.max(1));
        Self {
            function: function.to_owned(),
            settings,
            processes,
            idle: Mutex::new(Vec::new()),
            slots,
        }
    }

    /// Runs one invocation on an idle environment, or a new one.
    pub async fn invoke(&self, request_id: &str, event: Bytes) -> Outcome {
        let Ok(_slot) = self.slots.acquire().await else {
            return Outcome::Died("the front is stopping".into());
        };
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut env = match reused {
            Some(env) => env,
            None => match Environment::start(&self.function, &self.settings, &self.processes).await
            {
                Ok(env) => env,
                Err(e) => return Outcome::Died(format!("cannot start {}: {e}", self.function)),
            },
        };
        let outcome = env.invoke(request_id, event, self.settings.timeout).await;
        match outcome {
            Outcome::Response(_) | Outcome::Error(_) if env.alive() => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(env);
                }
            }
            _ => env.discard(&self.processes).await,
        }
        outcome
    }
}

/// One running function process and its Runtime API.
struct Environment {
    child: Child,
    pid: u32,
    events: mpsc::UnboundedSender<(String, Bytes)>,
    pending: Pending,
    server: tokio::task::JoinHandle<()>,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>;

/// What the Runtime API's handlers share.
struct Api {
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Bytes)>>,
    pending: Pending,
    function_arn: String,
    timeout: Duration,
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

impl Environment {
    async fn start(
        function: &str,
        settings: &Settings,
        processes: &Processes,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (events, events_rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        let api = Arc::new(Api {
            events: tokio::sync::Mutex::new(events_rx),
            pending: pending.clone(),
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function}"),
            timeout: settings.timeout,
        });
        let server = tokio::spawn(serve_runtime_api(listener, api));

        let instance = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let mut cmd = Command::new(settings.bin_dir.join(function));
        // Built from scratch, as Lambda does: nothing of the front's own
        // environment reaches the function unless it is passed on by name.
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("TZ", ":UTC")
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("local/[$LATEST]{instance:032x}"),
            )
            // As Lambda says of an environment it starts for a waiting invocation.
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("_HANDLER", "bootstrap")
            .envs(settings.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                server.abort();
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or_default();
        processes.add(pid);
        eprintln!("local-api: started {function} (pid {pid})");
        Ok(Self {
            child,
            pid,
            events,
            pending,
            server,
        })
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    async fn invoke(&mut self, request_id: &str, event: Bytes, timeout: Duration) -> Outcome {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(request_id.to_owned(), tx);
        }
        if self.events.send((request_id.to_owned(), event)).is_err() {
            return Outcome::Died("the runtime API stopped".into());
        }
        tokio::select! {
            answer = rx => answer.unwrap_or_else(|_| Outcome::Died("the runtime API stopped".into())),
            status = self.child.wait() => Outcome::Died(match status {
                Ok(status) => format!("the process exited ({status})"),
                Err(e) => format!("the process could not be waited for: {e}"),
            }),
            () = tokio::time::sleep(timeout) => Outcome::TimedOut,
        }
    }

    async fn discard(mut self, processes: &Processes) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        processes.remove(self.pid);
        self.server.abort();
    }
}

async fn serve_runtime_api(listener: TcpListener, api: Arc<Api>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(runtime_api(&api, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn runtime_api(api: &Api, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let Some(path) = path.strip_prefix(PREFIX) else {
        return plain(StatusCode::NOT_FOUND, "");
    };
    match (req.method(), path) {
        (&Method::GET, "/invocation/next") => {
            // Waits for the next event: the process is idle until then.
            let Some((request_id, event)) = api.events.lock().await.recv().await else {
                return plain(StatusCode::GONE, "");
            };
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_add(api.timeout)
                .as_millis();
            let mut resp = Response::new(Full::new(event));
            let headers = resp.headers_mut();
            let mut set = |name: &'static str, value: String| {
                if let Ok(v) = value.parse() {
                    headers.insert(name, v);
                }
            };
            set("content-type", "application/json".into());
            set("lambda-runtime-aws-request-id", request_id);
            set("lambda-runtime-deadline-ms", deadline.to_string());
            set(
                "lambda-runtime-invoked-function-arn",
                api.function_arn.clone(),
            );
            set(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
            );
            resp
        }
        (&Method::POST, "/init/error") => {
            let body = body_of(req).await;
            // Init failed: every invocation waiting on this process fails.
            if let Ok(mut pending) = api.pending.lock() {
                for (_, tx) in pending.drain() {
                    let _ = tx.send(Outcome::Error(body.clone()));
                }
            }
            plain(StatusCode::ACCEPTED, "{}")
        }
        (&Method::POST, p) if p.starts_with("/invocation/") => {
            let rest = &p["/invocation/".len()..];
            let (id, what) = rest.split_once('/').unwrap_or((rest, ""));
            let id = id.to_owned();
            let what = what.to_owned();
            let body = body_of(req).await;
            let waiting = api.pending.lock().ok().and_then(|mut p| p.remove(&id));
            let Some(tx) = waiting else {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "{\"errorType\":\"InvalidRequestID\"}",
                );
            };
            let _ = tx.send(if what == "response" {
                Outcome::Response(body)
            } else {
                Outcome::Error(body)
            });
            plain(StatusCode::ACCEPTED, "{\"status\":\"OK\"}")
        }
        _ => plain(StatusCode::NOT_FOUND, ""),
    }
}

async fn body_of(req: Request<Incoming>) -> Bytes {
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}
