//! A timestamping TCP proxy between a function and one of its endpoints
//! (MongoDB, Secrets Manager), so that a cold start can be broken down into
//! its round trips without touching the function.
//!
//! Every exchange is logged with when its request began and when its reply
//! was complete. For MongoDB the wire protocol is parsed: each request is
//! named by its command (`hello`, `find`, `insert`, ...) and matched to its
//! reply by `responseTo`. For HTTP (Secrets Manager) an exchange is a request
//! and the reply bytes that follow it, named by its `X-Amz-Target`.
//!
//! The copy costs two thread hand-offs per message on loopback (tens of
//! microseconds), small against the round trips it measures.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Protocol {
    Mongo,
    Http,
}

#[derive(Clone, Debug)]
pub struct Exchange {
    pub conn: u64,
    /// When the connection was accepted (the first exchange on a connection
    /// carries the TCP connect too).
    pub conn_opened: Instant,
    /// Position on its connection: 0 is the first request sent on it.
    pub index: u32,
    pub label: String,
    pub request_id: i32,
    pub start: Instant,
    pub end: Option<Instant>,
}

#[derive(Default)]
struct Log {
    exchanges: Vec<Exchange>,
}

pub struct Proxy {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

static CONN: AtomicU64 = AtomicU64::new(0);

impl Proxy {
    pub fn start(upstream: String, protocol: Protocol) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = log.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let opened = Instant::now();
                let Ok(server) = TcpStream::connect(&upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let conn = CONN.fetch_add(1, Ordering::Relaxed);
                let state = Arc::new(Mutex::new(ConnState {
                    next_index: 0,
                    http_open: None,
                }));
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                let (log_up, log_down) = (shared.clone(), shared.clone());
                let (st_up, st_down) = (state.clone(), state);
                thread::spawn(move || {
                    pump(client, server, |chunk_start, buf| {
                        on_request(protocol, conn, opened, &st_up, &log_up, chunk_start, buf)
                    })
                });
                thread::spawn(move || {
                    pump(s2, c2, |_, buf| {
                        on_reply(protocol, conn, &st_down, &log_down, buf)
                    })
                });
            }
        });
        Ok(Self { addr, log })
    }

    /// Forgets what was logged so far (between runs).
    pub fn clear(&self) {
        self.log.lock().expect("proxy log").exchanges.clear();
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.log.lock().expect("proxy log").exchanges.clone()
    }
}

struct ConnState {
    next_index: u32,
    /// HTTP: the index of the exchange whose reply is awaited or arriving.
    http_open: Option<u32>,
}

/// Copies `from` to `to`, calling `seen` with each chunk (and when its first
/// byte arrived, as far as a read can tell) before forwarding it.
fn pump(mut from: TcpStream, mut to: TcpStream, mut seen: impl FnMut(Instant, &[u8])) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen(Instant::now(), &buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

thread_local! {
    /// Partial MongoDB messages per direction (one pump thread per direction).
    static PENDING: std::cell::RefCell<(Vec<u8>, Option<Instant>)> =
        const { std::cell::RefCell::new((Vec::new(), None)) };
}

/// Splits the bytes seen so far into complete MongoDB messages; returns each
/// with the time its first byte was seen.
fn mongo_messages(at: Instant, chunk: &[u8]) -> Vec<(Instant, Vec<u8>)> {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if p.0.is_empty() {
            p.1 = Some(at);
        }
        p.0.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            if p.0.len() < 4 {
                break;
            }
            let len = i32::from_le_bytes([p.0[0], p.0[1], p.0[2], p.0[3]]).max(16) as usize;
            if p.0.len() < len {
                break;
            }
            let msg: Vec<u8> = p.0.drain(..len).collect();
            out.push((p.1.unwrap_or(at), msg));
            p.1 = Some(at);
        }
        out
    })
}

fn le_i32(b: &[u8], at: usize) -> i32 {
    b.get(at..at + 4)
        .map(|s| i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

/// The first key of the command document: the command's name.
fn mongo_command(msg: &[u8]) -> String {
    let op = le_i32(msg, 12);
    let doc_at = match op {
        // OP_MSG: flags, then section kind 0 holds the command document.
        2013 if msg.get(20) == Some(&0) => 21,
        // OP_QUERY (legacy handshake): flags, collection name, skip, return.
        2004 => {
            let name_end = msg[20..].iter().position(|&b| b == 0).unwrap_or(0) + 20;
            name_end + 1 + 8
        }
        _ => return format!("op{op}"),
    };
    // Skip the document length and the element type byte.
    let key_at = doc_at + 5;
    let key_end = msg
        .get(key_at..)
        .and_then(|s| s.iter().position(|&b| b == 0))
        .map(|p| p + key_at)
        .unwrap_or(key_at);
    String::from_utf8_lossy(&msg[key_at.min(key_end)..key_end]).into_owned()
}

fn on_request(
    protocol: Protocol,
    conn: u64,
    opened: Instant,
    state: &Mutex<ConnState>,
    log: &Mutex<Log>,
    at: Instant,
    chunk: &[u8],
) {
    match protocol {
        Protocol::Mongo => {
            for (start, msg) in mongo_messages(at, chunk) {
                let mut st = state.lock().expect("conn state");
                let index = st.next_index;
                st.next_index += 1;
                log.lock().expect("proxy log").exchanges.push(Exchange {
                    conn,
                    conn_opened: opened,
                    index,
                    label: mongo_command(&msg),
                    request_id: le_i32(&msg, 4),
                    start,
                    end: None,
                });
            }
        }
        Protocol::Http => {
            let mut st = state.lock().expect("conn state");
            let mut log = log.lock().expect("proxy log");
            // Bytes after a reply began start a new request; bytes before
            // are more of the same request.
            let continuing = st.http_open.is_some_and(|i| {
                log.exchanges
                    .iter()
                    .rev()
                    .find(|e| e.conn == conn && e.index == i)
                    .is_some_and(|e| e.end.is_none())
            });
            if continuing {
                return;
            }
            let text = String::from_utf8_lossy(chunk).to_ascii_lowercase();
            let label = text
                .find("x-amz-target:")
                .map(|i| {
                    text[i + 13..]
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_owned()
                })
                .unwrap_or_else(|| "http".to_owned());
            let index = st.next_index;
            st.next_index += 1;
            st.http_open = Some(index);
            log.exchanges.push(Exchange {
                conn,
                conn_opened: opened,
                index,
                label,
                request_id: index as i32,
                start: at,
                end: None,
            });
        }
    }
}

fn on_reply(
    protocol: Protocol,
    conn: u64,
    state: &Mutex<ConnState>,
    log: &Mutex<Log>,
    chunk: &[u8],
) {
    let now = Instant::now();
    match protocol {
        Protocol::Mongo => {
            for (_, msg) in mongo_messages(now, chunk) {
                let response_to = le_i32(&msg, 8);
                let mut log = log.lock().expect("proxy log");
                if let Some(e) = log
                    .exchanges
                    .iter_mut()
                    .rev()
                    .find(|e| e.conn == conn && e.request_id == response_to && e.end.is_none())
                {
                    e.end = Some(now);
                }
            }
        }
        Protocol::Http => {
            let st = state.lock().expect("conn state");
            let mut log = log.lock().expect("proxy log");
            // Every reply chunk moves the end of the open exchange; the last
            // one before the next request is the end of the reply.
            let open = st.http_open;
            if let Some(e) = log
                .exchanges
                .iter_mut()
                .rev()
                .find(|e| e.conn == conn && Some(e.index) == open)
            {
                e.end = Some(now);
            }
        }
    }
}
