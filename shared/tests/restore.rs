//! Deletion you can undo: a delete keeps the organization restorable for
//! `DELETED_RETENTION_DAYS` (its name free at once), `POST /org/restore`
//! brings it back with its data, the hourly purge makes it final. Races
//! between them; the crash tests are in `crash.rs`.

mod support;

use mongodb::bson::doc;
use serde_json::json;
use support::*;

const EMAIL: &str = "admin@acme.example";

/// An organization "acme" with `docs` tenant documents, deleted.
async fn deleted_acme(t: &TestApp, docs: i64) -> (serde_json::Value, String) {
    let (org, token) = t.create_and_login("acme").await;
    fill_tenant(t, "org_acme", docs).await;
    let deleted = t.call(delete(Some(&token), "acme")).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    (org, token)
}

async fn tenant_count(t: &TestApp, collection: &str) -> u64 {
    t.count(collection, doc! {}).await
}

#[tokio::test]
async fn a_deleted_organization_is_gone_for_everyone_but_its_data_waits_under_its_id() {
    let t = TestApp::new().await;
    let (org, token) = t.create_and_login("acme").await;
    fill_tenant(&t, "org_acme", 25).await;

    let deleted = t.call(delete(Some(&token), "acme")).await;

    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body["status"], "deleted");
    assert_eq!(deleted.body["organization"], org);
    assert_eq!(t.call(get_org("acme")).await.status, 404);
    let login = t.call(login_request(EMAIL, PASSWORD)).await;
    let unknown = t.call(login_request("nobody@acme.example", PASSWORD)).await;
    assert_eq!(login.status, 401);
    assert_eq!(
        login.body, unknown.body,
        "no difference from an unknown email"
    );
    let stale = t
        .update(&token, json!({"organization_name": "acme-2"}))
        .await;
    assert_eq!(stale.status, 401, "{}", stale.body);
    let holding = format!("deleted_{}", org["organization_id"].as_str().unwrap());
    assert_eq!(
        t.holding_collections().await,
        std::slice::from_ref(&holding)
    );
    assert_eq!(tenant_count(&t, &holding).await, 25);
    let record = &t.all("deleted_organizations").await[0];
    let deleted_at = record
        .get_datetime("deleted_at")
        .unwrap()
        .timestamp_millis();
    let purge_after = record
        .get_datetime("purge_after")
        .unwrap()
        .timestamp_millis();
    assert_eq!(
        purge_after - deleted_at,
        30 * 86_400 * 1_000,
        "the default 30 days"
    );
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn the_name_and_the_email_are_free_at_once() {
    let t = TestApp::new().await;
    deleted_acme(&t, 1).await;

    let again = t.create("acme", EMAIL).await;

    assert_eq!(again.status, 201, "{}", again.body);
    t.login(EMAIL, PASSWORD).await;
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn a_restore_brings_the_organization_back_with_its_data_and_no_old_session() {
    let t = TestApp::new().await;
    let (org, old_token) = deleted_acme(&t, 40).await;

    let restored = t.restore("acme", EMAIL, PASSWORD).await;

    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_eq!(restored.body, org, "the same organization, id and all");
    assert_eq!(t.call(get_org("acme")).await.status, 200);
    assert_eq!(tenant_count(&t, "org_acme").await, 40);
    let indexes = t.index_names("org_acme").await;
    assert!(indexes.contains(&"sku_unique".to_owned()), "{indexes:?}");
    let stale = t
        .update(&old_token, json!({"organization_name": "acme-2"}))
        .await;
    assert_eq!(
        stale.status, 401,
        "a token from before the delete stays dead"
    );
    let token = t.login(EMAIL, PASSWORD).await;
    let renamed = t
        .update(&token, json!({"organization_name": "acme-2"}))
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(t.count("deleted_organizations", doc! {}).await, 0);
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn a_restore_whose_name_was_taken_since_needs_a_new_name_and_then_uses_it() {
    let t = TestApp::new().await;
    let (org, _) = deleted_acme(&t, 10).await;
    assert_eq!(t.create("acme", "newcomer@acme.example").await.status, 201);

    let refused = t.restore("acme", EMAIL, PASSWORD).await;
    let taken_too = t
        .call(restore_request("acme", EMAIL, PASSWORD, Some("acme")))
        .await;
    let restored = t
        .call(restore_request("acme", EMAIL, PASSWORD, Some("acme-old")))
        .await;

    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "restore_name_taken");
    assert!(refused.error_message().contains("new_organization_name"));
    assert_eq!(taken_too.status, 409, "{}", taken_too.body);
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_eq!(restored.body["organization_id"], org["organization_id"]);
    assert_eq!(restored.body["organization_name"], "acme-old");
    assert_eq!(restored.body["collection_name"], "org_acme-old");
    assert_eq!(tenant_count(&t, "org_acme-old").await, 10);
    assert_eq!(tenant_count(&t, "org_acme").await, 0, "the newcomer's own");
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn a_restore_whose_email_belongs_to_another_admin_now_is_a_409_and_stays_restorable() {
    let t = TestApp::new().await;
    deleted_acme(&t, 1).await;
    assert_eq!(t.create("other", EMAIL).await.status, 201);

    let refused = t.restore("acme", EMAIL, PASSWORD).await;

    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "email_taken");
    assert_eq!(t.call(get_org("acme")).await.status, 404);
    assert_eq!(
        t.count("deleted_organizations", doc! {"state": "deleted"})
            .await,
        1
    );
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn wrong_credentials_a_live_organization_and_a_purged_one_are_the_same_404() {
    let t = TestApp::new().await;
    deleted_acme(&t, 1).await;
    t.create_and_login("live").await;

    let wrong_password = t.restore("acme", EMAIL, "not-the-password").await;
    let wrong_email = t.restore("acme", "someone@acme.example", PASSWORD).await;
    let live = t.restore("live", "admin@live.example", PASSWORD).await;
    t.expire_retention().await;
    let past_retention = t.restore("acme", EMAIL, PASSWORD).await;
    let report = t.app.purge().await.unwrap();
    let purged = t.restore("acme", EMAIL, PASSWORD).await;

    assert_eq!(report.purged, 1);
    for reply in [
        &wrong_password,
        &wrong_email,
        &live,
        &past_retention,
        &purged,
    ] {
        assert_eq!(reply.status, 404, "{}", reply.body);
        assert_eq!(reply.body, wrong_password.body);
    }
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn restore_attempts_are_throttled_with_the_logins_of_that_email() {
    let t = TestApp::locking_after(3).await;
    deleted_acme(&t, 1).await;

    for _ in 0..3 {
        assert_eq!(
            t.restore("acme", EMAIL, "not-the-password").await.status,
            404
        );
    }
    let throttled = t.restore("acme", EMAIL, PASSWORD).await;

    assert_eq!(throttled.status, 429, "{}", throttled.body);
    assert!(throttled.response.headers().contains_key("retry-after"));
    assert_eq!(
        t.call(get_org("acme")).await.status,
        404,
        "nothing restored"
    );
    t.drop().await;
}

#[tokio::test]
async fn bad_restore_input_is_a_4xx_and_changes_nothing() {
    let t = TestApp::new().await;
    deleted_acme(&t, 1).await;
    let before = (t.snapshot().await, t.all("deleted_organizations").await);

    let cases = [
        (json!({"organization_name": "acme", "email": EMAIL}), 422),
        (
            json!({"organization_name": "Bad Name!", "email": EMAIL, "password": PASSWORD}),
            422,
        ),
        (
            json!({"organization_name": "acme", "email": "not-an-email", "password": PASSWORD}),
            422,
        ),
        (
            json!({"organization_name": "acme", "email": EMAIL, "password": PASSWORD,
                "new_organization_name": "x y"}),
            422,
        ),
        (
            json!({"organization_name": "acme", "email": EMAIL, "password": PASSWORD, "extra": 1}),
            422,
        ),
    ];
    for (body, status) in cases {
        let r = t.call(post("/org/restore", &body)).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.body["error"]["code"].is_string(), "{}", r.body);
    }
    let malformed = t.call(post_raw("/org/restore", "{not json")).await;
    assert_eq!(malformed.status, 400);

    assert_eq!(
        before,
        (t.snapshot().await, t.all("deleted_organizations").await)
    );
    t.drop().await;
}

#[tokio::test]
async fn a_purge_removes_what_is_past_its_retention_and_nothing_else() {
    let t = TestApp::new().await;
    deleted_acme(&t, 5).await;
    let (_, token) = t.create_and_login("young").await;
    t.expire_retention().await;
    // Deleted after the clock moved: still within its retention.
    assert_eq!(t.call(delete(Some(&token), "young")).await.status, 200);
    t.create_and_login("live").await;

    let first = t.app.purge().await.unwrap();
    let second = t.app.purge().await.unwrap();

    assert_eq!((first.purged, first.more), (1, false));
    assert_eq!(second.purged, 0, "idempotent");
    let left = t.all("deleted_organizations").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].get_str("name").unwrap(), "young");
    assert_eq!(t.holding_collections().await.len(), 1);
    assert_eq!(
        t.restore("young", "admin@young.example", PASSWORD)
            .await
            .status,
        200
    );
    assert_eq!(t.call(get_org("live")).await.status, 200);
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn a_purge_run_does_a_bounded_batch_and_says_there_is_more() {
    let t = TestApp::new().await;
    for i in 0..5 {
        let name = format!("org-{i}");
        let (_, token) = t.create_and_login(&name).await;
        assert_eq!(t.call(delete(Some(&token), &name)).await.status, 200);
    }
    t.expire_retention().await;
    let store = t.app.store().await.unwrap();

    let first = store.purge_due(2).await.unwrap();
    let second = store.purge_due(2).await.unwrap();
    let third = store.purge_due(2).await.unwrap();

    assert_eq!((first.purged, first.more), (2, true));
    assert_eq!((second.purged, second.more), (2, true));
    assert_eq!((third.purged, third.more), (1, false));
    assert_eq!(t.count("deleted_organizations", doc! {}).await, 0);
    assert!(t.holding_collections().await.is_empty());
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn with_no_retention_a_delete_removes_everything_at_once() {
    let t = TestApp::configured(|c| c.deleted_retention = None).await;
    let (_, token) = t.create_and_login("acme").await;
    fill_tenant(&t, "org_acme", 5).await;

    assert_eq!(t.call(delete(Some(&token), "acme")).await.status, 200);

    assert_eq!(t.count("deleted_organizations", doc! {}).await, 0);
    assert!(t.holding_collections().await.is_empty());
    assert!(t.tenant_collections().await.is_empty());
    assert_eq!(t.restore("acme", EMAIL, PASSWORD).await.status, 404);
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn a_deleted_restored_and_deleted_again_organization_is_restorable_again() {
    let t = TestApp::new().await;
    let (org, _) = deleted_acme(&t, 3).await;
    assert_eq!(t.restore("acme", EMAIL, PASSWORD).await.status, 200);
    let token = t.login(EMAIL, PASSWORD).await;
    assert_eq!(t.call(delete(Some(&token), "acme")).await.status, 200);

    let again = t.restore("acme", EMAIL, PASSWORD).await;

    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["organization_id"], org["organization_id"]);
    assert_eq!(tenant_count(&t, "org_acme").await, 3);
    assert_invariants(&t).await;
    t.drop().await;
}

// ------------------------------------------------------------------ races

#[tokio::test]
async fn a_restore_and_a_create_of_the_same_name_at_once_leave_one_owner() {
    for _ in 0..5 {
        let t = TestApp::concurrent().await;
        deleted_acme(&t, 5).await;

        let (restored, created) = tokio::join!(
            t.restore("acme", EMAIL, PASSWORD),
            t.create("acme", "newcomer@acme.example"),
        );

        match (restored.status, created.status) {
            (200, 409) => assert_eq!(tenant_count(&t, "org_acme").await, 5),
            (409, 201) => {
                assert_eq!(restored.body["error"]["code"], "restore_name_taken");
                assert_eq!(tenant_count(&t, "org_acme").await, 0);
                assert_eq!(t.holding_collections().await.len(), 1, "still restorable");
            }
            other => panic!("{other:?}: {} / {}", restored.body, created.body),
        }
        assert_invariants(&t).await;
        t.drop().await;
    }
}

#[tokio::test]
async fn two_restores_at_once_restore_once() {
    for _ in 0..5 {
        let t = TestApp::concurrent().await;
        deleted_acme(&t, 5).await;

        let (a, b) = tokio::join!(
            t.restore("acme", EMAIL, PASSWORD),
            t.restore("acme", EMAIL, PASSWORD),
        );

        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert!(
            statuses == [200, 200] || statuses == [200, 404] || statuses == [200, 409],
            "{statuses:?}: {} / {}",
            a.body,
            b.body
        );
        assert_eq!(tenant_count(&t, "org_acme").await, 5);
        assert_eq!(t.count("admins", doc! {"email": EMAIL}).await, 1);
        assert_invariants(&t).await;
        t.drop().await;
    }
}

#[tokio::test]
async fn a_restore_and_a_purge_at_once_leave_it_either_back_or_gone() {
    for _ in 0..5 {
        let t = TestApp::concurrent().await;
        deleted_acme(&t, 5).await;
        // Due for the purge, and still restorable for a moment.
        t.purge_in(300).await;
        let store = t.app.store().await.unwrap();

        let (restored, purged) = tokio::join!(t.restore("acme", EMAIL, PASSWORD), async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            store.purge_due(10).await.unwrap()
        });

        match (restored.status, purged.purged) {
            (200, 0) => assert_eq!(tenant_count(&t, "org_acme").await, 5),
            (404, 1) => assert!(t.holding_collections().await.is_empty()),
            other => panic!("{other:?}: {}", restored.body),
        }
        assert_invariants(&t).await;
        t.drop().await;
    }
}
