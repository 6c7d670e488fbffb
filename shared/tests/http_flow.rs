//! The full flow over HTTP against the local API that `make run` serves
//! (`local-api` running the functions' own binaries): create, login,
//! rename, delete, with the database checked after each step. `make test`
//! starts that API and names it in `ORG_API_URL`, and its master database in
//! `E2E_MASTER_DB`.

mod support;

use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    fn from_env() -> Self {
        let base = std::env::var("ORG_API_URL")
            .expect("ORG_API_URL must name the local API; `make test` starts it");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(120)))
            .build()
            .into();
        Self { base, agent }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = req
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let mut resp = self.agent.run(req).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

#[tokio::test]
async fn create_login_rename_delete_over_http_with_the_database_checked_at_each_step() {
    let api = Api::from_env();
    let master =
        std::env::var("E2E_MASTER_DB").expect("E2E_MASTER_DB names the local API's database");
    let client = mongodb::Client::with_uri_str(support::mongodb_uri())
        .await
        .unwrap();
    let db = client.database(&master);
    let orgs = db.collection::<Document>("organizations");
    let admins = db.collection::<Document>("admins");
    let suffix = mongodb::bson::oid::ObjectId::new().to_hex()[16..].to_owned();
    let name = format!("flow-{suffix}");
    let renamed = format!("flow-renamed-{suffix}");
    let email = format!("admin@{suffix}.example");
    let tenant_names = || async { db.list_collection_names().await.unwrap() };

    // create
    let (status, org) = api.send(
        "POST",
        "/org/create",
        None,
        Some(json!({"organization_name": name, "email": email, "password": support::PASSWORD})),
    );
    assert_eq!(status, 201, "{org}");
    assert!(tenant_names().await.contains(&format!("org_{name}")));
    let stored = admins
        .find_one(doc! {"email": &email})
        .await
        .unwrap()
        .unwrap();
    assert!(
        !stored.to_string().contains(support::PASSWORD),
        "no password stored in clear"
    );
    assert!(stored.get_str("password_hash").unwrap().starts_with("$2"));

    // get
    let (status, got) = api.send(
        "GET",
        &format!("/org/get?organization_name={name}"),
        None,
        None,
    );
    assert_eq!((status, &got), (200, &org));

    // login
    let (status, login) = api.send(
        "POST",
        "/admin/login",
        None,
        Some(json!({"email": email, "password": support::PASSWORD})),
    );
    assert_eq!(status, 200, "{login}");
    let token = login["access_token"].as_str().unwrap().to_owned();

    // rename
    let (status, moved) = api.send(
        "PUT",
        "/org/update",
        Some(&token),
        Some(json!({"organization_name": renamed})),
    );
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["organization_id"], org["organization_id"]);
    let names = tenant_names().await;
    assert!(names.contains(&format!("org_{renamed}")) && !names.contains(&format!("org_{name}")));
    assert_eq!(
        orgs.count_documents(doc! {"name": &renamed, "state": "active"})
            .await
            .unwrap(),
        1
    );

    // errors keep their statuses over HTTP too
    assert_eq!(
        api.send(
            "PUT",
            "/org/update",
            None,
            Some(json!({"organization_name": "x"}))
        )
        .0,
        401
    );
    assert_eq!(
        api.send("GET", "/org/get?organization_name=a.b", None, None)
            .0,
        422
    );

    // delete
    let (status, deleted) = api.send(
        "DELETE",
        &format!("/org/delete?organization_name={renamed}"),
        Some(&token),
        None,
    );
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["status"], "deleted");
    assert!(!tenant_names().await.contains(&format!("org_{renamed}")));
    assert_eq!(
        orgs.count_documents(doc! {"_id": support::organization_id(&org)})
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        admins
            .count_documents(doc! {"email": &email})
            .await
            .unwrap(),
        0
    );
    let (status, _) = api.send(
        "POST",
        "/admin/login",
        None,
        Some(json!({"email": email, "password": support::PASSWORD})),
    );
    assert_eq!(status, 401);
}
