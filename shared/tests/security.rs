//! The service as an attacker would read it: provisioning that must never
//! adopt someone else's organization, tokens that die with the credentials
//! they were issued for, bounded bcrypt work, no plaintext passwords on the
//! asynchronous paths, and the abuse limits (password strength, organization
//! cap, creates per source, the per-email login ceiling).

mod support;

use std::time::{Duration, Instant};

use mongodb::bson::{doc, oid::ObjectId, DateTime};
use serde_json::{json, Value};
use shared::handlers;
use shared::secrets::SecretStore;
use shared::store::LoginThrottle;
use support::*;

fn eventbridge(detail: Value) -> Value {
    json!({
        "version": "0", "id": ObjectId::new().to_hex(), "detail-type": "CreateOrganization",
        "source": "billing.example", "account": "123456789012", "time": "2026-12-01T12:00:00Z",
        "region": "us-east-1", "resources": [], "detail": detail
    })
}

/// The same app with its database URI behind a secret in a Secrets Manager
/// that cannot be reached.
async fn with_unreachable_secret_store(t: &TestApp) -> shared::App {
    let unreachable = SecretStore::with_endpoint("http://127.0.0.1:9").await;
    with_database_secret(
        t.app.config.clone(),
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:uri",
        unreachable,
    )
}

async fn admin_doc(t: &TestApp, email: &str) -> mongodb::bson::Document {
    t.database()
        .collection::<mongodb::bson::Document>("admins")
        .find_one(doc! {"email": email})
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no admin {email}"))
}

// ------------------------------------------------------------ provisioning

#[tokio::test]
async fn provisioning_never_adopts_an_organization_someone_registered_first_over_http() {
    let t = TestApp::new().await;
    // The squatter guesses the customer's name and email and signs up first.
    let squatted = t.create("acme", "admin@acme.example").await;
    assert_eq!(squatted.status, 201);
    let before = t.snapshot().await;
    let request = json!({"organization_name": "acme", "email": "admin@acme.example", "password_hash": HASH_COST_5});

    let over_the_bus = deliver(&t.app, eventbridge(request.clone())).await;
    let over_the_queue = deliver(&t.app, sqs(&[("m1", request)])).await.unwrap();

    let err = over_the_bus.expect_err("the bus request must fail into the dead-letter queue");
    assert!(err.contains("organization_exists"), "{err}");
    assert_eq!(failed_messages(&over_the_queue), ["m1"]);
    assert_eq!(
        t.snapshot().await,
        before,
        "the squatted organization is untouched"
    );
    t.drop().await;
}

#[tokio::test]
async fn a_repeated_identical_provisioning_delivery_is_still_a_success() {
    let t = TestApp::new().await;
    let request = json!({"organization_name": "acme", "email": "admin@acme.example", "password_hash": HASH_COST_5});

    let first = deliver(&t.app, eventbridge(request.clone())).await.unwrap();
    let again = deliver(&t.app, eventbridge(request.clone())).await.unwrap();
    let queued = deliver(&t.app, sqs(&[("m1", request.clone())]))
        .await
        .unwrap();
    // Same name and email with another hash is another request: refused.
    let mut other = request;
    other["password_hash"] = json!(HASH_COST_5.replace("keN7", "keN8"));
    let different = deliver(&t.app, sqs(&[("m2", other)])).await.unwrap();

    assert_eq!(first["status"], "created");
    assert_eq!(again["status"], "exists");
    assert!(failed_messages(&queued).is_empty());
    assert_eq!(failed_messages(&different), ["m2"]);
    assert_eq!(t.count("organizations", doc! {}).await, 1);
    t.drop().await;
}

#[tokio::test]
async fn a_plaintext_provisioning_request_is_recognised_again_only_with_its_password() {
    let t = TestApp::configured(|c| c.provisioning_plaintext = true).await;
    let request =
        json!({"organization_name": "acme", "email": "admin@acme.example", "password": PASSWORD});

    let first = deliver(&t.app, eventbridge(request.clone())).await.unwrap();
    let again = deliver(&t.app, eventbridge(request.clone())).await.unwrap();
    let mut other = request;
    other["password"] = json!("another-strong-passphrase-9");
    let different = deliver(&t.app, eventbridge(other)).await;

    assert_eq!(first["status"], "created");
    assert_eq!(again["status"], "exists");
    assert!(different.is_err(), "{different:?}");
    t.drop().await;
}

#[tokio::test]
async fn a_crashed_http_create_is_not_finished_as_a_provisioning_requests_own() {
    let t = TestApp::new().await;
    // A create over HTTP abandoned half-way (its lease long over).
    let long_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
    t.database()
        .collection::<mongodb::bson::Document>("organizations")
        .insert_one(doc! {
            "_id": ObjectId::new(), "name": "acme", "names": ["acme"], "collection_name": "org_acme",
            "admin_id": ObjectId::new(), "created_at": long_ago, "updated_at": long_ago, "state": "creating",
            "pending": { "op_id": ObjectId::new(), "started_at": long_ago,
                         "admin_email": "admin@acme.example", "password_hash": HASH_COST_5 },
        })
        .await
        .unwrap();
    let request = json!({"organization_name": "acme", "email": "admin@acme.example", "password_hash": HASH_COST_5});

    let outcome = deliver(&t.app, eventbridge(request)).await;

    assert!(outcome.is_err(), "adopted: {outcome:?}");
    t.drop().await;
}

#[tokio::test]
async fn plaintext_passwords_are_refused_on_the_queue_and_the_bus_and_never_dead_lettered() {
    let t = TestApp::new().await;
    let request =
        json!({"organization_name": "acme", "email": "admin@acme.example", "password": PASSWORD});

    let queued = deliver(&t.app, sqs(&[("m1", request.clone())]))
        .await
        .unwrap();
    let bussed = deliver(&t.app, eventbridge(request)).await.unwrap();

    assert!(
        failed_messages(&queued).is_empty(),
        "consumed, not retried into the DLQ"
    );
    assert_eq!(bussed["status"], "discarded");
    assert!(!bussed.to_string().contains(PASSWORD));
    assert_eq!(t.count("organizations", doc! {}).await, 0);
    t.drop().await;
}

#[tokio::test]
async fn a_provisioned_hash_above_the_maximum_cost_is_refused_and_login_stays_prompt() {
    let t = TestApp::new().await;
    let at_31 = HASH_COST_5.replace("$05$", "$31$");
    let request =
        json!({"organization_name": "acme", "email": "admin@acme.example", "password_hash": at_31});

    let answer = deliver(&t.app, sqs(&[("m1", request.clone())]))
        .await
        .unwrap();
    let bussed = deliver(&t.app, eventbridge(request)).await;
    let started = Instant::now();
    let login = t.call(login_request("admin@acme.example", PASSWORD)).await;

    assert_eq!(failed_messages(&answer), ["m1"]);
    assert!(bussed.unwrap_err().contains("maximum"));
    assert_eq!(t.count("organizations", doc! {}).await, 0);
    assert_eq!(login.status, 401);
    assert!(started.elapsed() < Duration::from_secs(30), "login hung");
    t.drop().await;
}

#[tokio::test]
async fn a_login_rehashes_an_odd_cost_at_the_services_cost_and_still_works_after() {
    let t = TestApp::new().await;
    let request = json!({"organization_name": "acme", "email": "admin@acme.example", "password_hash": HASH_COST_5});
    deliver(&t.app, eventbridge(request)).await.unwrap();

    t.login("admin@acme.example", PASSWORD).await;
    let rehashed = admin_doc(&t, "admin@acme.example").await;
    t.login("admin@acme.example", PASSWORD).await;

    let hash = rehashed.get_str("password_hash").unwrap();
    assert!(hash.starts_with("$2b$04$"), "{hash}");
    t.drop().await;
}

// ------------------------------------------------------------------ tokens

#[tokio::test]
async fn a_password_change_through_one_token_ends_the_others_and_hands_back_a_fresh_one() {
    let t = TestApp::new().await;
    let (org, first) = t.create_and_login("acme").await;
    let second = t.login("admin@acme.example", PASSWORD).await;

    let changed = t
        .update(
            &first,
            json!({"organization_name": "acme", "password": "a-new-strong-passphrase-7"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let fresh = changed.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(changed.body["token_type"], "bearer");
    assert_eq!(changed.body["organization_id"], org["organization_id"]);

    for stale in [&first, &second] {
        let renamed = t
            .call(update(Some(stale), &json!({"organization_name": "acme-2"})))
            .await;
        let deleted = t.call(delete(Some(stale), "acme")).await;
        let gate = handlers::authorize(&t.app, authorizer_event(stale)).await;
        assert_eq!(renamed.status, 401, "{}", renamed.body);
        assert_eq!(deleted.status, 401, "{}", deleted.body);
        assert!(!gate.is_authorized);
    }
    assert!(
        handlers::authorize(&t.app, authorizer_event(&fresh))
            .await
            .is_authorized
    );
    let renamed = t
        .update(&fresh, json!({"organization_name": "acme-2"}))
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert!(
        renamed.body.get("access_token").is_none(),
        "a rename alone changes no credentials"
    );
    t.login("admin@acme.example", "a-new-strong-passphrase-7")
        .await;
    t.drop().await;
}

#[tokio::test]
async fn an_email_change_ends_the_old_token() {
    let t = TestApp::new().await;
    let (_, old) = t.create_and_login("acme").await;

    let changed = t
        .update(
            &old,
            json!({"organization_name": "acme", "email": "new@acme.example"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let refused = t.call(delete(Some(&old), "acme")).await;
    let fresh = changed.body["access_token"].as_str().unwrap();
    let accepted = t.call(delete(Some(fresh), "acme")).await;

    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    t.drop().await;
}

#[tokio::test]
async fn two_credential_changes_racing_on_one_token_leave_one_winner() {
    let t = TestApp::new().await;
    let (_, token) = t.create_and_login("acme").await;

    let (a, b) = tokio::join!(
        t.call(update(
            Some(&token),
            &json!({"organization_name": "acme", "password": "first-strong-passphrase-1"})
        )),
        t.call(update(
            Some(&token),
            &json!({"organization_name": "acme", "password": "second-strong-passphrase-2"})
        )),
    );

    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 401], "{} / {}", a.body, b.body);
    let admin = admin_doc(&t, "admin@acme.example").await;
    assert_eq!(admin.get_i64("token_version").unwrap(), 1);
    // The loser's entry went with its transaction.
    assert_eq!(
        t.count("audit", doc! {"action": "admin.password_changed"})
            .await,
        1
    );
    t.drop().await;
}

#[tokio::test]
async fn an_old_token_alone_cannot_change_credentials_but_a_current_password_can() {
    // Every token is "old" when the allowed age is zero.
    let t = TestApp::configured(|c| c.credential_change_max_token_age = Duration::ZERO).await;
    let (_, token) = t.create_and_login("acme").await;
    let new_password = "a-new-strong-passphrase-7";

    let stale = t
        .update(
            &token,
            json!({"organization_name": "acme", "password": new_password}),
        )
        .await;
    let wrong = t
        .update(&token, json!({"organization_name": "acme", "password": new_password, "current_password": "not-the-password"})).await;
    let rename_only = t
        .update(&token, json!({"organization_name": "acme-2"}))
        .await;
    let with_current = t
        .update(&token, json!({"organization_name": "acme-2", "password": new_password, "current_password": PASSWORD})).await;

    assert_eq!(stale.status, 401);
    assert_eq!(stale.body["error"]["code"], "reauthentication_required");
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body["error"]["code"], "unauthorized");
    assert!(!wrong.body.to_string().contains("not-the-password"));
    assert_eq!(rename_only.status, 200, "{}", rename_only.body);
    assert_eq!(with_current.status, 200, "{}", with_current.body);
    t.login("admin@acme.example", new_password).await;
    t.drop().await;
}

#[tokio::test]
async fn the_authorizer_lets_the_function_decide_while_the_database_is_unreachable() {
    let t = TestApp::new().await;
    let (_, token) = t.create_and_login("acme").await;
    let app = with_unreachable_secret_store(&t).await;

    let gate = handlers::authorize(&app, authorizer_event(&token)).await;
    let behind = reply(handlers::delete(&app, delete(Some(&token), "acme")).await);

    assert!(gate.is_authorized);
    assert_eq!(behind.status, 503, "{}", behind.body);
    t.drop().await;
}

#[tokio::test]
async fn the_authorizer_lets_a_delete_through_whose_admin_that_delete_already_removed() {
    let t = TestApp::new().await;
    let (org, token) = t.create_and_login("acme").await;
    // A delete that removed the admin and then died.
    let org_id = organization_id(&org);
    t.database()
        .collection::<mongodb::bson::Document>("organizations")
        .update_one(
            doc! {"_id": org_id},
            doc! {"$set": {"state": "deleting", "pending": {"op_id": ObjectId::new(), "started_at": DateTime::now()}}},
        )
        .await
        .unwrap();
    t.database()
        .collection::<mongodb::bson::Document>("admins")
        .delete_one(doc! {"organization_id": org_id})
        .await
        .unwrap();

    let mut retry = authorizer_event(&token);
    retry.route_key = Some("DELETE /org/delete".into());
    let gate_delete = handlers::authorize(&t.app, retry).await;
    let gate_update = handlers::authorize(&t.app, authorizer_event(&token)).await;

    assert!(
        gate_delete.is_authorized,
        "the delete's retry reaches the function"
    );
    assert!(!gate_update.is_authorized, "nothing else does");
    t.drop().await;
}

// ------------------------------------------------------------ abuse limits

#[tokio::test]
async fn a_guessable_password_is_refused_with_the_reason_on_create_and_on_change() {
    let t = TestApp::new().await;
    let weak = t
        .call(post("/org/create", &json!({"organization_name": "acme", "email": "a@acme.example", "password": "password123"})))
        .await;
    let named = t
        .call(post("/org/create", &json!({"organization_name": "acme", "email": "a@acme.example", "password": "acme-a@acme.example"})))
        .await;
    let (_, token) = t.create_and_login("other").await;
    let change = t
        .update(
            &token,
            json!({"organization_name": "other", "password": "qwerty12345"}),
        )
        .await;

    for r in [&weak, &named, &change] {
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(r.body["error"]["field"], "password");
        assert!(r.error_message().contains("too easy to guess"));
    }
    assert_eq!(t.count("organizations", doc! {"name": "acme"}).await, 0);
    t.drop().await;
}

#[tokio::test]
async fn the_organization_cap_refuses_creates_past_it_with_a_clear_code() {
    let t = TestApp::configured(|c| c.limits.max_organizations = Some(2)).await;
    t.create("one", "a@one.example").await;
    t.create("two", "a@two.example").await;

    let third = t.create("three", "a@three.example").await;
    let provisioned = deliver(
        &t.app,
        eventbridge(json!({"organization_name": "four", "email": "a@four.example", "password_hash": HASH_COST_5})),
    )
    .await;

    assert_eq!(third.status, 409, "{}", third.body);
    assert_eq!(third.body["error"]["code"], "organization_limit_reached");
    assert!(provisioned
        .unwrap_err()
        .contains("organization_limit_reached"));
    assert_eq!(t.count("organizations", doc! {}).await, 2);
    t.drop().await;
}

fn create_from(ip: &str, name: &str) -> shared::lambda_http::Request {
    let body = json!({"organization_name": name, "email": format!("a@{name}.example"), "password": PASSWORD})
        .to_string();
    let ev = event_json("POST", "/org/create", &[], Some(&body), None).replace("192.0.2.1", ip);
    shared::lambda_http::request::from_str(&ev).unwrap()
}

#[tokio::test]
async fn one_source_may_create_only_so_many_organizations_an_hour() {
    let t = TestApp::configured(|c| c.limits.creates_per_source_per_hour = Some(2)).await;
    for name in ["one", "two"] {
        assert_eq!(t.call(create_from("198.51.100.7", name)).await.status, 201);
    }

    let third = t.call(create_from("198.51.100.7", "three")).await;
    let elsewhere = t.call(create_from("203.0.113.9", "four")).await;

    assert_eq!(third.status, 429, "{}", third.body);
    let retry_after: u64 = third.retry_after();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(elsewhere.status, 201, "{}", elsewhere.body);
    t.drop().await;
}

#[tokio::test]
async fn guessing_from_many_addresses_locks_the_email_only_for_a_bounded_time_and_never_cheaply() {
    let policy = LoginThrottle {
        per_email_max_failures: 4,
        per_email_lock: Duration::from_secs(2),
        ..LoginThrottle::default()
    };
    let t = TestApp::throttled(policy).await;
    t.create("acme", "a@acme.example").await;
    let victim = "192.0.2.200";
    let guess_from = |ip: &str| t.call(login_from(ip, "a@acme.example", "wrong-guess"));
    let victim_login = || t.call(login_from(victim, "a@acme.example", PASSWORD));
    // A stranger's few failures from one address lock nobody else.
    for _ in 0..3 {
        guess_from("198.51.100.1").await;
    }
    assert_eq!(victim_login().await.status, 200);

    // The ceiling reached from many addresses locks the email everywhere...
    guess_from("198.51.100.2").await;
    let locked = victim_login().await;
    assert_eq!(locked.status, 429, "{}", locked.body);
    let retry_after: u64 = locked.retry_after();
    assert!((1..=2).contains(&retry_after), "{retry_after}");

    // ...for the lock only, and one more failure after it locks nothing.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    guess_from("198.51.100.3").await;
    assert_eq!(victim_login().await.status, 200);
    t.drop().await;
}

// ------------------------------------------------------------ the rest

#[tokio::test]
async fn an_email_is_one_account_however_its_domain_and_accents_are_written() {
    let t = TestApp::new().await;
    let created = t.create("acme", "Ren\u{e9}@B\u{fc}cher.example").await;
    assert_eq!(created.status, 201, "{}", created.body);

    let twin = t
        .create("acme-2", "rene\u{301}@xn--bcher-kva.example")
        .await;
    t.login("ren\u{e9}@xn--bcher-kva.example", PASSWORD).await;

    assert_eq!(twin.status, 409, "{}", twin.body);
    assert_eq!(twin.body["error"]["code"], "email_taken");
    t.drop().await;
}

#[tokio::test]
async fn a_malformed_name_is_a_422_even_with_the_secret_store_unreachable() {
    let t = TestApp::new().await;
    let app = with_unreachable_secret_store(&t).await;
    let token = t.create_and_login("acme").await.1;

    let created = reply(
        handlers::create(
            &app,
            post("/org/create", &json!({"organization_name": "bad name!", "email": "a@x.example", "password": PASSWORD})),
        )
        .await,
    );
    let got = reply(handlers::get(&app, get_org("bad name!")).await);
    let updated = reply(
        handlers::update(
            &app,
            update(Some(&token), &json!({"organization_name": "bad name!"})),
        )
        .await,
    );
    let deleted = reply(handlers::delete(&app, delete(Some(&token), "bad name!")).await);

    for r in [created, got, updated, deleted] {
        assert_eq!(r.status, 422, "{}", r.body);
    }
    t.drop().await;
}
