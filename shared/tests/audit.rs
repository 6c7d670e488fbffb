//! The audit trail: one entry per action and per login attempt, who and
//! from where, never a secret; `GET /org/audit` pages it newest first for
//! the token's organization only, from an index.

mod support;

use mongodb::bson::Document;
use serde_json::{json, Value};
use shared::store::{Action, Actor, AuditContext};
use support::*;

const EMAIL: &str = "admin@acme.example";

fn audit_page(token: &str, query: &[(&str, &str)]) -> shared::lambda_http::Request {
    event("GET", "/org/audit", query, None, Some(token))
}

/// Every entry of the test's database, oldest first.
async fn entries(t: &TestApp) -> Vec<Document> {
    let mut all = t.all("audit").await;
    all.sort_by_key(|e| {
        (
            e.get_datetime("at").unwrap().timestamp_millis(),
            e.get_object_id("_id").unwrap(),
        )
    });
    all
}

fn actions(entries: &[Document]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.get_str("action").unwrap().to_owned())
        .collect()
}

/// The actions of the entries on a page of the trail, in its order.
fn page_actions(page: &Value) -> Vec<&str> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn each_action_and_login_attempt_leaves_exactly_one_entry_and_no_secret() {
    let t = TestApp::locking_after(1).await;
    let created = t.create("acme", EMAIL).await;
    assert_eq!(created.status, 201);
    let token = t.login(EMAIL, PASSWORD).await;
    let bad = || login_request(EMAIL, "wrong-password");
    assert_eq!(t.call(bad()).await.status, 401);
    assert_eq!(t.call(bad()).await.status, 429);
    let renamed = t
        .update(&token, json!({"organization_name": "acme-2"}))
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let changed = t
        .update(
            &token,
            json!({"organization_name": "acme-2", "email": "new@acme.example",
                    "password": "a-new-strong-passphrase-7"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let token = changed.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(t.call(delete(Some(&token), "acme-2")).await.status, 200);
    let restored = t
        .restore("acme-2", "new@acme.example", "a-new-strong-passphrase-7")
        .await;
    assert_eq!(restored.status, 200, "{}", restored.body);
    let token = t
        .login("new@acme.example", "a-new-strong-passphrase-7")
        .await;
    assert_eq!(t.call(delete(Some(&token), "acme-2")).await.status, 200);
    t.expire_retention().await;
    assert_eq!(t.app.purge().await.unwrap().purged, 1);

    let all = entries(&t).await;
    assert_eq!(
        actions(&all),
        [
            "organization.created",
            "login.succeeded",
            "login.failed",
            "login.throttled",
            "organization.renamed",
            "admin.email_changed",
            "admin.password_changed",
            "organization.deleted",
            "organization.restored",
            "login.succeeded",
            "organization.deleted",
            "organization.purged",
        ]
    );
    let org_id = created.body["organization_id"].as_str().unwrap();
    let admin_id = created.body["admin_id"].as_str().unwrap();
    for e in &all {
        assert_eq!(
            e.get_object_id("organization_id").unwrap().to_hex(),
            org_id,
            "{e}"
        );
        let actor = e.get_document("actor").unwrap();
        let expected_kind = match e.get_str("action").unwrap() {
            "organization.created" | "login.failed" | "login.throttled" => "anonymous",
            "organization.purged" => "system",
            _ => "admin",
        };
        assert_eq!(actor.get_str("kind").unwrap(), expected_kind, "{e}");
        if expected_kind == "admin" {
            assert_eq!(actor.get_str("id").unwrap(), admin_id, "{e}");
        }
        if expected_kind != "system" {
            assert_eq!(e.get_str("source_ip").unwrap(), "192.0.2.1", "{e}");
            assert!(!e.get_str("request_id").unwrap().is_empty(), "{e}");
        }
        let outcome = e.get_str("outcome").unwrap();
        match e.get_str("action").unwrap() {
            "login.failed" => assert_eq!(outcome, "failed"),
            "login.throttled" => assert_eq!(outcome, "throttled"),
            _ => assert_eq!(outcome, "succeeded"),
        }
        let text = e.to_string();
        for secret in [
            PASSWORD,
            "a-new-strong-passphrase-7",
            "wrong-password",
            "$2b$",
            &token,
        ] {
            assert!(!text.contains(secret), "an entry carries a secret: {e}");
        }
    }
    t.drop().await;
}

#[tokio::test]
async fn provisioning_records_its_source_as_the_actor() {
    let t = TestApp::new().await;
    let message = json!({"organization_name": "queued", "email": "admin@queued.example",
                         "password_hash": HASH_COST_5});
    deliver(&t.app, sqs(&[("m-1", message)])).await.unwrap();

    let all = entries(&t).await;
    assert_eq!(actions(&all), ["organization.created"]);
    let actor = all[0].get_document("actor").unwrap();
    assert_eq!(actor.get_str("kind").unwrap(), "provisioning");
    assert_eq!(
        actor.get_str("id").unwrap(),
        "arn:aws:sqs:us-east-1:123456789012:q"
    );
    assert_eq!(all[0].get_str("request_id").unwrap(), "m-1");
    t.drop().await;
}

#[tokio::test]
async fn the_trail_is_served_newest_first_to_its_own_organization_only() {
    let t = TestApp::new().await;
    let (_, token) = t.create_and_login("acme").await;
    let (_, other) = t.create_and_login("other").await;
    let renamed = t
        .update(&token, json!({"organization_name": "acme-2"}))
        .await;
    assert_eq!(renamed.status, 200);

    let own = t.call(audit_page(&token, &[])).await;
    let theirs = t.call(audit_page(&other, &[])).await;

    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(
        page_actions(&own.body),
        [
            "organization.renamed",
            "login.succeeded",
            "organization.created"
        ]
    );
    assert_eq!(own.body["next_cursor"], Value::Null);
    let entry = &own.body["entries"][0];
    assert_eq!(entry["actor"]["kind"], "admin");
    assert_eq!(entry["source_ip"], "192.0.2.1");
    assert_eq!(entry["outcome"], "succeeded");
    assert_eq!(
        page_actions(&theirs.body),
        ["login.succeeded", "organization.created"],
        "never acme's"
    );
    assert_eq!(t.call(audit_page("not-a-token", &[])).await.status, 401);
    t.drop().await;
}

#[tokio::test]
async fn pages_of_100_100_50_walk_250_entries_with_no_duplicate_or_gap_while_more_arrive() {
    let t = TestApp::new().await;
    let (org, token) = t.create_and_login("acme").await;
    let org_id = organization_id(&org);
    let store = t.app.store().await.unwrap();
    let ctx = AuditContext {
        actor: Actor::Anonymous(EMAIL.into()),
        source_ip: Some("192.0.2.9".into()),
        request_id: None,
    };
    // 2 entries so far (created, login): 248 more make 250.
    for _ in 0..248 {
        store
            .audit_request(Some(org_id), Action::LoginFailed, &ctx)
            .await;
    }
    let mut before: Vec<String> = entries(&t)
        .await
        .iter()
        .map(|e| e.get_object_id("_id").unwrap().to_hex())
        .collect();
    before.reverse();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "100")];
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let page = t.call(audit_page(&token, &query)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let ids: Vec<String> = page.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        sizes.push(ids.len());
        seen.extend(ids);
        // Written between pages: newer than every cursor, so on no later page.
        for _ in 0..7 {
            store
                .audit_request(Some(org_id), Action::LoginFailed, &ctx)
                .await;
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }

    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(seen, before, "every entry once, newest first");
    t.drop().await;
}

#[tokio::test]
async fn a_bad_limit_or_cursor_is_a_422() {
    let t = TestApp::new().await;
    let (_, token) = t.create_and_login("acme").await;

    for query in [
        vec![("limit", "0")],
        vec![("limit", "101")],
        vec![("limit", "ten")],
        vec![("limit", "-1")],
        vec![("cursor", "not-a-cursor")],
        vec![("cursor", "a1zz")],
    ] {
        let r = t.call(audit_page(&token, &query)).await;
        assert_eq!(r.status, 422, "{query:?}: {}", r.body);
        assert!(r.body["error"]["code"].is_string());
    }
    let default = t.call(audit_page(&token, &[])).await;
    assert_eq!(default.status, 200);
    t.drop().await;
}

#[tokio::test]
async fn a_page_is_served_by_the_index_not_a_collection_scan() {
    let t = TestApp::new().await;
    let (org, token) = t.create_and_login("acme").await;
    let org_id = organization_id(&org);
    let first = t.call(audit_page(&token, &[("limit", "1")])).await;
    let cursor = first.body["next_cursor"]
        .as_str()
        .map(|c| shared::store::AuditCursor::parse(c).expect("a cursor the service issued"));
    let store = t.app.store().await.unwrap();

    for (page, cursor) in [("the first page", None), ("the next page", cursor)] {
        let plan = store.explain_audit_page(org_id, 50, cursor).await.unwrap();
        assert_index_scan(&plan, "organization_newest_first", page);
    }
    t.drop().await;
}

#[tokio::test]
async fn entries_expire_after_the_retention_through_a_ttl_index() {
    let t = TestApp::new().await;
    t.create_and_login("acme").await;
    // As the create function does while it starts (every index).
    t.app.store().await.unwrap().ensure_indexes().await.unwrap();

    let entry = &entries(&t).await[0];
    let at = entry.get_datetime("at").unwrap().timestamp_millis();
    let expires = entry.get_datetime("expires_at").unwrap().timestamp_millis();
    assert_eq!(expires - at, 400 * 86_400 * 1_000, "the default 400 days");
    assert_eq!(
        t.ttl_after_expiry("audit").await,
        Some(std::time::Duration::ZERO)
    );
    t.drop().await;
}
