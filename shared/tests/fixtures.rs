//! Every fixture in `events/` handled by its function's handler, in the order
//! a client would send them, with the status each must get.

mod support;

use shared::handlers;
use shared::lambda_http::request::from_str;
use support::*;

fn fixture(name: &str, token: &str) -> String {
    let path = format!("{}/../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace("REPLACE_WITH_TOKEN", token)
}

#[tokio::test]
async fn each_fixture_event_gets_the_expected_status_from_its_function() {
    let t = TestApp::new().await;
    let app = &t.app;

    let created = reply(handlers::create(app, from_str(&fixture("create", "")).unwrap()).await);
    assert_eq!(created.status, 201, "create.json: {}", created.body);
    let got = reply(handlers::get(app, from_str(&fixture("get", "")).unwrap()).await);
    assert_eq!(got.status, 200, "get.json: {}", got.body);
    let login = reply(handlers::login(app, from_str(&fixture("login", "")).unwrap()).await);
    assert_eq!(login.status, 200, "login.json: {}", login.body);
    let token = login.body["access_token"].as_str().unwrap();

    let authorizer_event = serde_json::from_str(&fixture("authorizer", token)).unwrap();
    let decision = handlers::authorize(app, authorizer_event).await;
    assert!(decision.is_authorized, "authorizer.json");
    assert_eq!(
        decision.context["organization_id"],
        created.body["organization_id"]
    );

    let updated = reply(handlers::update(app, from_str(&fixture("update", token)).unwrap()).await);
    assert_eq!(updated.status, 200, "update.json: {}", updated.body);
    assert_eq!(updated.body["organization_name"], "acme-renamed");
    let deleted = reply(handlers::delete(app, from_str(&fixture("delete", token)).unwrap()).await);
    assert_eq!(deleted.status, 200, "delete.json: {}", deleted.body);
    assert_invariants(&t).await;
    assert!(t.tenant_collections().await.is_empty());

    // The create function's other inputs (their outcomes in detail are in
    // tests/provisioning.rs).
    let provision = |name: &str| deliver(app, serde_json::from_str(&fixture(name, "")).unwrap());
    assert_eq!(
        provision("provision-schedule").await.unwrap()["status"],
        "flushed"
    );
    assert_eq!(
        provision("provision-eventbridge").await.unwrap()["status"],
        "created"
    );
    // No "taken" organization here, so only the invalid message fails.
    let batch = provision("provision-sqs-batch").await.unwrap();
    assert_eq!(
        batch["batchItemFailures"],
        serde_json::json!([{"itemIdentifier": "msg-invalid"}])
    );
    t.drop().await;
}
