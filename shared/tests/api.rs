//! The contract, route by route, against the real database server: every
//! success path and every error status of the contract (openapi.yaml),
//! checked in the database as well as in the response.

mod support;

use mongodb::bson::{doc, Document};
use serde_json::{json, Value};
use shared::store::LoginThrottle;
use std::time::Duration;
use support::*;

// ------------------------------------------------------------------ create

#[tokio::test]
async fn creating_an_organization_makes_its_record_admin_and_collection() {
    let t = TestApp::new().await;

    let r = t.create("  Acme ", "Admin@Acme.Example").await;

    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["organization_name"], "acme");
    assert_eq!(r.body["collection_name"], "org_acme");
    for field in ["organization_id", "admin_id", "created_at"] {
        assert!(
            r.body[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }
    assert_eq!(
        r.body.as_object().unwrap().len(),
        5,
        "exactly the contract's fields: {}",
        r.body
    );
    assert_eq!(t.tenant_collections().await, ["org_acme"]);
    let admin = &t.all("admins").await[0];
    assert_eq!(admin.get_str("email").unwrap(), "admin@acme.example");
    let hash = admin.get_str("password_hash").unwrap();
    assert!(hash.starts_with("$2b$04$") && !hash.contains(PASSWORD));
    assert!(
        !r.body.to_string().contains("$2b$"),
        "no hash in the response"
    );
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn the_master_collections_get_their_unique_indexes() {
    let t = TestApp::new().await;
    t.create("acme", "a@acme.example").await;

    let mut unique = Vec::new();
    for coll in ["organizations", "admins"] {
        let indexes = t.index_names(coll).await;
        unique.extend(indexes.into_iter().filter(|n| n.ends_with("_unique")));
    }
    unique.sort();
    assert_eq!(
        unique,
        [
            "collection_name_unique",
            "email_unique",
            "name_unique",
            "names_unique"
        ]
    );
    t.drop().await;
}

#[tokio::test]
async fn a_taken_name_or_email_is_a_conflict_and_changes_nothing() {
    let t = TestApp::new().await;
    assert_eq!(t.create("acme", "a@acme.example").await.status, 201);
    let before = t.snapshot().await;

    let same_name = t.create("ACME", "b@acme.example").await;
    let same_email = t.create("other", "A@acme.example").await;

    assert_eq!(same_name.status, 409);
    assert_eq!(same_name.body["error"]["code"], "organization_exists");
    assert_eq!(same_email.status, 409);
    assert_eq!(same_email.body["error"]["code"], "email_taken");
    assert_eq!(t.snapshot().await, before);
    assert_invariants(&t).await;
    t.drop().await;
}

// --------------------------------------------------------------------- get

#[tokio::test]
async fn getting_an_organization_returns_what_create_returned() {
    let t = TestApp::new().await;
    let created = t.create("acme", "a@acme.example").await.body;

    let r = t.call(get_org("Acme")).await;

    assert_eq!(r.status, 200);
    assert_eq!(r.body, created);
    assert_eq!(r.response.headers()["cache-control"], "no-store");
    t.drop().await;
}

#[tokio::test]
async fn getting_an_unknown_or_invalid_name_is_404_or_422() {
    let t = TestApp::new().await;
    assert_eq!(t.call(get_org("nobody")).await.status, 404);
    let invalid = t.call(get_org("a.b")).await;
    assert_eq!(invalid.status, 422);
    assert_eq!(invalid.body["error"]["field"], "organization_name");
    let missing = t.call(event("GET", "/org/get", &[], None, None)).await;
    assert_eq!(missing.status, 422);
    let twice = t
        .call(event(
            "GET",
            "/org/get",
            &[("organization_name", "a"), ("organization_name", "b")],
            None,
            None,
        ))
        .await;
    assert_eq!(twice.status, 422);
    t.drop().await;
}

// ------------------------------------------------------------------- login

#[tokio::test]
async fn login_returns_a_bearer_token_for_the_admins_organization() {
    let t = TestApp::new().await;
    let created = t.create("acme", "a@acme.example").await.body;

    let r = t.call(login_request(" A@ACME.example", PASSWORD)).await;

    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "bearer");
    assert_eq!(r.body["expires_in"], 3600);
    assert_eq!(r.response.headers()["cache-control"], "no-store");
    let claims = t
        .app
        .tokens()
        .unwrap()
        .verify(r.body["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims.org, created["organization_id"].as_str().unwrap());
    assert_eq!(claims.sub, created["admin_id"].as_str().unwrap());
    t.drop().await;
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_401() {
    let t = TestApp::new().await;
    t.create("acme", "a@acme.example").await;

    let wrong = t
        .call(login_request("a@acme.example", "wrong-password"))
        .await;
    let unknown = t.call(login_request("x@acme.example", PASSWORD)).await;

    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(unknown.status, 401);
    assert!(!wrong.body.to_string().contains("wrong-password"));
    t.drop().await;
}

#[tokio::test]
async fn repeated_failures_lock_that_email_from_that_address_for_a_bounded_time() {
    let policy = LoginThrottle {
        max_failures: 3,
        base_lock: Duration::from_secs(2),
        max_lock: Duration::from_secs(3),
        window: Duration::from_secs(60),
        ..LoginThrottle::default()
    };
    let t = TestApp::throttled(policy).await;
    t.create("acme", "a@acme.example").await;
    let attacker = "198.51.100.7";
    let attempt = |password: &str| t.call(login_from(attacker, "a@acme.example", password));
    for _ in 0..3 {
        assert_eq!(attempt("wrong-guess").await.status, 401);
    }

    let locked = attempt(PASSWORD).await;
    let elsewhere = t
        .call(login_from("203.0.113.9", "a@acme.example", PASSWORD))
        .await;

    assert_eq!(locked.status, 429, "{}", locked.body);
    assert_eq!(locked.body["error"]["code"], "too_many_requests");
    let retry_after: u64 = locked.retry_after();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(
        elsewhere.status, 200,
        "the real admin elsewhere is not locked out"
    );

    // One more failure once the lock ends doubles it, up to the cap.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(attempt("wrong-again").await.status, 401);
    let relocked = attempt(PASSWORD).await;
    assert_eq!(relocked.status, 429);
    let capped: u64 = relocked.retry_after();
    assert!((2..=3).contains(&capped), "{capped}");

    // After the lock, the right password works and clears the record of
    // that email and address (the email's own count, across addresses,
    // stays: see the per-email ceiling in tests/security.rs).
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert_eq!(attempt(PASSWORD).await.status, 200);
    let pair = format!("login|a@acme.example|{attacker}");
    assert_eq!(t.count("login_attempts", doc! {"_id": pair}).await, 0);
    t.drop().await;
}

#[tokio::test]
async fn failed_logins_are_forgotten_through_a_ttl_index() {
    let t = TestApp::new().await;
    t.create("acme", "a@acme.example").await;
    t.call(login_from("198.51.100.7", "a@acme.example", "wrong-guess"))
        .await;

    let ttl = t.ttl_after_expiry("login_attempts").await;

    assert_eq!(ttl, Some(Duration::ZERO));
    let record = &t.all("login_attempts").await[0];
    assert!(
        !record.to_string().contains("wrong-guess"),
        "no password in the record"
    );
    t.drop().await;
}

// ------------------------------------------------------------------ update

#[tokio::test]
async fn renaming_moves_the_collection_and_keeps_the_ids() {
    let t = TestApp::new().await;
    let (created, token) = t.create_and_login("acme").await;

    let r = t
        .update(&token, json!({"organization_name": "Acme-Two"}))
        .await;

    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["organization_name"], "acme-two");
    assert_eq!(r.body["collection_name"], "org_acme-two");
    assert_eq!(r.body["organization_id"], created["organization_id"]);
    assert_eq!(r.body["admin_id"], created["admin_id"]);
    assert_eq!(t.tenant_collections().await, ["org_acme-two"]);
    assert_eq!(t.call(get_org("acme")).await.status, 404);
    assert_eq!(t.call(get_org("acme-two")).await.status, 200);
    // The token names the immutable id, so it still works after the rename.
    let again = t
        .update(&token, json!({"organization_name": "acme-three"}))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn a_rename_keeps_every_document_and_index_of_the_tenant() {
    let t = TestApp::new().await;
    let (_, token) = t.create_and_login("big").await;
    fill_tenant(&t, "org_big", 5_000).await;

    let r = t
        .update(&token, json!({"organization_name": "bigger"}))
        .await;

    assert_eq!(r.status, 200, "{}", r.body);
    let moved = t.database().collection::<Document>("org_bigger");
    assert_eq!(moved.count_documents(doc! {}).await.unwrap(), 5_000);
    assert_eq!(
        moved
            .count_documents(doc! {"sku": 4_999, "payload": "item 4999"})
            .await
            .unwrap(),
        1
    );
    let indexes = moved.list_index_names().await.unwrap();
    assert!(indexes.contains(&"sku_unique".to_owned()), "{indexes:?}");
    let dup = moved.insert_one(doc! {"sku": 7}).await;
    assert!(dup.is_err(), "the unique index still enforces uniqueness");
    assert_invariants(&t).await;
    t.drop().await;
}

/// Organizations "one" (its admin logged in) and "two": `body` as one's
/// update is a 409 with `code` and changes nothing.
async fn assert_update_taken(t: &TestApp, body: Value, code: &str) {
    let (_, token) = t.create_and_login("one").await;
    t.create("two", "a@two.example").await;
    let before = t.snapshot().await;

    let r = t.update(&token, body).await;

    assert_eq!(r.status, 409);
    assert_eq!(r.body["error"]["code"], code);
    assert_eq!(t.snapshot().await, before);
}

#[tokio::test]
async fn renaming_to_a_taken_name_is_409_and_changes_nothing() {
    let t = TestApp::new().await;
    assert_update_taken(
        &t,
        json!({"organization_name": "two"}),
        "organization_exists",
    )
    .await;
    t.drop().await;
}

#[tokio::test]
async fn the_admin_can_change_email_and_password_with_or_without_a_rename() {
    let t = TestApp::new().await;
    let (_, token) = t.create_and_login("acme").await;

    let r = t
        .update(&token, json!({"organization_name": "acme", "email": "new@acme.example", "password": "another-secret"})).await;

    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["organization_name"], "acme");
    let old = t.call(login_request("admin@acme.example", PASSWORD)).await;
    assert_eq!(old.status, 401);
    t.login("new@acme.example", "another-secret").await;
    assert!(!t.all("admins").await[0]
        .to_string()
        .contains("another-secret"));
    t.drop().await;
}

#[tokio::test]
async fn changing_to_a_taken_email_is_409_and_undoes_the_rename_claim() {
    let t = TestApp::new().await;
    assert_update_taken(
        &t,
        json!({"organization_name": "one-renamed", "email": "a@two.example"}),
        "email_taken",
    )
    .await;
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn protected_routes_refuse_missing_and_bad_tokens() {
    let t = TestApp::new().await;
    t.create("acme", "a@acme.example").await;
    let body = json!({"organization_name": "x"});
    let forged = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";

    for token in [None, Some("not-a-jwt"), Some(forged)] {
        assert_eq!(t.call(update(token, &body)).await.status, 401, "{token:?}");
        assert_eq!(t.call(delete(token, "acme")).await.status, 401, "{token:?}");
    }
    let basic = {
        let mut req = update(None, &body);
        req.headers_mut()
            .insert("authorization", "Basic YTpi".parse().unwrap());
        req
    };
    assert_eq!(t.call(basic).await.status, 401);
    assert_eq!(t.tenant_collections().await, ["org_acme"]);
    t.drop().await;
}

// ------------------------------------------------------------------ delete

#[tokio::test]
async fn deleting_removes_the_record_the_admin_and_the_collection() {
    let t = TestApp::new().await;
    let (created, token) = t.create_and_login("acme").await;
    t.database()
        .collection::<Document>("org_acme")
        .insert_one(doc! {"x": 1})
        .await
        .unwrap();

    let r = t.call(delete(Some(&token), "acme")).await;

    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "deleted");
    assert_eq!(r.body["organization"], created);
    assert!(t.tenant_collections().await.is_empty());
    assert_eq!(t.count("organizations", doc! {}).await, 0);
    assert_eq!(t.count("admins", doc! {}).await, 0);
    let login = t.call(login_request("admin@acme.example", PASSWORD)).await;
    assert_eq!(login.status, 401);
    assert_eq!(t.call(delete(Some(&token), "acme")).await.status, 404);
    // The name is free again.
    assert_eq!(t.create("acme", "admin@acme.example").await.status, 201);
    t.drop().await;
}

#[tokio::test]
async fn another_organizations_token_is_forbidden_and_changes_nothing() {
    let t = TestApp::new().await;
    t.create_and_login("victim").await;
    let (_, attacker) = t.create_and_login("attacker").await;
    let before = t.snapshot().await;

    let r = t.call(delete(Some(&attacker), "victim")).await;

    assert_eq!(r.status, 403);
    assert_eq!(r.body["error"]["code"], "forbidden");
    assert_eq!(t.snapshot().await, before);
    t.drop().await;
}

// --------------------------------------------------------- request hygiene

#[tokio::test]
async fn malformed_oversized_and_mistyped_bodies_get_their_statuses() {
    let t = TestApp::new().await;
    let huge = json!({"organization_name": "a", "email": "a@b.co", "password": "x".repeat(20_000)});
    let cases = [
        (
            post_raw("/org/create", "{not json"),
            400,
            "malformed_request",
        ),
        (post_raw("/org/create", ""), 400, "malformed_request"),
        (post("/org/create", &huge), 413, "payload_too_large"),
        (post("/org/create", &json!([1, 2])), 422, "invalid_field"),
        (
            post(
                "/org/create",
                &json!({"organization_name": 5, "email": "a@b.co", "password": PASSWORD}),
            ),
            422,
            "invalid_field",
        ),
        (
            post(
                "/org/create",
                &json!({"organization_name": "ok", "email": "a@b.co", "password": PASSWORD, "admin": true}),
            ),
            422,
            "invalid_field",
        ),
        (
            post(
                "/org/create",
                &json!({"organization_name": "ok", "email": "a@b.co"}),
            ),
            422,
            "invalid_field",
        ),
        (
            post(
                "/org/create",
                &json!({"organization_name": "ok", "email": "a@b.co", "password": "x".repeat(73)}),
            ),
            422,
            "invalid_field",
        ),
    ];
    for (req, status, code) in cases {
        let r = t.call(req).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{}",
            r.body
        );
    }
    assert_eq!(t.count("organizations", doc! {}).await, 0);
    t.drop().await;
}

#[tokio::test]
async fn an_unreachable_database_is_a_503_and_never_a_500() {
    let t = TestApp::new().await;
    let down = with_unreachable_database(&t);

    let r = reply(shared::handlers::get(&down, get_org("acme")).await);
    let c = reply(
        shared::handlers::create(
            &down,
            post("/org/create", &json!({"organization_name": "acme", "email": "a@acme.example", "password": PASSWORD})),
        )
        .await,
    );

    assert_eq!((r.status, c.status), (503, 503));
    assert_eq!(r.body["error"]["code"], "service_unavailable");
    assert!(
        !r.body.to_string().contains("127.0.0.1"),
        "no internals: {}",
        r.body
    );
    t.drop().await;
}
