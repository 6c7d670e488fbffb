//! Nothing lost, nothing half-made: every lifecycle operation is killed at each
//! of its failpoints in a child process (as a Lambda dies at its timeout), then
//! retried, and the invariants are checked against the database. Also: the
//! database stopped mid-operation and for a whole request.
//!
//! Needs the `failpoints` feature (`make test` enables it) for the child binary.

#![cfg(feature = "failpoints")]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mongodb::bson::doc;
use serde_json::json;
use shared::failpoint;
use support::*;

const TENANT_DOCS: i64 = 1_000;

fn child_command(uri: &str, db: &str, event: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crash-child"));
    cmd.env("CHILD_EVENT", event)
        .env("MONGODB_URI", uri)
        .env("MASTER_DB", db)
        .env("JWT_SECRET", JWT_SECRET)
        .env("BCRYPT_COST", "4")
        .env("CREATE_LIMIT_PER_SOURCE_PER_HOUR", "0")
        // Past its lease at once, so the retry finishes it without waiting.
        .env("OPERATION_LEASE_SECS", "0")
        .env("MONGODB_TIMEOUT_MS", "1000")
        .env("RUST_LOG", "error")
        .env_remove(failpoint::ENV)
        .env_remove(failpoint::ACTION_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

/// Runs `event` in a child that dies at `failpoint`; asserts that it died.
/// `env`: variables of the child's own (its function's configuration).
fn run_until_killed(t: &TestApp, event: &str, failpoint: &str, env: &[(&str, &str)]) {
    let out = child_command(&mongodb_uri(), &t.db, event)
        .env(failpoint::ENV, failpoint)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the child passed {failpoint} without dying: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The action has exactly one audit entry, however often its steps ran.
async fn assert_audited_once(t: &TestApp, action: &str, point: &str) {
    assert_eq!(
        t.count("audit", doc! {"action": action}).await,
        1,
        "{point}: entries of {action}"
    );
}

async fn lease_zero_app() -> TestApp {
    TestApp::with(|c| c.operation_lease = Duration::ZERO).await
}

fn failpoints(prefix: &str) -> Vec<&'static str> {
    let points: Vec<_> = failpoint::ALL
        .iter()
        .copied()
        .filter(|p| p.starts_with(prefix))
        .collect();
    assert!(!points.is_empty());
    points
}

async fn assert_tenant_intact(t: &TestApp, collection: &str) {
    assert_eq!(
        t.count(collection, doc! {}).await,
        TENANT_DOCS as u64,
        "{collection}"
    );
    let indexes = t.index_names(collection).await;
    assert!(
        indexes.contains(&"sku_unique".to_owned()),
        "{collection}: {indexes:?}"
    );
}

fn create_event(name: &str, email: &str) -> String {
    let body = json!({"organization_name": name, "email": email, "password": PASSWORD}).to_string();
    event_json("POST", "/org/create", &[], Some(&body), None)
}

#[tokio::test]
async fn a_create_killed_at_any_step_is_finished_by_its_retry() {
    for point in failpoints("create:") {
        let t = lease_zero_app().await;
        run_until_killed(&t, &create_event("acme", "admin@acme.example"), point, &[]);

        let retry = t.create("acme", "admin@acme.example").await;

        assert_eq!(retry.status, 201, "{point}: {}", retry.body);
        assert_invariants(&t).await;
        assert_audited_once(&t, "organization.created", point).await;
        assert_eq!(t.tenant_collections().await, ["org_acme"], "{point}");
        t.login("admin@acme.example", PASSWORD).await;
        t.drop().await;
    }
}

#[tokio::test]
async fn a_create_killed_at_any_step_is_finished_by_whoever_meets_it_next() {
    for point in failpoints("create:") {
        let t = lease_zero_app().await;
        run_until_killed(&t, &create_event("acme", "admin@acme.example"), point, &[]);

        let got = t.call(get_org("acme")).await;
        let other = t.create("acme", "someone@else.example").await;

        assert_eq!(got.status, 200, "{point}: {}", got.body);
        assert_eq!(other.status, 409, "{point}");
        assert_invariants(&t).await;
        t.drop().await;
    }
}

#[tokio::test]
async fn an_abandoned_create_whose_email_was_taken_meanwhile_is_rolled_back() {
    let t = lease_zero_app().await;
    run_until_killed(
        &t,
        &create_event("acme", "shared@x.example"),
        "create:after_org_insert",
        &[],
    );
    // The admin insert never happened; another org takes the email.
    assert_eq!(t.create("other", "shared@x.example").await.status, 201);

    assert_eq!(t.call(get_org("acme")).await.status, 404);
    assert_eq!(t.create("acme", "admin@acme.example").await.status, 201);
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test]
async fn a_rename_killed_at_any_step_loses_nothing_and_is_finished_by_its_retry() {
    for point in failpoints("rename:") {
        let t = lease_zero_app().await;
        let (_, token) = t.create_and_login("acme").await;
        fill_tenant(&t, "org_acme", TENANT_DOCS).await;
        let body =
            json!({"organization_name": "acme-new", "password": "a-new-password"}).to_string();
        let event = event_json("PUT", "/org/update", &[], Some(&body), Some(&token));
        run_until_killed(&t, &event, point, &[]);

        // Past the credential change, the crashed request's token died with
        // the old password: the retry comes after a login with the new one.
        let token = if point == "rename:after_claim" {
            token
        } else {
            let stale = t
                .call(update(Some(&token), &serde_json::from_str(&body).unwrap()))
                .await;
            assert_eq!(stale.status, 401, "{point}: {}", stale.body);
            t.login("admin@acme.example", "a-new-password").await
        };
        let retry = t
            .call(update(Some(&token), &serde_json::from_str(&body).unwrap()))
            .await;

        assert_eq!(retry.status, 200, "{point}: {}", retry.body);
        assert_eq!(retry.body["organization_name"], "acme-new");
        assert_invariants(&t).await;
        assert_audited_once(&t, "organization.renamed", point).await;
        assert_eq!(t.tenant_collections().await, ["org_acme-new"], "{point}");
        assert_tenant_intact(&t, "org_acme-new").await;
        t.login("admin@acme.example", "a-new-password").await;
        t.drop().await;
    }
}

#[tokio::test]
async fn a_delete_killed_at_any_step_leaves_no_orphan_and_no_admin_after_its_retry() {
    // Without a retention period: the organization is removed at once.
    for point in failpoints("delete:") {
        let t = TestApp::configured(|c| {
            c.deleted_retention = None;
            if let Some(db) = c.database.as_mut() {
                db.operation_lease = Duration::ZERO;
            }
        })
        .await;
        let (_, token) = t.create_and_login("acme").await;
        t.create_and_login("bystander").await;
        fill_tenant(&t, "org_acme", TENANT_DOCS).await;
        run_until_killed(
            &t,
            &delete_event(&token),
            point,
            &[("DELETED_RETENTION_DAYS", "0")],
        );

        let login = t.call(login_request("admin@acme.example", PASSWORD)).await;
        let retry = t.call(delete(Some(&token), "acme")).await;

        if !["delete:before_mark", "delete:after_mark"].contains(&point) {
            assert_eq!(login.status, 401, "{point}: the admin went first");
        }
        assert_eq!(retry.status, 200, "{point}: {}", retry.body);
        assert_invariants(&t).await;
        assert_audited_once(&t, "organization.deleted", point).await;
        assert_eq!(t.tenant_collections().await, ["org_bystander"], "{point}");
        assert_eq!(
            t.count("admins", doc! {"email": "admin@acme.example"})
                .await,
            0
        );
        t.drop().await;
    }
}

/// The failpoints a soft delete passes: the common start, then its own.
fn soft_delete_failpoints() -> Vec<&'static str> {
    let mut points = vec!["delete:before_mark", "delete:after_mark"];
    points.extend(failpoints("soft_delete:"));
    points
}

/// The delete of "acme" with `token`, as its function receives it.
fn delete_event(token: &str) -> String {
    event_json(
        "DELETE",
        "/org/delete",
        &[("organization_name", "acme")],
        None,
        Some(token),
    )
}

fn restore_event() -> String {
    let body =
        json!({"organization_name": "acme", "email": "admin@acme.example", "password": PASSWORD})
            .to_string();
    event_json("POST", "/org/restore", &[], Some(&body), None)
}

/// "acme" with its tenant filled and a bystander, soft-deleted (when
/// `deleted`), on an app whose leases run out at once.
async fn acme_with_data(deleted: bool) -> (TestApp, String) {
    let t = lease_zero_app().await;
    let (_, token) = t.create_and_login("acme").await;
    t.create_and_login("bystander").await;
    fill_tenant(&t, "org_acme", TENANT_DOCS).await;
    if deleted {
        let done = t.call(delete(Some(&token), "acme")).await;
        assert_eq!(done.status, 200, "{}", done.body);
    }
    (t, token)
}

/// The restore of "acme" succeeds and brings back every document.
async fn assert_restorable(t: &TestApp, point: &str) {
    let restored = t.restore("acme", "admin@acme.example", PASSWORD).await;
    assert_eq!(restored.status, 200, "{point}: {}", restored.body);
    assert_invariants(t).await;
    assert_tenant_intact(t, "org_acme").await;
    t.login("admin@acme.example", PASSWORD).await;
}

#[tokio::test]
async fn a_soft_delete_killed_at_any_step_is_finished_by_its_retry_and_loses_nothing() {
    for point in soft_delete_failpoints() {
        let (t, token) = acme_with_data(false).await;
        run_until_killed(&t, &delete_event(&token), point, &[]);

        let retry = t.call(delete(Some(&token), "acme")).await;

        assert_eq!(retry.status, 200, "{point}: {}", retry.body);
        assert_eq!(retry.body["organization"]["organization_name"], "acme");
        assert_invariants(&t).await;
        assert_audited_once(&t, "organization.deleted", point).await;
        assert_eq!(t.tenant_collections().await, ["org_bystander"], "{point}");
        assert_eq!(t.holding_collections().await.len(), 1, "{point}");
        assert_restorable(&t, point).await;
        t.drop().await;
    }
}

#[tokio::test]
async fn a_soft_delete_killed_at_any_step_is_finished_by_the_purge_run_or_a_reader() {
    // Killed before its mark, a delete has not started: nothing to finish.
    for point in soft_delete_failpoints().into_iter().skip(1) {
        let (t, token) = acme_with_data(false).await;
        run_until_killed(&t, &delete_event(&token), point, &[]);

        // The purge settles records left mid-delete; a get settles an
        // organization left marked (before any record exists).
        t.app.purge().await.unwrap();
        let got = t.call(get_org("acme")).await;

        assert_eq!(got.status, 404, "{point}: {}", got.body);
        assert_invariants(&t).await;
        assert_restorable(&t, point).await;
        t.drop().await;
    }
}

#[tokio::test]
async fn a_restore_killed_at_any_step_is_finished_by_its_retry_and_loses_nothing() {
    for point in failpoints("restore:") {
        let (t, _) = acme_with_data(true).await;
        run_until_killed(&t, &restore_event(), point, &[]);

        assert_restorable(&t, point).await;
        assert_audited_once(&t, "organization.restored", point).await;
        assert_eq!(
            t.count("deleted_organizations", doc! {}).await,
            0,
            "{point}"
        );
        t.drop().await;
    }
}

#[tokio::test]
async fn a_restore_killed_at_any_step_is_settled_by_the_purge_run() {
    for point in failpoints("restore:") {
        let (t, _) = acme_with_data(true).await;
        run_until_killed(&t, &restore_event(), point, &[]);

        t.app.purge().await.unwrap();

        // Either finished (back, active) or given back (deleted, restorable).
        assert_invariants(&t).await;
        if t.call(get_org("acme")).await.status != 200 {
            assert_restorable(&t, point).await;
        }
        assert_tenant_intact(&t, "org_acme").await;
        t.drop().await;
    }
}

#[tokio::test]
async fn an_organization_killed_mid_delete_or_mid_restore_is_listed_once() {
    let soft_delete = soft_delete_failpoints().into_iter().map(|p| (p, false));
    let restore = failpoints("restore:").into_iter().map(|p| (p, true));
    for (point, deleted) in soft_delete.chain(restore) {
        let (t, token) = acme_with_data(deleted).await;
        let event = if deleted {
            restore_event()
        } else {
            delete_event(&token)
        };
        run_until_killed(&t, &event, point, &[]);

        let rows = list_all(&t, &[], 1).await;

        let acme: Vec<&str> = rows
            .iter()
            .filter(|(n, _)| n == "acme")
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(acme.len(), 1, "{point}: {rows:?}");
        let expected = if deleted {
            ["restoring", "deleted", "active"].as_slice()
        } else {
            ["active", "deleting", "deleted"].as_slice()
        };
        assert!(expected.contains(&acme[0]), "{point}: {rows:?}");
        assert!(rows.contains(&("bystander".into(), "active".into())));
        t.drop().await;
    }
}

#[tokio::test]
async fn a_restore_that_claimed_the_record_before_a_create_took_the_name_gives_it_back() {
    let (t, _) = acme_with_data(true).await;

    let status = run_pausing_at(
        &mongodb_uri(),
        &t,
        &restore_event(),
        "restore:after_claim",
        async {
            let created = t.create("acme", "newcomer@acme.example").await;
            assert_eq!(created.status, 201, "{}", created.body);
        },
    )
    .await;

    assert_eq!(status, "409");
    assert_invariants(&t).await;
    let restored = t
        .call(restore_request(
            "acme",
            "admin@acme.example",
            PASSWORD,
            Some("acme-old"),
        ))
        .await;
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_tenant_intact(&t, "org_acme-old").await;
    t.drop().await;
}

#[tokio::test]
async fn a_purge_killed_at_any_step_is_finished_by_the_next_run() {
    for point in failpoints("purge:") {
        let (t, _) = acme_with_data(true).await;
        t.expire_retention().await;
        let schedule =
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        run_until_killed(
            &t,
            &schedule.to_string(),
            point,
            &[("CHILD_FUNCTION", "purge")],
        );

        let restore = t.restore("acme", "admin@acme.example", PASSWORD).await;
        t.app.purge().await.unwrap();

        assert_eq!(restore.status, 404, "{point}: a purge under way is final");
        assert_eq!(
            t.count("deleted_organizations", doc! {}).await,
            0,
            "{point}"
        );
        assert!(t.holding_collections().await.is_empty(), "{point}");
        assert_invariants(&t).await;
        assert_audited_once(&t, "organization.purged", point).await;
        assert_eq!(t.tenant_collections().await, ["org_bystander"]);
        t.drop().await;
    }
}

#[tokio::test]
async fn a_provisioning_delivery_finishes_an_organization_half_made_by_a_crashed_one() {
    for point in failpoints("create:") {
        let t = lease_zero_app().await;
        let message = json!({"organization_name": "queued", "email": "admin@queued.example",
                             "password_hash": HASH_COST_5});
        let batch = sqs(&[("m-1", message)]);
        run_until_killed(&t, &batch.to_string(), point, &[]);

        let redelivered = deliver(&t.app, batch).await.unwrap();

        assert_eq!(redelivered["batchItemFailures"], json!([]), "{point}");
        assert_invariants(&t).await;
        assert_eq!(t.tenant_collections().await, ["org_queued"], "{point}");
        t.login("admin@queued.example", PASSWORD).await;
        t.drop().await;
    }
}

#[tokio::test]
async fn an_operation_in_progress_is_a_409_for_others_until_its_lease_runs_out() {
    let t = TestApp::new().await; // lease 120 s
    let (_, token) = t.create_and_login("acme").await;
    let body = json!({"organization_name": "acme-new"}).to_string();
    run_until_killed(
        &t,
        &event_json("PUT", "/org/update", &[], Some(&body), Some(&token)),
        "rename:after_claim",
        &[],
    );

    let got = t.call(get_org("acme")).await;
    let del = t.call(delete(Some(&token), "acme")).await;
    let create = t.create("acme-new", "x@y.example").await;

    assert_eq!(got.status, 409);
    assert_eq!(got.body["error"]["code"], "operation_in_progress");
    assert!(got.error_message().contains("renamed"));
    assert_eq!(del.status, 409);
    assert_eq!(create.status, 409);
    t.drop().await;
}

// ------------------------------------------------------- database outages

/// A SecantusDB server of this test's own, so it can be stopped and started.
struct OwnServer {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
}

impl OwnServer {
    fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("org-svc-{}", fresh_db_name()));
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        server.resume();
        server
    }

    fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    fn resume(&mut self) {
        let child =
            Command::new(std::env::var("SECANTUSD").unwrap_or_else(|_| "secantusd-rs".into()))
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &self.port.to_string(),
                    "--cache-size",
                    "64M",
                    "--log-file-max",
                    "1MB",
                ])
                .arg("--storage-path")
                .arg(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("secantusd-rs on PATH (make test installs it)");
        self.child = Some(child);
        assert!(wait_for_port(self.port), "secantusd-rs did not start");
    }

    /// A clean shutdown (SIGTERM). A SIGKILL would also do for MongoDB, whose
    /// journaled writes survive it, but this test server was seen to lose the
    /// last acknowledged write on SIGKILL despite `j: true`.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            for _ in 0..100 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_database_down_for_a_whole_request_is_a_503_and_the_same_app_recovers() {
    let mut server = OwnServer::start();
    let t = TestApp::on(&server.uri(), |c| c.timeout = Duration::from_millis(800)).await;
    let first = t.create("acme", "admin@acme.example").await;
    assert_eq!(first.status, 201, "{}", first.body);
    server.stop();

    let got = t.call(get_org("acme")).await;
    let created = t.create("other", "admin@other.example").await;
    assert_eq!(
        (got.status, created.status),
        (503, 503),
        "{} {}",
        got.body,
        created.body
    );

    server.resume();
    // The same App (no restart of the function) works again.
    let mut status = 0;
    for _ in 0..50 {
        status = t.call(get_org("acme")).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "{:?}", t.all("organizations").await);
    assert_eq!(
        t.call(get_org("other")).await.status,
        404,
        "the 503 create changed nothing"
    );
    assert_eq!(t.create("other", "admin@other.example").await.status, 201);
    assert_invariants(&t).await;
}

/// Runs `event` in a child on the server at `uri` that stops at `failpoint`
/// until `meanwhile` has run; returns what the child printed (its status).
async fn run_pausing_at(
    uri: &str,
    t: &TestApp,
    event: &str,
    failpoint: &str,
    meanwhile: impl std::future::Future<Output = ()>,
) -> String {
    let marker =
        std::env::temp_dir().join(format!("pause-{}", mongodb::bson::oid::ObjectId::new()));
    let reached = marker.with_extension("reached");
    let go = marker.with_extension("go");
    let child = child_command(uri, &t.db, event)
        .env(failpoint::ENV, failpoint)
        .env(failpoint::ACTION_ENV, format!("wait:{}", marker.display()))
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if reached.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reached.exists(), "the child never reached {failpoint}");
    meanwhile.await;
    std::fs::write(&go, "").unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&reached);
    let _ = std::fs::remove_file(&go);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn a_delete_that_read_the_organization_before_a_rename_finished_deletes_nothing() {
    let t = TestApp::new().await;
    let (_, token) = t.create_and_login("acme").await;
    fill_tenant(&t, "org_acme", TENANT_DOCS).await;

    // The delete has found "acme"; the rename then completes before it acts.
    let status = run_pausing_at(
        &mongodb_uri(),
        &t,
        &delete_event(&token),
        "delete:before_mark",
        async {
            let renamed = t
                .update(&token, json!({"organization_name": "acme-new"}))
                .await;
            assert_eq!(renamed.status, 200, "{}", renamed.body);
        },
    )
    .await;

    assert_eq!(
        status, "404",
        "'acme' no longer exists when the delete acts"
    );
    let org = t.call(get_org("acme-new")).await;
    assert_eq!(org.status, 200, "{}", org.body);
    assert_invariants(&t).await;
    assert_tenant_intact(&t, "org_acme-new").await;
}

#[tokio::test]
async fn a_rename_whose_database_goes_away_mid_operation_is_finished_after_it_returns() {
    let mut server = OwnServer::start();
    let t = TestApp::on(&server.uri(), |c| c.operation_lease = Duration::ZERO).await;
    let (_, token) = t.create_and_login("acme").await;
    fill_tenant(&t, "org_acme", TENANT_DOCS).await;
    let body = json!({"organization_name": "acme-new"}).to_string();
    let uri = server.uri();
    let status = run_pausing_at(
        &uri,
        &t,
        &event_json("PUT", "/org/update", &[], Some(&body), Some(&token)),
        "rename:after_claim",
        async { server.stop() },
    )
    .await;
    assert_eq!(status, "503");
    server.resume();

    let mut retry = t
        .call(update(Some(&token), &serde_json::from_str(&body).unwrap()))
        .await;
    for _ in 0..50 {
        if retry.status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        retry = t
            .call(update(Some(&token), &serde_json::from_str(&body).unwrap()))
            .await;
    }
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_invariants(&t).await;
    assert_tenant_intact(&t, "org_acme-new").await;
}
