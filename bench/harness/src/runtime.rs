//! A local Lambda Runtime API (the `2018-06-01` interface that
//! `lambda_runtime` polls) and a function process running under it.
//!
//! [`Function::spawn`] binds 127.0.0.1:0, execs the binary with
//! `AWS_LAMBDA_RUNTIME_API` pointing there and an environment built from
//! scratch (nothing of the harness's own leaks in), and records when the
//! process first asks for work: that `next` call is where Lambda's init phase
//! ends. [`Function::invoke`] hands one event to the waiting `next` and returns
//! the response with its timestamps.

use std::fs::File;
use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http1::{read_message, write_response};

const PREFIX: &str = "/2018-06-01/runtime";

struct Delivery {
    request_id: String,
    event: Arc<Vec<u8>>,
}

enum Msg {
    /// A `next` call is waiting; answer it through the sender.
    Next(Instant, Sender<Delivery>),
    Response {
        request_id: String,
        body: Vec<u8>,
        at: Instant,
    },
    Error {
        request_id: Option<String>,
        body: Vec<u8>,
    },
}

/// One invocation's outcome.
pub struct Invocation {
    pub body: Vec<u8>,
    /// When the event was handed to the function's `next` call.
    pub delivered: Instant,
    /// When its response arrived.
    pub responded: Instant,
}

impl Invocation {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn millis(&self) -> f64 {
        ms(self.responded - self.delivered)
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub struct Function {
    pub name: String,
    child: Child,
    pub spawned: Instant,
    pub first_next: Option<Instant>,
    rx: Receiver<Msg>,
    waiting: Option<Sender<Delivery>>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    seq: u64,
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

impl Function {
    /// Starts `binary` under a fresh Runtime API. `env` is the function's
    /// configuration; the Lambda platform variables are added here.
    pub fn spawn(
        name: &str,
        binary: &str,
        env: &[(String, String)],
        log: &File,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            thread::spawn(move || accept_loop(listener, tx, stop));
        }
        let instance = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("TZ", ":UTC")
            .env("LANG", "C.UTF-8")
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_size(name))
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("bench/[$LATEST]{instance:032x}"),
            )
            // As Lambda says of an environment it starts for a waiting invocation.
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("_HANDLER", "bootstrap")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?);
        let spawned = Instant::now();
        let child = cmd.spawn()?;
        Ok(Self {
            name: name.to_owned(),
            child,
            spawned,
            first_next: None,
            rx,
            waiting: None,
            stop,
            addr,
            seq: 0,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the function is polling for work (end of init).
    pub fn wait_ready(&mut self, timeout: Duration) -> io::Result<Instant> {
        if self.waiting.is_none() {
            let deadline = Instant::now() + timeout;
            loop {
                match self.recv(deadline)? {
                    Msg::Next(at, reply) => {
                        self.first_next.get_or_insert(at);
                        self.waiting = Some(reply);
                        break;
                    }
                    Msg::Error { body, .. } => return Err(failed(&self.name, "init", &body)),
                    Msg::Response { .. } => {}
                }
            }
        }
        Ok(self.first_next.unwrap_or_else(Instant::now))
    }

    /// Hands `event` to the function and waits for its response.
    pub fn invoke(&mut self, event: Arc<Vec<u8>>, timeout: Duration) -> io::Result<Invocation> {
        self.wait_ready(timeout)?;
        self.seq += 1;
        let request_id = format!("{:08x}-bench-{:012x}", std::process::id(), self.seq);
        let reply = self.waiting.take().expect("a waiting next call");
        let delivered = Instant::now();
        if reply
            .send(Delivery {
                request_id: request_id.clone(),
                event,
            })
            .is_err()
        {
            return Err(io::Error::other(format!(
                "{}: connection closed before the event was delivered",
                self.name
            )));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline)? {
                Msg::Next(at, reply) => {
                    // The next poll can arrive before we read the response
                    // message; keep it for the following invocation.
                    let _ = at;
                    self.waiting = Some(reply);
                }
                Msg::Response {
                    request_id: id,
                    body,
                    at,
                } if id == request_id => {
                    return Ok(Invocation {
                        body,
                        delivered,
                        responded: at,
                    })
                }
                Msg::Response { .. } => {}
                Msg::Error {
                    request_id: id,
                    body,
                } => {
                    if id.is_none() || id.as_deref() == Some(request_id.as_str()) {
                        return Err(failed(&self.name, "invocation", &body));
                    }
                }
            }
        }
    }

    fn recv(&mut self, deadline: Instant) -> io::Result<Msg> {
        loop {
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(msg) => return Ok(msg),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(status) = self.child.try_wait()? {
                        return Err(io::Error::other(format!(
                            "{} exited ({status}); see its log",
                            self.name
                        )));
                    }
                    if Instant::now() > deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("{}: no answer in time", self.name),
                        ));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("runtime API stopped"))
                }
            }
        }
    }

    /// Current and peak resident set of the process, in KiB.
    pub fn memory(&self) -> io::Result<Memory> {
        Memory::of(self.pid())
    }

    /// Kills the process (as the platform does when it recycles an
    /// environment) and stops the Runtime API.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.waiting = None;
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The memory sizes of template.yaml (only reported to the function).
fn memory_size(name: &str) -> &'static str {
    match name {
        "login" | "create" | "rename" | "restore" => "1024",
        "authorizer" => "128",
        _ => "256",
    }
}

fn failed(name: &str, phase: &str, body: &[u8]) -> io::Error {
    io::Error::other(format!(
        "{name}: {phase} error reported: {}",
        String::from_utf8_lossy(body)
    ))
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> io::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Self {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
        })
    }
}

fn accept_loop(listener: TcpListener, tx: Sender<Msg>, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let tx = tx.clone();
        thread::spawn(move || {
            let _ = serve_connection(stream, tx);
        });
    }
}

fn serve_connection(stream: TcpStream, tx: Sender<Msg>) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_message(&mut reader)? {
        let mut parts = req.start.split_whitespace();
        let method = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("");
        let Some(path) = path.strip_prefix(PREFIX) else {
            write_response(&mut writer, "404 Not Found", &[], b"")?;
            continue;
        };
        match (method, path) {
            ("GET", "/invocation/next") => {
                let (reply_tx, reply_rx) = mpsc::channel();
                if tx.send(Msg::Next(Instant::now(), reply_tx)).is_err() {
                    return Ok(());
                }
                // Blocks until an event is handed over; an error means the
                // function is being stopped.
                let Ok(delivery) = reply_rx.recv() else {
                    return Ok(());
                };
                let deadline = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis()
                    + 900_000;
                write_response(
                    &mut writer,
                    "200 OK",
                    &[
                        ("content-type", "application/json".into()),
                        ("lambda-runtime-aws-request-id", delivery.request_id),
                        ("lambda-runtime-deadline-ms", deadline.to_string()),
                        (
                            "lambda-runtime-invoked-function-arn",
                            "arn:aws:lambda:us-east-1:123456789012:function:bench".into(),
                        ),
                        (
                            "lambda-runtime-trace-id",
                            "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
                        ),
                    ],
                    &delivery.event,
                )?;
            }
            ("POST", "/init/error") => {
                let _ = tx.send(Msg::Error {
                    request_id: None,
                    body: req.body,
                });
                write_response(&mut writer, "202 Accepted", &[], b"{}")?;
            }
            ("POST", p) if p.starts_with("/invocation/") => {
                let at = Instant::now();
                let rest = &p["/invocation/".len()..];
                let (id, what) = rest.split_once('/').unwrap_or((rest, ""));
                let msg = if what == "response" {
                    Msg::Response {
                        request_id: id.to_owned(),
                        body: req.body,
                        at,
                    }
                } else {
                    Msg::Error {
                        request_id: Some(id.to_owned()),
                        body: req.body,
                    }
                };
                let _ = tx.send(msg);
                write_response(&mut writer, "202 Accepted", &[], b"{\"status\":\"OK\"}")?;
            }
            _ => write_response(&mut writer, "404 Not Found", &[], b"")?,
        }
    }
    Ok(())
}
