//! Turns one cold start's timestamps and proxied exchanges into its parts:
//! init, secret fetches, MongoDB handshakes, the request's own queries, and
//! index creation, each split into what happened during init (before the
//! first `next`) and during the request (event delivered → response).
//!
//! Times that overlap are counted once (the union of intervals), so a secret
//! fetch that runs beside a handshake does not count twice.

use std::time::Instant;

use serde_json::{json, Value};

use crate::proxy::Exchange;
use crate::runtime::ms;

/// Commands a connection runs to introduce itself (and authenticate).
fn is_handshake_command(label: &str) -> bool {
    matches!(
        label,
        "hello" | "isMaster" | "ismaster" | "saslStart" | "saslContinue" | "authenticate"
    )
}

fn is_index_command(label: &str) -> bool {
    matches!(label, "createIndexes" | "listIndexes")
}

#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    to: Instant,
}

type Interval = (Instant, Instant);

/// Length of the union of `intervals` clipped to `w`, in milliseconds.
fn union_ms(mut intervals: Vec<Interval>, w: Window) -> f64 {
    intervals.retain(|(a, b)| *b > w.from && *a < w.to);
    let mut clipped: Vec<Interval> = intervals
        .into_iter()
        .map(|(a, b)| (a.max(w.from), b.min(w.to)))
        .collect();
    clipped.sort_by_key(|i| i.0);
    let mut total = 0.0;
    let mut current: Option<Interval> = None;
    for (a, b) in clipped {
        match current {
            Some((ca, cb)) if a <= cb => current = Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += ms(cb - ca);
                current = Some((a, b));
            }
            None => current = Some((a, b)),
        }
    }
    if let Some((ca, cb)) = current {
        total += ms(cb - ca);
    }
    total
}

pub struct Timeline {
    pub spawned: Instant,
    pub first_next: Instant,
    pub delivered: Instant,
    pub responded: Instant,
}

/// The breakdown of one cold start as a JSON object (all times in ms).
pub fn cold_start(t: &Timeline, mongo: &[Exchange], aws: &[Exchange]) -> Value {
    let (secrets, publishes): (Vec<Exchange>, Vec<Exchange>) = aws
        .iter()
        .cloned()
        .partition(|e| !e.label.starts_with("awsevents."));
    let init = Window {
        from: t.spawned,
        to: t.first_next,
    };
    let request = Window {
        from: t.delivered,
        to: t.responded,
    };
    let whole = Window {
        from: t.spawned,
        to: t.responded,
    };
    let end_or = |e: &Exchange, w: Window| e.end.unwrap_or(w.to);

    // Secrets Manager calls.
    let secret: Vec<Interval> = secrets
        .iter()
        .map(|e| (e.start, end_or(e, whole)))
        .collect();
    let publish: Vec<Interval> = publishes
        .iter()
        .map(|e| (e.start, end_or(e, whole)))
        .collect();
    let in_window = |e: &Exchange, w: Window| e.start >= w.from && e.start < w.to;
    let secret_longest = secrets
        .iter()
        .filter(|e| in_window(e, whole))
        .map(|e| ms(end_or(e, whole) - e.start))
        .fold(0.0, f64::max);

    // MongoDB: a connection that only ever says hello is the driver's
    // monitor; after its handshake its heartbeats are not on any path.
    let monitor = |conn: u64| {
        mongo
            .iter()
            .filter(|e| e.conn == conn)
            .all(|e| is_handshake_command(&e.label))
    };
    let mut handshakes: Vec<Interval> = Vec::new();
    let mut queries: Vec<&Exchange> = Vec::new();
    let mut pings: Vec<Interval> = Vec::new();
    for e in mongo {
        if is_handshake_command(&e.label) {
            if e.index == 0 {
                handshakes.push((e.conn_opened, end_or(e, whole)));
            } else if !monitor(e.conn) {
                // Authentication after hello: still the handshake.
                if let Some(h) = handshakes.iter_mut().find(|h| h.0 == e.conn_opened) {
                    h.1 = h.1.max(end_or(e, whole));
                }
            }
        } else if e.label == "ping" {
            // The warm-up's check that the connection works, not the
            // request's own: counted with the handshakes.
            pings.push((e.start, end_or(e, whole)));
        } else {
            queries.push(e);
        }
    }
    let handshake_longest = handshakes
        .iter()
        .filter(|(a, _)| *a >= whole.from && *a < whole.to)
        .map(|(a, b)| ms(*b - *a))
        .fold(0.0, f64::max);
    // The driver's two kinds of handshake, which its specifications make
    // serial: the monitor's (server discovery) first, then a pooled
    // connection's, opened only once the server is known.
    let first_hello = |pred: &dyn Fn(u64) -> bool| -> f64 {
        mongo
            .iter()
            .filter(|e| e.index == 0 && is_handshake_command(&e.label) && pred(e.conn))
            .filter(|e| e.conn_opened >= whole.from && e.conn_opened < whole.to)
            .map(|e| ms(end_or(e, whole) - e.conn_opened))
            .fold(0.0, f64::max)
    };
    let monitor_handshake = first_hello(&|c| monitor(c));
    let pool_handshake_longest = first_hello(&|c| !monitor(c));
    let connecting: Vec<Interval> = handshakes.iter().chain(pings.iter()).copied().collect();
    let at = |i: Instant| ms(i.saturating_duration_since(t.spawned));
    // Every round trip of the run (monitor heartbeats left out), in order.
    let mut timeline: Vec<(Instant, Value)> = mongo
        .iter()
        .filter(|e| e.index == 0 || !monitor(e.conn))
        .map(|e| {
            let start = if e.index == 0 { e.conn_opened } else { e.start };
            (
                start,
                json!([
                    e.label,
                    format!("mongo#{}", e.conn),
                    at(start),
                    at(end_or(e, whole))
                ]),
            )
        })
        .chain(aws.iter().map(|e| {
            (
                e.start,
                json!([
                    e.label,
                    format!("aws#{}", e.conn),
                    at(e.start),
                    at(end_or(e, whole))
                ]),
            )
        }))
        .filter(|(start, _)| *start < whole.to)
        .collect();
    timeline.sort_by_key(|(start, _)| *start);
    let query_iv = |pred: &dyn Fn(&str) -> bool| -> Vec<Interval> {
        queries
            .iter()
            .filter(|e| pred(&e.label))
            .map(|e| (e.start, end_or(e, whole)))
            .collect()
    };
    let own_queries = query_iv(&|l| !is_index_command(l));
    let index_queries = query_iv(&is_index_command);
    let labels = |w: Window| -> Vec<String> {
        queries
            .iter()
            .filter(|e| in_window(e, w))
            .map(|e| e.label.clone())
            .collect()
    };
    let secret_calls = |w: Window| secrets.iter().filter(|e| in_window(e, w)).count();
    let handshake_count = |w: Window| {
        handshakes
            .iter()
            .filter(|(a, _)| *a >= w.from && *a < w.to)
            .count()
    };
    let all_net: Vec<Interval> = secret
        .iter()
        .chain(connecting.iter())
        .chain(own_queries.iter())
        .chain(index_queries.iter())
        .chain(publish.iter())
        .copied()
        .collect();
    // Index creation on the path: the time when nothing but createIndexes
    // was outstanding (beside another round trip it costs nothing).
    let all_but_index: Vec<Interval> = secret
        .iter()
        .chain(connecting.iter())
        .chain(own_queries.iter())
        .chain(publish.iter())
        .copied()
        .collect();
    let index_path = union_ms(all_net.clone(), whole) - union_ms(all_but_index, whole);

    json!({
        "init_ms": ms(t.first_next - t.spawned),
        "total_ms": ms(t.responded - t.spawned),
        "invoke_ms": ms(t.responded - t.delivered),
        "secret_init_ms": union_ms(secret.clone(), init),
        "secret_req_ms": union_ms(secret.clone(), request),
        "secret_calls_init": secret_calls(init),
        "secret_calls_req": secret_calls(request),
        "secret_longest_ms": secret_longest,
        "handshake_init_ms": union_ms(connecting.clone(), init),
        "handshake_req_ms": union_ms(connecting.clone(), request),
        "handshake_all_ms": union_ms(connecting.clone(), whole),
        "secret_all_ms": union_ms(secret.clone(), whole),
        "first_next_ms": at(t.first_next),
        "delivered_ms": at(t.delivered),
        "timeline": timeline.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "handshakes_init": handshake_count(init),
        "handshakes_req": handshake_count(request),
        "handshake_longest_ms": handshake_longest,
        "monitor_handshake_ms": monitor_handshake,
        "pool_handshake_longest_ms": pool_handshake_longest,
        "queries_init": labels(init),
        "queries_req": labels(request),
        "query_req_ms": union_ms(own_queries.clone(), request),
        "index_ms": union_ms(index_queries, whole),
        "index_path_ms": index_path,
        "publish_req_ms": union_ms(publish.clone(), request),
        "publish_calls": publishes.len(),
        "net_init_ms": union_ms(all_net.clone(), init),
        "net_req_ms": union_ms(all_net.clone(), request),
        "net_all_ms": union_ms(all_net, whole),
    })
}
