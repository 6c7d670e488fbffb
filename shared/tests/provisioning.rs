//! Provisioning from other AWS services (EventBridge, SQS) through the create
//! function's dispatch, idempotency (repeated deliveries, `Idempotency-Key`),
//! and lifecycle events out to a local EventBridge endpoint (moto, named by
//! `AWS_ENDPOINT_URL`; `make test` starts it).

mod support;

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use serde_json::{json, Value};
use shared::domain::OrgName;
use shared::events::{self, Publisher};
use shared::store::CredentialChange;
use support::*;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn an_eventbridge_request_creates_the_organization_once_however_often_it_arrives() {
    let t = TestApp::new().await;
    let event = fixture("provision-eventbridge");

    let first = deliver(&t.app, event.clone()).await.unwrap();
    let again = deliver(&t.app, event.clone()).await.unwrap();

    assert_eq!(first["status"], "created");
    assert_eq!(again["status"], "exists");
    assert_eq!(again["organization_id"], first["organization_id"]);
    assert_eq!(t.count("organizations", doc! {}).await, 1);
    t.login("admin@evb-acme.example", PASSWORD).await;
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn an_sqs_batch_reports_only_its_failed_messages() {
    let t = TestApp::new().await;
    assert_eq!(t.create("taken", "owner@taken.example").await.status, 201);

    let answer = deliver(&t.app, fixture("provision-sqs-batch"))
        .await
        .unwrap();

    assert_eq!(failed_messages(&answer), ["msg-existing", "msg-invalid"]);
    let mut names: Vec<String> = t
        .all("organizations")
        .await
        .iter()
        .map(|o| o.get_str("name").unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["sqs-good", "sqs-wrapped", "taken"]);
    // The wrapped request carried a hash computed upstream: stored as given.
    let wrapped = t
        .all("admins")
        .await
        .into_iter()
        .find(|a| a.get_str("email").unwrap() == "admin@sqs-wrapped.example")
        .unwrap();
    assert!(wrapped
        .get_str("password_hash")
        .unwrap()
        .starts_with("$2b$12$NDzQUhOj"));
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn a_message_delivered_again_is_a_success_not_a_retry() {
    let t = TestApp::new().await;
    let batch = fixture("provision-sqs-batch");
    let mut good = batch.clone();
    good["Records"] = json!([batch["Records"][0].clone()]);

    let first = deliver(&t.app, good.clone()).await.unwrap();
    let redelivered = deliver(&t.app, good).await.unwrap();

    assert_eq!(failed_messages(&first), Vec::<String>::new());
    assert_eq!(failed_messages(&redelivered), Vec::<String>::new());
    assert_eq!(t.count("organizations", doc! {"name": "sqs-good"}).await, 1);
    t.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_deliveries_of_one_event_make_one_organization() {
    let t = TestApp::concurrent().await;
    let event = fixture("provision-eventbridge");

    let results =
        futures_util::future::join_all((0..10).map(|_| deliver(&t.app, event.clone()))).await;
    // Deliveries that met the creation in progress failed, so the platform
    // retries them; a retry is a success.
    for result in &results {
        if let Err(e) = result {
            assert!(
                e.contains("operation_in_progress") || e.contains("organization_exists"),
                "{e}"
            );
            let retried = deliver(&t.app, event.clone()).await.unwrap();
            assert_eq!(retried["status"], "exists");
        }
    }

    assert!(results.iter().filter(|r| r.is_ok()).count() >= 1);
    assert_eq!(t.count("organizations", doc! {}).await, 1);
    assert_eq!(t.count("admins", doc! {}).await, 1);
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn invalid_provisioning_requests_fail_with_a_reason_and_create_nothing() {
    let t = TestApp::new().await;
    let base = fixture("provision-eventbridge");
    let details = [
        json!({"organization_name": "x", "email": "a@x.example"}),
        json!({"organization_name": "x", "email": "a@x.example", "password": PASSWORD, "password_hash": "$2b$04$C6UzMDM.H6dfI/f/IKxGhuTqbUJkUBvDJNvLeSDYGOHTsGaKpwKsC"}),
        json!({"organization_name": "x", "email": "a@x.example", "password_hash": "plaintext-pretending"}),
        json!({"organization_name": {"$ne": ""}, "email": "a@x.example", "password": PASSWORD}),
        json!({"organization_name": "x", "email": "a@x.example", "password": PASSWORD, "role": "root"}),
        json!("not an object"),
    ];
    for detail in details {
        let mut event = base.clone();
        event["detail"] = detail.clone();
        let err = deliver(&t.app, event).await.unwrap_err();
        assert!(err.contains("invalid_field"), "{detail}: {err}");
        assert!(
            !err.contains(PASSWORD) && !err.contains("plaintext-pretending"),
            "{err}"
        );
    }
    assert!(deliver(&t.app, json!({"unknown": "shape"})).await.is_err());
    assert_eq!(t.count("organizations", doc! {}).await, 0);
    t.drop().await;
}

#[tokio::test]
async fn the_http_route_still_works_through_the_create_functions_dispatch() {
    let t = TestApp::new().await;
    let body = json!({"organization_name": "via-http", "email": "a@via-http.example", "password": PASSWORD}).to_string();
    let payload: Value =
        serde_json::from_str(&event_json("POST", "/org/create", &[], Some(&body), None)).unwrap();

    let answer = deliver(&t.app, payload).await.unwrap();

    assert_eq!(answer["statusCode"], 201);
    let org: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(org["organization_name"], "via-http");
    assert_eq!(answer["headers"]["content-type"], "application/json");
    t.drop().await;
}

// ------------------------------------------------------------ Idempotency-Key

fn create_with_key(key: &str, name: &str, email: &str) -> shared::lambda_http::Request {
    let mut req = post(
        "/org/create",
        &json!({"organization_name": name, "email": email, "password": PASSWORD}),
    );
    req.headers_mut()
        .insert("idempotency-key", key.parse().unwrap());
    req
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_replays_the_first_response() {
    let t = TestApp::new().await;

    let first = t
        .call(create_with_key("key-1", "acme", "a@acme.example"))
        .await;
    let replay = t
        .call(create_with_key("key-1", "acme", "a@acme.example"))
        .await;

    assert_eq!(first.status, 201);
    assert_eq!(replay.status, 201, "{}", replay.body);
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.response.headers()["idempotent-replayed"], "true");
    assert_eq!(t.count("organizations", doc! {}).await, 1);
    // Without the key the same body is an ordinary conflict.
    assert_eq!(t.create("acme", "a@acme.example").await.status, 409);
    t.drop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_body_is_422_and_changes_nothing() {
    let t = TestApp::new().await;
    t.call(create_with_key("key-2", "acme", "a@acme.example"))
        .await;
    let before = t.snapshot().await;

    let other = t
        .call(create_with_key("key-2", "other", "b@other.example"))
        .await;
    let bad_key = t
        .call(create_with_key(
            &"k".repeat(256),
            "third",
            "c@third.example",
        ))
        .await;

    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(other.body["error"]["field"], "idempotency-key");
    assert_eq!(bad_key.status, 422);
    let mut not_ascii = create_with_key("placeholder", "fourth", "d@fourth.example");
    not_ascii.headers_mut().insert(
        "idempotency-key",
        shared::http::HeaderValue::from_bytes(b"k\xe9y").unwrap(),
    );
    assert_eq!(
        t.call(not_ascii).await.status,
        422,
        "a key that is not ASCII is refused, not ignored"
    );
    assert_eq!(t.snapshot().await, before);
    let records = t.all("idempotency").await;
    assert_eq!(records.len(), 1);
    assert!(
        !records[0].to_string().contains(PASSWORD),
        "no password in the record"
    );
    t.drop().await;
}

// ------------------------------------------------------------ events out

/// A bus of the test's own, with a queue that receives every event the
/// service publishes on it.
struct Listener {
    bus: String,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Listener {
    async fn new() -> Self {
        let bus = format!("bus-{}", fresh_db_name());
        let sdk = shared::aws::load(None).await;
        let eb = aws_sdk_eventbridge::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        eb.create_event_bus().name(&bus).send().await.unwrap();
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("{bus}-q"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        eb.put_rule()
            .name(format!("{bus}-all"))
            .event_bus_name(&bus)
            .event_pattern(json!({"source": [events::SOURCE]}).to_string())
            .send()
            .await
            .unwrap();
        eb.put_targets()
            .rule(format!("{bus}-all"))
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("q")
                    .arn(queue_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        Self {
            bus,
            sqs,
            queue_url,
        }
    }

    /// The events on the queue, once `want` of them have arrived (or about
    /// two seconds have passed).
    async fn received(&self, want: usize) -> Vec<Value> {
        let mut out = Vec::new();
        for _ in 0..20 {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            for m in got.messages.unwrap_or_default() {
                out.push(serde_json::from_str(m.body.as_deref().unwrap()).unwrap());
            }
            if out.len() >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        out
    }
}

async fn app_with_events(endpoint: Option<&str>, bus: &str) -> TestApp {
    let sdk = shared::aws::load(endpoint).await;
    app_publishing(bus, Some(Publisher::new(&sdk, bus))).await
}

/// An app that records lifecycle events for `bus` and publishes them with
/// `publisher` (none: they wait in the outbox for a flush).
async fn app_publishing(bus: &str, publisher: Option<Publisher>) -> TestApp {
    let mut t = TestApp::new().await;
    let mut config = t.app.config.clone();
    config.event_bus = Some(bus.to_owned());
    t.app = t
        .app_with(config, |store| store.with_events(true))
        .await
        .with_publisher(publisher);
    t
}

/// The `detail-type` of each event, in order.
fn detail_types(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["detail-type"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn created_renamed_and_deleted_are_published_with_ids_names_and_no_secret() {
    let listener = Listener::new().await;
    let t = app_with_events(None, &listener.bus).await;

    let (org, token) = t.create_and_login("acme").await;
    let updated = t
        .update(
            &token,
            json!({"organization_name": "acme-two", "password": "another-secret"}),
        )
        .await;
    assert_eq!(updated.status, 200);
    // The password change ended the old token and handed back a new one.
    let token = updated.body["access_token"].as_str().unwrap();
    assert_eq!(t.call(delete(Some(token), "acme-two")).await.status, 200);

    let messages = listener.received(3).await;
    assert_eq!(
        detail_types(&messages),
        [events::CREATED, events::RENAMED, events::DELETED]
    );
    for m in &messages {
        assert_eq!(m["source"], events::SOURCE);
        assert_eq!(m["detail"]["organization_id"], org["organization_id"]);
        assert!(m["detail"]["event_id"].is_string() && m["detail"]["occurred_at"].is_string());
        let text = m.to_string();
        assert!(
            !text.contains(PASSWORD) && !text.contains("another-secret") && !text.contains("$2b$"),
            "{text}"
        );
    }
    assert_eq!(messages[1]["detail"]["previous_name"], "acme");
    assert_eq!(messages[1]["detail"]["organization_name"], "acme-two");
    assert_eq!(t.count("outbox", doc! {"published_at": null}).await, 0);
    t.drop().await;
}

#[tokio::test]
async fn a_publishing_failure_keeps_the_operation_and_the_event_waits_until_delivered() {
    let listener = Listener::new().await;
    let t = app_with_events(Some("http://127.0.0.1:9"), &listener.bus).await;

    let created = t.create("acme", "a@acme.example").await;

    assert_eq!(created.status, 201, "the operation stands");
    assert_eq!(t.call(get_org("acme")).await.status, 200);
    let pending = t.all("outbox").await;
    assert_eq!(pending.len(), 1);
    assert!(pending[0].get("published_at").is_none());
    assert_eq!(pending[0].get_i32("attempts").unwrap(), 1);

    // The endpoint is back; after the back-off a flush delivers it.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let sdk = shared::aws::load(None).await;
    let flushed = events::flush(
        t.app.store().await.unwrap(),
        &Publisher::new(&sdk, &listener.bus),
    )
    .await
    .unwrap();
    assert_eq!(flushed.published, 1);
    let messages = listener.received(1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["detail-type"], events::CREATED);
    assert_eq!(t.count("outbox", doc! {"published_at": null}).await, 0);
    t.drop().await;
}

#[tokio::test]
async fn one_scheduled_flush_drains_a_backlog_larger_than_a_batch_and_stops_at_a_failing_bus() {
    let listener = Listener::new().await;
    // Nothing publishes on the requests' behalf: every event waits.
    let t = app_publishing(&listener.bus, None).await;
    let backlog = 2 * events::BATCH + 5;
    for i in 0..backlog {
        let created = t
            .create(&format!("org-{i}"), &format!("a{i}@org.example"))
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
    }
    assert_eq!(
        t.count("outbox", doc! {"published_at": null}).await,
        backlog as u64
    );
    let store = t.app.store().await.unwrap();
    let ready = || async {
        t.database()
            .collection::<Document>("outbox")
            .update_many(
                doc! {},
                doc! { "$set": { "available_at": DateTime::from_millis(0) } },
            )
            .await
            .unwrap();
    };

    // EventBridge still unreachable: one batch fails, and the run stops
    // there rather than send every batch into the outage.
    ready().await;
    let down = Publisher::new(
        &shared::aws::load(Some("http://127.0.0.1:9")).await,
        &listener.bus,
    );
    let failed = events::flush(store, &down).await.unwrap();
    assert_eq!((failed.published, failed.failed), (0, events::BATCH));

    // Back: one run publishes the whole backlog.
    ready().await;
    let up = Publisher::new(&shared::aws::load(None).await, &listener.bus);
    let flushed = events::flush(store, &up).await.unwrap();
    assert_eq!((flushed.published, flushed.failed), (backlog, 0));
    assert_eq!(t.count("outbox", doc! {"published_at": null}).await, 0);
    assert_eq!(listener.received(backlog).await.len(), backlog);
    t.drop().await;
}

#[tokio::test]
async fn an_event_its_request_never_published_is_held_then_sent_by_the_scheduled_flush() {
    let listener = Listener::new().await;
    let t = app_with_events(None, &listener.bus).await;
    let (org, _) = t.create_and_login("acme").await;
    let store = t.app.store().await.unwrap();
    let publisher = Publisher::new(&shared::aws::load(None).await, &listener.bus);
    let id = |key: &str| ObjectId::parse_str(org[key].as_str().unwrap()).unwrap();

    // The rename finishes and records its event, and its request dies before
    // publishing it (the event is dropped here unsent).
    let done = store
        .update_org(
            id("organization_id"),
            id("admin_id"),
            &OrgName::parse("acme-two", store.tenant_db()).unwrap(),
            CredentialChange::default(),
            &shared::store::AuditContext::system("test"),
        )
        .await
        .unwrap();
    let held = done.finished.event.expect("the rename wrote its event");

    let early = events::flush(store, &publisher).await.unwrap();
    assert_eq!(
        early,
        events::Flushed::default(),
        "held: nobody takes it yet"
    );
    assert_eq!(t.count("outbox", doc! {"published_at": null}).await, 1);

    // Once the hold has run out, the scheduled flush sends it.
    t.database()
        .collection::<Document>("outbox")
        .update_one(
            doc! { "_id": held.id },
            doc! { "$set": { "available_at": DateTime::from_millis(0) } },
        )
        .await
        .unwrap();
    let late = events::flush(store, &publisher).await.unwrap();
    assert_eq!(late.published, 1);
    let messages = listener.received(2).await;
    assert_eq!(detail_types(&messages), [events::CREATED, events::RENAMED]);
    assert_eq!(messages[1]["detail"]["event_id"], held.id.to_hex());
    assert_eq!(t.count("outbox", doc! {"published_at": null}).await, 0);
    t.drop().await;
}
