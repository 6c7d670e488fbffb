//! Racing operations against the real server: whatever the interleaving,
//! exactly one of two conflicting operations wins, the loser gets a 409 (or a
//! 404 once the winner deleted the organization), and the invariants hold.
//! Each race runs several rounds so that different interleavings occur.

mod support;

use futures_util::future::join_all;
use mongodb::bson::doc;
use serde_json::json;
use support::*;

const ROUNDS: usize = 5;

fn sorted(mut v: Vec<u16>) -> Vec<u16> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_creates_of_one_name_make_one_organization() {
    let t = TestApp::concurrent().await;
    let attempts = (0..50).map(|i| {
        let t = &t;
        async move {
            t.create("race", &format!("admin{i}@race.example"))
                .await
                .status
        }
    });

    let statuses = join_all(attempts).await;

    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        49,
        "{statuses:?}"
    );
    assert_eq!(t.count("organizations", doc! {}).await, 1);
    assert_eq!(t.count("admins", doc! {}).await, 1);
    assert_invariants(&t).await;
    t.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_renames_of_one_organization_cannot_both_win() {
    for round in 0..ROUNDS {
        let t = TestApp::concurrent().await;
        let (_, token) = t.create_and_login("acme").await;

        let (a, b) = tokio::join!(
            t.update(&token, json!({"organization_name": "acme-a"})),
            t.update(&token, json!({"organization_name": "acme-b"})),
        );

        let statuses = sorted(vec![a.status, b.status]);
        assert!(
            statuses == [200, 409] || statuses == [200, 200],
            "round {round}: {statuses:?}"
        );
        // Two successes are two renames one after the other, never both at once.
        assert_invariants(&t).await;
        let orgs = t.all("organizations").await;
        assert_eq!(orgs.len(), 1);
        let final_name = orgs[0].get_str("name").unwrap();
        assert!(
            ["acme-a", "acme-b"].contains(&final_name),
            "round {round}: {final_name}"
        );
        t.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_racing_a_delete_leaves_one_consistent_outcome() {
    for round in 0..ROUNDS {
        let t = TestApp::concurrent().await;
        let (_, token) = t.create_and_login("acme").await;

        let (renamed, deleted) = tokio::join!(
            t.update(&token, json!({"organization_name": "acme-new"})),
            t.call(delete(Some(&token), "acme")),
        );

        let remaining = t.count("organizations", doc! {}).await;
        match (renamed.status, deleted.status) {
            (200, 409) | (200, 404) => assert_eq!(remaining, 1, "round {round}"),
            (409, 200) | (404, 200) => assert_eq!(remaining, 0, "round {round}"),
            other => panic!("round {round}: {other:?} {} {}", renamed.body, deleted.body),
        }
        assert_invariants(&t).await;
        t.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_organizations_renamed_to_one_name_get_one_200_and_one_409() {
    for round in 0..ROUNDS {
        let t = TestApp::concurrent().await;
        let (_, one) = t.create_and_login("one").await;
        let (_, two) = t.create_and_login("two").await;

        let (a, b) = tokio::join!(
            t.update(&one, json!({"organization_name": "prize"})),
            t.update(&two, json!({"organization_name": "prize"})),
        );

        assert_eq!(
            sorted(vec![a.status, b.status]),
            [200, 409],
            "round {round}"
        );
        assert_eq!(t.count("organizations", doc! {"name": "prize"}).await, 1);
        assert_invariants(&t).await;
        t.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_racing_a_delete_of_the_same_name_never_leaves_an_orphan() {
    for round in 0..ROUNDS {
        let t = TestApp::concurrent().await;
        let (_, token) = t.create_and_login("acme").await;

        let (deleted, created) = tokio::join!(
            t.call(delete(Some(&token), "acme")),
            t.create("acme", "new-admin@acme.example"),
        );

        assert_eq!(deleted.status, 200, "round {round}: {}", deleted.body);
        assert!(
            [201, 409].contains(&created.status),
            "round {round}: {}",
            created.body
        );
        let expected = u64::from(created.status == 201);
        assert_eq!(
            t.count("organizations", doc! {}).await,
            expected,
            "round {round}"
        );
        assert_invariants(&t).await;
        t.drop().await;
    }
}
