//! The paged reads at scale: the operator listing over 10,000 organizations
//! and one organization's audit trail of 100,000 entries. Each page is timed
//! through its function (warm: event handed over → response), and each
//! query's plan is asked of the server through the service's own store, so
//! what is shown is the query the function runs.

use std::time::Duration;

use serde_json::{json, Value};
use shared::config::{DatabaseConfig, Secret, SecretSource};
use shared::store::{AuditCursor, ListQuery, Store};

use crate::runtime::Function;
use crate::{call, create_org, events, say, token, Bench};

pub const ORGANIZATIONS: u64 = 10_000;
pub const ENTRIES: u64 = 100_000;
/// The largest page either route serves.
const PAGE: u32 = 100;

/// Percentiles of `samples` (milliseconds), by nearest rank.
fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let i = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        samples
            .get(i.saturating_sub(1).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    json!({
        "samples": samples.len(),
        "p50_ms": rank(50.0),
        "p99_ms": rank(99.0),
        "max_ms": samples.last().copied().unwrap_or(0.0),
    })
}

/// The stages of a plan, outermost first, each with its index: e.g.
/// `LIMIT > FETCH > IXSCAN name_unique`.
fn stages(plan: &mongodb::bson::Document) -> String {
    fn walk(v: &mongodb::bson::Bson, out: &mut Vec<String>) {
        match v {
            mongodb::bson::Bson::Document(d) => {
                if let Ok(stage) = d.get_str("stage") {
                    out.push(match d.get_str("indexName") {
                        Ok(index) => format!("{stage} {index}"),
                        Err(_) => stage.to_owned(),
                    });
                }
                for key in [
                    "queryPlanner",
                    "winningPlan",
                    "inputStage",
                    "inputStages",
                    "queryPlan",
                ] {
                    if let Some(inner) = d.get(key) {
                        walk(inner, out);
                    }
                }
            }
            mongodb::bson::Bson::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&mongodb::bson::Bson::Document(plan.clone()), &mut out);
    if out.is_empty() {
        return "no plan stages in the server's explain output".to_owned();
    }
    let mut summary = out.join(" > ");
    if let Ok(stats) = plan.get_document("executionStats") {
        let count = |k: &str| {
            stats
                .get(k)
                .and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)))
        };
        if let (Some(keys), Some(docs)) = (count("totalKeysExamined"), count("totalDocsExamined")) {
            summary.push_str(&format!(" ({keys} keys, {docs} documents examined)"));
        }
    }
    summary
}

/// One page through `f`; its body and the function's time.
fn page(f: &mut Function, event: std::sync::Arc<Vec<u8>>) -> Result<(Value, f64), String> {
    let (answer, millis) = call(f, event, 200)?;
    Ok((events::body(&answer), millis))
}

pub fn pages(b: &Bench) -> Result<Value, String> {
    say(format!(
        "paged reads: the listing at {ORGANIZATIONS} organizations, an audit trail of {ENTRIES} entries"
    ));
    let db = format!("{}_pages", b.opts.db);
    let on_db: [(&str, &str); 2] = [("MASTER_DB", &db), ("TENANT_DB", &db)];
    let result = measure(b, &db, &on_db);
    if let Err(e) = b.mongo.drop_database(&db) {
        say(format!("could not drop database {db}: {e}"));
    }
    result
}

fn measure(b: &Bench, db: &str, on_db: &[(&str, &str)]) -> Result<Value, String> {
    let limit = PAGE.to_string();
    let store = b
        .mongo
        .block_on(Store::connect(
            &DatabaseConfig {
                uri: SecretSource::Value(Secret::new(b.opts.mongodb_uri.clone())),
                master_db: db.to_owned(),
                tenant_db: db.to_owned(),
                timeout: Duration::from_secs(30),
                operation_lease: Duration::from_secs(120),
            },
            &b.opts.mongodb_uri,
        ))
        .map_err(|e| e.to_string())?;

    // ---- the listing
    let mut list = b.spawn("list", on_db)?;
    // Its first page creates its indexes, before the documents arrive.
    page(&mut list, b.events.list(&[("limit", "1")]))?;
    let seeded = std::time::Instant::now();
    b.mongo.insert_organizations(db, "list", ORGANIZATIONS)?;
    say(format!(
        "  {ORGANIZATIONS} organizations in {:.1} s",
        seeded.elapsed().as_secs_f64()
    ));
    let mut walk = Vec::new();
    let mut rows = 0;
    for _ in 0..2 {
        let mut cursor: Option<String> = None;
        rows = 0;
        loop {
            let mut query = vec![("limit", limit.as_str())];
            if let Some(c) = &cursor {
                query.push(("cursor", c));
            }
            let (body, millis) = page(&mut list, b.events.list(&query))?;
            walk.push(millis);
            rows += body["organizations"].as_array().map_or(0, Vec::len);
            b.clear_proxies();
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
    }
    if rows as u64 != ORGANIZATIONS {
        return Err(format!(
            "the listing walked {rows} of {ORGANIZATIONS} organizations"
        ));
    }
    let mut prefixed = Vec::new();
    for k in 0..200u64 {
        // `list-0042` holds ten names (list-00420 to list-00429).
        let prefix = format!("list-{:04}", (k * 37) % (ORGANIZATIONS / 10));
        let (body, millis) = page(&mut list, b.events.list(&[("prefix", &prefix)]))?;
        if body["organizations"].as_array().map_or(0, Vec::len) != 10 {
            return Err(format!("prefix {prefix}: {body}"));
        }
        prefixed.push(millis);
        b.clear_proxies();
    }
    list.stop();
    let plan = |query: ListQuery| -> Result<Value, String> {
        let (live, deleted) = b
            .mongo
            .block_on(store.explain_listing(&query, PAGE))
            .map_err(|e| e.to_string())?;
        Ok(json!({
            "organizations": live.as_ref().map(stages),
            "deleted_organizations": deleted.as_ref().map(stages),
        }))
    };
    let list_plans = json!({
        "walk": plan(ListQuery::default())?,
        "prefix": plan(ListQuery {
            prefix: Some("list-0042".into()),
            ..Default::default()
        })?,
    });

    // ---- the audit trail
    let mut seeder = b.spawn("create", &[on_db, &[("BCRYPT_COST", "4")]].concat())?;
    let mut login = b.spawn("login", &[on_db, &[("BCRYPT_COST", "4")]].concat())?;
    let mut audit = b.spawn("audit", on_db)?;
    create_org(b, &mut seeder, "trail")?;
    let t = token(b, &mut login, "trail")?;
    seeder.stop();
    login.stop();
    // Its first page creates the trail's indexes, before the entries arrive.
    page(&mut audit, b.events.audit(&t, &[("limit", "1")]))?;
    let org = b.mongo.organization_id(db, "trail")?;
    let seeded = std::time::Instant::now();
    b.mongo.insert_audit_entries(db, org, ENTRIES)?;
    say(format!(
        "  {ENTRIES} audit entries in {:.1} s",
        seeded.elapsed().as_secs_f64()
    ));
    let mut trail = Vec::new();
    let mut entries = 0;
    let mut cursor: Option<String> = None;
    let mut deep: Option<String> = None;
    loop {
        let mut query = vec![("limit", limit.as_str())];
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let (body, millis) = page(&mut audit, b.events.audit(&t, &query))?;
        trail.push(millis);
        entries += body["entries"].as_array().map_or(0, Vec::len);
        b.clear_proxies();
        match body["next_cursor"].as_str() {
            Some(next) => {
                if trail.len() == 500 {
                    deep = Some(next.to_owned());
                }
                cursor = Some(next.to_owned());
            }
            None => break,
        }
    }
    audit.stop();
    // The trail also holds the create's and the login's own entries.
    if (entries as u64) < ENTRIES {
        return Err(format!("the trail walked {entries} of {ENTRIES} entries"));
    }
    let audit_plan = |cursor: Option<AuditCursor>| -> Result<String, String> {
        b.mongo
            .block_on(store.explain_audit_page(org, PAGE, cursor))
            .map(|p| stages(&p))
            .map_err(|e| e.to_string())
    };
    let audit_plans = json!({
        "first": audit_plan(None)?,
        "deep": audit_plan(deep.as_deref().and_then(AuditCursor::parse))?,
    });

    Ok(json!({
        "list": {
            "organizations": ORGANIZATIONS,
            "page": PAGE,
            "walk": summary(walk),
            "prefix": summary(prefixed),
            "plans": list_plans,
        },
        "audit": {
            "entries": ENTRIES,
            "page": PAGE,
            "walk": summary(trail),
            "plans": audit_plans,
        },
    }))
}
