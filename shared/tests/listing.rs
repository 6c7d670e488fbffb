//! The operator listing: every organization with its state, live and
//! deleted, in name order a page at a time, filtered by state and name
//! prefix through indexes; refused without the IAM identity the gateway
//! adds to a SigV4-signed request; audited with the caller's ARN.

mod support;

use std::collections::BTreeSet;

use mongodb::bson::{doc, Document};
use serde_json::json;
use shared::store::{ListQuery, ListedState};
use support::*;

fn names(rows: &[(String, String)]) -> Vec<&str> {
    rows.iter().map(|(n, _)| n.as_str()).collect()
}

fn owned(rows: &[(&str, &str)]) -> Vec<(String, String)> {
    rows.iter()
        .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
        .collect()
}

/// The audit entries of listings.
async fn listing_entries(t: &TestApp) -> Vec<Document> {
    t.all("audit")
        .await
        .into_iter()
        .filter(|e| e.get_str("action") == Ok("organizations.listed"))
        .collect()
}

#[tokio::test]
async fn the_listing_is_refused_without_an_iam_identity() {
    let t = TestApp::new().await;
    let (_, token) = t.create_and_login("acme").await;

    let unsigned = t.call(list_request(&[], None)).await;
    // An admin's bearer token is no operator's identity.
    let admin = t
        .call(event("GET", "/org/list", &[], None, Some(&token)))
        .await;
    // An identity without an ARN names no one.
    let mut ev: serde_json::Value =
        serde_json::from_str(&event_json("GET", "/org/list", &[], None, None)).unwrap();
    ev["requestContext"]["authorizer"] = json!({"iam": {"accountId": "123456789012"}});
    let anonymous = t
        .call(shared::lambda_http::request::from_str(&ev.to_string()).unwrap())
        .await;
    // Bad parameters do not get past the identity check either.
    let bad = t.call(list_request(&[("limit", "0")], None)).await;

    for refused in [&unsigned, &admin, &anonymous, &bad] {
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert_eq!(refused.body["error"]["code"], "forbidden");
        assert!(refused.body.get("organizations").is_none());
    }
    assert!(listing_entries(&t).await.is_empty());
    t.drop().await;
}

#[tokio::test]
async fn every_organization_is_listed_once_with_its_state_live_and_deleted() {
    let t = TestApp::new().await;
    t.create_and_login("zeta").await;
    let (_, beta) = t.create_and_login("beta").await;
    t.create_and_login("acme").await;
    assert_eq!(t.call(delete(Some(&beta), "beta")).await.status, 200);
    // The name is free at once: a new "beta" is another organization.
    t.create_and_login("beta").await;

    let page = t.call(list_request(&[], Some(OPERATOR_ARN))).await;

    assert_eq!(page.status, 200, "{}", page.body);
    let rows = page.body["organizations"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = rows
        .iter()
        .map(|o| {
            (
                o["organization_name"].as_str().unwrap(),
                o["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("acme", "active"),
            ("beta", "active"),
            ("beta", "deleted"),
            ("zeta", "active")
        ]
    );
    assert_ne!(rows[1]["organization_id"], rows[2]["organization_id"]);
    let deleted = &rows[2];
    for at in ["created_at", "deleted_at", "purge_after"] {
        assert!(
            deleted[at].as_str().is_some_and(|s| s.contains('T')),
            "{at}: {deleted}"
        );
    }
    assert!(rows[0].get("purge_after").is_none() && rows[0].get("deleted_at").is_none());
    assert!(page.body["next_cursor"].is_null());
    // Nothing but what an operator needs: no hash, no admin, no email.
    let text = page.body.to_string();
    for secret in ["password", "hash", "admin", "email", "token"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    assert_eq!(
        list_all(&t, &[("state", "deleted")], 50).await,
        owned(&[("beta", "deleted")])
    );
    assert_eq!(
        names(&list_all(&t, &[("state", "active")], 50).await),
        ["acme", "beta", "zeta"]
    );
    assert!(list_all(&t, &[("state", "purging")], 50).await.is_empty());
    t.drop().await;
}

#[tokio::test]
async fn pages_walk_every_organization_once_in_name_order_while_others_are_created() {
    let t = TestApp::new().await;
    for i in 0..25 {
        assert_eq!(
            t.create(&format!("org-{i:02}"), &format!("a{i}@x.example"))
                .await
                .status,
            201
        );
    }
    // Three of them deleted (and one name taken again): rows of both kinds
    // and a name on two rows.
    for name in ["org-03", "org-11", "org-20"] {
        let token = t
            .login(
                &format!("a{}@x.example", &name[4..].trim_start_matches('0')),
                PASSWORD,
            )
            .await;
        assert_eq!(t.call(delete(Some(&token), name)).await.status, 200);
    }
    assert_eq!(t.create("org-11", "again@x.example").await.status, 201);

    let mut seen: Vec<(String, String)> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    while pages < 100 {
        let mut query = vec![("limit", "10")];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let page = t.call(list_request(&query, Some(OPERATOR_ARN))).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let rows = page.body["organizations"].as_array().unwrap();
        assert!(rows.len() <= 10);
        seen.extend(rows.iter().map(|o| {
            (
                o["organization_name"].as_str().unwrap().to_owned(),
                o["state"].as_str().unwrap().to_owned(),
            )
        }));
        pages += 1;
        // Meanwhile: one before every cursor, one after.
        let n = pages;
        assert_eq!(
            t.create(&format!("aaa-{n}"), &format!("early{n}@x.example"))
                .await
                .status,
            201
        );
        assert_eq!(
            t.create(&format!("zzz-{n}"), &format!("late{n}@x.example"))
                .await
                .status,
            201
        );
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }

    // Every organization there at the start, once, in order; no gap.
    let at_start: Vec<(String, String)> = seen
        .iter()
        .filter(|(n, _)| n.starts_with("org-"))
        .cloned()
        .collect();
    let mut expected: Vec<(String, String)> = (0..25)
        .map(|i| (format!("org-{i:02}"), "active".to_owned()))
        .filter(|(n, _)| !["org-03", "org-20"].contains(&n.as_str()))
        .collect();
    expected.push(("org-03".into(), "deleted".into()));
    expected.push(("org-11".into(), "deleted".into()));
    expected.push(("org-20".into(), "deleted".into()));
    expected.sort();
    assert_eq!(at_start, expected);
    // No row twice, and the whole walk in name order.
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    let distinct: BTreeSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len());
    // Created after the walk passed their place: not on it; ahead of it: on it.
    assert!(!seen.iter().any(|(n, _)| n.starts_with("aaa-")));
    assert!(seen.iter().filter(|(n, _)| n.starts_with("zzz-")).count() >= pages - 1);
    t.drop().await;
}

#[tokio::test]
async fn a_prefix_lists_the_names_that_start_with_it_through_the_indexes() {
    let t = TestApp::new().await;
    for name in ["acme-b", "acmex", "acme-a", "beta", "acm"] {
        t.create_and_login(name).await;
    }
    let (_, token) = t.create_and_login("acme-c").await;
    assert_eq!(t.call(delete(Some(&token), "acme-c")).await.status, 200);

    assert_eq!(
        names(&list_all(&t, &[("prefix", "ACME-")], 1).await),
        ["acme-a", "acme-b", "acme-c"]
    );
    assert_eq!(
        names(&list_all(&t, &[("prefix", "acme-"), ("state", "active")], 1).await),
        ["acme-a", "acme-b"]
    );
    assert!(list_all(&t, &[("prefix", "acme-z")], 10).await.is_empty());

    let store = t.app.store().await.unwrap();
    let page = store
        .list_organizations(
            &ListQuery {
                prefix: Some("acme-".into()),
                ..Default::default()
            },
            1,
        )
        .await
        .unwrap();
    let queries = [
        ListQuery {
            prefix: Some("acme-".into()),
            ..Default::default()
        },
        ListQuery {
            prefix: Some("acme-".into()),
            after: page.next.clone(),
            ..Default::default()
        },
        ListQuery::default(),
        ListQuery {
            state: Some(ListedState::Deleted),
            after: page.next,
            ..Default::default()
        },
    ];
    for query in &queries {
        let (live, deleted) = store.explain_listing(query, 50).await.unwrap();
        for (plan, index) in [(live, "name_unique"), (deleted, "name_id")] {
            let Some(plan) = plan else { continue };
            assert_index_scan(&plan, index, &format!("{query:?}"));
        }
    }
    t.drop().await;
}

#[tokio::test]
async fn a_bad_limit_state_prefix_or_cursor_is_a_422_naming_it() {
    let t = TestApp::new().await;
    t.create_and_login("acme").await;
    let audit_cursor = format!("a1{:016x}{}", 1u64, "0".repeat(24));
    for (field, value) in [
        ("limit", "0"),
        ("limit", "101"),
        ("limit", "ten"),
        ("state", "gone"),
        ("state", "Active"),
        ("prefix", ""),
        ("prefix", "acme corp"),
        ("prefix", &"a".repeat(200)),
        ("cursor", "nope"),
        ("cursor", &audit_cursor),
    ] {
        let r = t
            .call(list_request(&[(field, value)], Some(OPERATOR_ARN)))
            .await;
        assert_eq!(r.status, 422, "{field}={value}: {}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{}", r.body);
    }
    let twice = t
        .call(list_request(
            &[("limit", "1"), ("limit", "2")],
            Some(OPERATOR_ARN),
        ))
        .await;
    assert_eq!(twice.status, 422);
    assert!(listing_entries(&t).await.is_empty());
    t.drop().await;
}

#[tokio::test]
async fn an_organization_mid_delete_is_listed_once_as_its_document() {
    let t = TestApp::new().await;
    let (created, _) = t.create_and_login("acme").await;
    let org_id = organization_id(&created);
    // As a delete leaves them between its record and its last step: the
    // organization marked, its record written.
    let db = t.database();
    db.collection::<Document>("organizations")
        .update_one(doc! {"_id": org_id}, doc! {"$set": {"state": "deleting"}})
        .await
        .unwrap();
    let now = mongodb::bson::DateTime::now();
    let record = doc! {
        "_id": mongodb::bson::oid::ObjectId::new(),
        "organization_id": org_id,
        "name": "acme",
        "holding_collection": format!("deleted_{}", org_id.to_hex()),
        "created_at": now,
        "deleted_at": now,
        "purge_after": now,
        "state": "deleting",
    };
    let records = db.collection::<Document>("deleted_organizations");
    records.insert_one(&record).await.unwrap();

    assert_eq!(list_all(&t, &[], 1).await, owned(&[("acme", "deleting")]));
    assert_eq!(
        list_all(&t, &[("state", "deleting")], 1).await,
        owned(&[("acme", "deleting")])
    );

    // Once the document is gone, the record is the row.
    db.collection::<Document>("organizations")
        .delete_one(doc! {"_id": org_id})
        .await
        .unwrap();
    let page = t.call(list_request(&[], Some(OPERATOR_ARN))).await;
    assert_eq!(page.body["organizations"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["organizations"][0]["state"], "deleting");
    assert_eq!(
        page.body["organizations"][0]["organization_id"],
        org_id.to_hex()
    );
    t.drop().await;
}

#[tokio::test]
async fn each_listing_is_audited_with_the_operators_arn_and_no_organization_sees_it() {
    let t = TestApp::new().await;
    let (_, token) = t.create_and_login("acme").await;

    let listed = t
        .call(list_request(&[("prefix", "ac")], Some(OPERATOR_ARN)))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);

    let entries = listing_entries(&t).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let actor = entry.get_document("actor").unwrap();
    assert_eq!(actor.get_str("kind").unwrap(), "operator");
    assert_eq!(actor.get_str("id").unwrap(), OPERATOR_ARN);
    assert_eq!(entry.get_str("source_ip").unwrap(), "192.0.2.1");
    assert!(entry.get_str("request_id").is_ok_and(|id| !id.is_empty()));
    assert_eq!(entry.get_str("outcome").unwrap(), "succeeded");
    assert!(entry
        .get("organization_id")
        .is_none_or(|v| v.as_null().is_some()));

    let trail = t
        .call(event("GET", "/org/audit", &[], None, Some(&token)))
        .await;
    assert_eq!(trail.status, 200);
    assert!(!trail.body.to_string().contains("organizations.listed"));
    t.drop().await;
}
