//! Test support: one fresh database per test on the real server named by
//! `MONGODB_URI` (started by `make test`), API Gateway v2 events built the way
//! the gateway sends them, and the handlers called directly.

#![allow(dead_code)]

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Document};
use mongodb::Client;
use serde_json::{json, Value};
use shared::auth::{KeyProvider, KeySet, SigningKey, Tokens};
use shared::config::{Config, DatabaseConfig, Secret, SecretSource, TokenConfig};
use shared::lambda_http::{Body, Request, Response};
use shared::store::{LoginThrottle, Store};
use shared::{handlers, App};

pub const PASSWORD: &str = "correct-horse-battery";
pub const JWT_SECRET: &str = "test-signing-key-0123456789-abcdefghijkl";

pub fn mongodb_uri() -> String {
    std::env::var("MONGODB_URI")
        .expect("MONGODB_URI must name a MongoDB server; `make test` starts one")
}

/// A unique database name, short enough for MongoDB's 64-byte limit.
pub fn fresh_db_name() -> String {
    format!("t{}", ObjectId::new().to_hex())
}

pub fn database_config(uri: &str, db: &str) -> DatabaseConfig {
    DatabaseConfig {
        uri: SecretSource::Value(Secret::new(uri)),
        master_db: db.to_owned(),
        tenant_db: db.to_owned(),
        timeout: Duration::from_secs(5),
        operation_lease: Duration::from_secs(120),
    }
}

pub fn token_config() -> TokenConfig {
    TokenConfig {
        key: SecretSource::Value(Secret::new(JWT_SECRET)),
        issuer: "org-service".into(),
        audience: "org-service-api".into(),
        ttl: Duration::from_secs(3600),
        key_cache_ttl: Duration::from_secs(300),
    }
}

/// Tokens signed with the fixed test key, as `JWT_SECRET` would give.
pub fn test_tokens() -> Tokens {
    Tokens::new(
        KeyProvider::fixed(KeySet {
            current: SigningKey::new("local", Secret::new(JWT_SECRET)),
            previous: None,
        }),
        &token_config(),
    )
}

pub struct TestApp {
    pub app: App,
    pub db: String,
    pub client: Client,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub response: Response<Body>,
}

impl Reply {
    /// The `Retry-After` header in seconds.
    pub fn retry_after(&self) -> u64 {
        self.response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The message of an error answer.
    pub fn error_message(&self) -> &str {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {}", self.body))
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// A test app whose database settings `tweak` may change.
    pub async fn with(tweak: impl FnOnce(&mut DatabaseConfig)) -> Self {
        Self::on(&mongodb_uri(), tweak).await
    }

    /// A test app whose one `App` plays many execution environments at once
    /// (the race tests): its pool has several connections, so concurrent
    /// requests reach the server concurrently, as separate environments do.
    pub async fn concurrent() -> Self {
        let uri = mongodb_uri();
        let uri = if uri.contains('?') {
            format!("{uri}&maxPoolSize=8")
        } else {
            format!("{}/?maxPoolSize=8", uri.trim_end_matches('/'))
        };
        Self::on(&uri, |_| {}).await
    }

    /// A test app with its own login throttling policy.
    pub async fn throttled(policy: LoginThrottle) -> Self {
        let mut t = Self::new().await;
        t.app = t
            .app_with(t.app.config.clone(), |store| {
                store.with_login_throttle(policy)
            })
            .await;
        t
    }

    /// A test app whose login throttling locks after `max_failures`, with
    /// the default window and lockout.
    pub async fn locking_after(max_failures: i64) -> Self {
        Self::throttled(LoginThrottle {
            max_failures,
            ..Default::default()
        })
        .await
    }

    /// A test app whose configuration `tweak` changes (limits, policies).
    pub async fn configured(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut t = Self::new().await;
        let mut config = t.app.config.clone();
        tweak(&mut config);
        t.app = t.app_with(config, |store| store).await;
        t
    }

    /// An `App` on this test's database under `config`, its store connected
    /// afresh and changed by `tweak`.
    pub async fn app_with(&self, config: Config, tweak: impl FnOnce(Store) -> Store) -> App {
        let dbc = config.database.clone().unwrap();
        let store = Store::connect(&dbc, &mongodb_uri()).await.unwrap();
        App::with_store(config, tweak(store), Some(test_tokens()))
    }

    /// A test app on the server at `uri`.
    pub async fn on(uri: &str, tweak: impl FnOnce(&mut DatabaseConfig)) -> Self {
        let uri = uri.to_owned();
        let db = fresh_db_name();
        let mut dbc = database_config(&uri, &db);
        tweak(&mut dbc);
        let config = Config {
            database: Some(dbc.clone()),
            tokens: Some(token_config()),
            bcrypt_cost: 4,
            password_min_score: shared::config::DEFAULT_PASSWORD_MIN_SCORE,
            // Off here, as in `make test`'s local API: every test request
            // comes from one address. The limit tests turn them on.
            limits: shared::config::Limits::default(),
            provisioning_plaintext: false,
            credential_change_max_token_age:
                shared::config::DEFAULT_CREDENTIAL_CHANGE_MAX_TOKEN_AGE,
            deleted_retention: Some(std::time::Duration::from_secs(
                shared::config::DEFAULT_DELETED_RETENTION_DAYS * 86_400,
            )),
            audit_retention: std::time::Duration::from_secs(
                shared::config::DEFAULT_AUDIT_RETENTION_DAYS * 86_400,
            ),
            event_bus: None,
            aws_ca_bundle: None,
            aws_endpoint_url: None,
            service_name: shared::telemetry::metric::LOCAL_SERVICE.to_owned(),
        };
        let store = Store::connect(&dbc, &uri).await.expect("connect");
        let client = store.client().clone();
        let app = App::with_store(config, store, Some(test_tokens()));
        Self { app, db, client }
    }

    pub fn database(&self) -> mongodb::Database {
        self.client.database(&self.db)
    }

    pub async fn call(&self, req: Request) -> Reply {
        reply(handlers::dispatch(&self.app, req).await)
    }

    pub async fn create(&self, name: &str, email: &str) -> Reply {
        self.call(post(
            "/org/create",
            &json!({"organization_name": name, "email": email, "password": PASSWORD}),
        ))
        .await
    }

    /// `PUT /org/update` with `token` as the bearer.
    pub async fn update(&self, token: &str, body: Value) -> Reply {
        self.call(update(Some(token), &body)).await
    }

    /// Creates an org and logs its admin in; returns the org body and the token.
    pub async fn create_and_login(&self, name: &str) -> (Value, String) {
        let email = format!("admin@{name}.example");
        let created = self.create(name, &email).await;
        assert_eq!(created.status, 201, "{}", created.body);
        let token = self.login(&email, PASSWORD).await;
        (created.body, token)
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self.call(login_request(email, password)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn collections(&self) -> Vec<String> {
        let mut names = self.database().list_collection_names().await.unwrap();
        names.sort();
        names
    }

    pub async fn tenant_collections(&self) -> Vec<String> {
        self.collections()
            .await
            .into_iter()
            .filter(|c| c.starts_with("org_"))
            .collect()
    }

    /// The collections deleted organizations' data waits in.
    pub async fn holding_collections(&self) -> Vec<String> {
        self.collections()
            .await
            .into_iter()
            .filter(|c| c.starts_with("deleted_") && c != "deleted_organizations")
            .collect()
    }

    pub async fn restore(&self, name: &str, email: &str, password: &str) -> Reply {
        self.call(restore_request(name, email, password, None))
            .await
    }

    /// Makes every deleted organization due for the purge (its retention
    /// over), as if the days had passed.
    pub async fn expire_retention(&self) {
        self.purge_in(-1_000).await;
    }

    /// Makes every deleted organization due for the purge `millis` from now.
    pub async fn purge_in(&self, millis: i64) {
        let when = mongodb::bson::DateTime::from_millis(
            mongodb::bson::DateTime::now().timestamp_millis() + millis,
        );
        self.database()
            .collection::<Document>("deleted_organizations")
            .update_many(doc! {}, doc! { "$set": { "purge_after": when } })
            .await
            .unwrap();
    }

    pub async fn count(&self, collection: &str, filter: Document) -> u64 {
        self.database()
            .collection::<Document>(collection)
            .count_documents(filter)
            .await
            .unwrap()
    }

    pub async fn index_names(&self, collection: &str) -> Vec<String> {
        self.database()
            .collection::<Document>(collection)
            .list_index_names()
            .await
            .unwrap()
    }

    /// How long after its `expires_at` the TTL index of `collection` removes
    /// a document.
    pub async fn ttl_after_expiry(&self, collection: &str) -> Option<Duration> {
        use futures_util::TryStreamExt;
        let indexes: Vec<_> = self
            .database()
            .collection::<Document>(collection)
            .list_indexes()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let ttl = indexes
            .into_iter()
            .find(|i| i.keys == doc! {"expires_at": 1})
            .expect("a TTL index on expires_at");
        ttl.options.and_then(|o| o.expire_after)
    }

    pub async fn all(&self, collection: &str) -> Vec<Document> {
        use futures_util::TryStreamExt;
        self.database()
            .collection::<Document>(collection)
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    /// Everything in the master collections, for "nothing changed" checks.
    pub async fn snapshot(&self) -> (Vec<String>, Vec<Document>, Vec<Document>) {
        (
            self.tenant_collections().await,
            self.all("organizations").await,
            self.all("admins").await,
        )
    }

    pub async fn drop(self) {
        let _ = self.database().drop().await;
    }
}

pub fn reply(response: Response<Body>) -> Reply {
    let status = response.status().as_u16();
    let text = match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        body,
        response,
    }
}

/// An API Gateway HTTP API (payload 2.0) event, parsed by lambda_http exactly
/// as a deployed function would parse it.
pub fn event(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&str>,
    token: Option<&str>,
) -> Request {
    shared::lambda_http::request::from_str(&event_json(method, path, query, body, token))
        .expect("a valid v2 event")
}

/// The JSON text of such an event.
pub fn event_json(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&str>,
    token: Option<&str>,
) -> String {
    let raw_query = query
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut params = serde_json::Map::new();
    for (k, v) in query {
        let merged = match params.get(*k).and_then(Value::as_str) {
            Some(prev) => format!("{prev},{v}"),
            None => (*v).to_owned(),
        };
        params.insert((*k).to_owned(), Value::String(merged));
    }
    let mut headers = json!({"content-type": "application/json", "host": "api.example.com"});
    if let Some(t) = token {
        headers["authorization"] = json!(format!("Bearer {t}"));
    }
    let mut ev = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test"},
            "requestId": ObjectId::new().to_hex(),
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "25/Nov/2026:19:00:00 +0000",
            "timeEpoch": 1_795_000_000_000u64
        },
        "isBase64Encoded": false
    });
    if !params.is_empty() {
        ev["queryStringParameters"] = Value::Object(params);
    }
    if let Some(b) = body {
        ev["body"] = json!(b);
    }
    ev.to_string()
}

/// The id in an organization's JSON (a create's or an update's answer).
pub fn organization_id(org: &Value) -> ObjectId {
    ObjectId::parse_str(org["organization_id"].as_str().expect("an organization_id"))
        .expect("a hex object id")
}

/// The ARN of the operator in listing events.
pub const OPERATOR_ARN: &str = "arn:aws:iam::123456789012:role/platform-operator";

/// `GET /org/list` as API Gateway sends it on an `AWS_IAM` route, with the
/// identity of the SigV4 signature it checked (none: `arn` is `None`).
pub fn list_request(query: &[(&str, &str)], arn: Option<&str>) -> Request {
    let mut ev: Value =
        serde_json::from_str(&event_json("GET", "/org/list", query, None, None)).unwrap();
    if let Some(arn) = arn {
        ev["requestContext"]["authorizer"] = json!({"iam": {
            "accessKey": "AKIAIOSFODNN7EXAMPLE",
            "accountId": "123456789012",
            "callerId": "AROAEXAMPLEID:operator",
            "cognitoIdentity": null,
            "principalOrgId": null,
            "userArn": arn,
            "userId": "AROAEXAMPLEID:operator",
        }});
    }
    shared::lambda_http::request::from_str(&ev.to_string()).expect("a valid v2 event")
}

/// Every organization the listing shows for `query`, walked a page of
/// `limit` at a time, as `(name, state)`.
pub async fn list_all(t: &TestApp, query: &[(&str, &str)], limit: u32) -> Vec<(String, String)> {
    let limit = limit.to_string();
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", &limit));
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let page = t.call(list_request(&q, Some(OPERATOR_ARN))).await;
        assert_eq!(page.status, 200, "{}", page.body);
        for o in page.body["organizations"].as_array().unwrap() {
            rows.push((
                o["organization_name"].as_str().unwrap().to_owned(),
                o["state"].as_str().unwrap().to_owned(),
            ));
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return rows,
        }
    }
    panic!("the listing did not end after 1,000 pages: {rows:?}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A login attempt from the address `ip`.
pub fn login_from(ip: &str, email: &str, password: &str) -> Request {
    let body = json!({"email": email, "password": password}).to_string();
    let ev = event_json("POST", "/admin/login", &[], Some(&body), None).replace("192.0.2.1", ip);
    shared::lambda_http::request::from_str(&ev).expect("a valid v2 event")
}

pub fn login_request(email: &str, password: &str) -> Request {
    post(
        "/admin/login",
        &json!({"email": email, "password": password}),
    )
}

/// `POST /org/restore`, under `new_name` when one is given.
pub fn restore_request(name: &str, email: &str, password: &str, new_name: Option<&str>) -> Request {
    let mut body = json!({"organization_name": name, "email": email, "password": password});
    if let Some(n) = new_name {
        body["new_organization_name"] = json!(n);
    }
    post("/org/restore", &body)
}

pub fn post(path: &str, body: &Value) -> Request {
    event("POST", path, &[], Some(&body.to_string()), None)
}

pub fn post_raw(path: &str, body: &str) -> Request {
    event("POST", path, &[], Some(body), None)
}

pub fn get_org(name: &str) -> Request {
    event(
        "GET",
        "/org/get",
        &[("organization_name", name)],
        None,
        None,
    )
}

pub fn update(token: Option<&str>, body: &Value) -> Request {
    event("PUT", "/org/update", &[], Some(&body.to_string()), token)
}

pub fn delete(token: Option<&str>, name: &str) -> Request {
    event(
        "DELETE",
        "/org/delete",
        &[("organization_name", name)],
        None,
        token,
    )
}

/// The gateway's authorizer request for `token` (the fixture in `events/`).
pub fn authorizer_event(
    token: &str,
) -> shared::aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request {
    let raw = include_str!("../../../events/authorizer.json").replace("REPLACE_WITH_TOKEN", token);
    serde_json::from_str(&raw).unwrap()
}

/// The same app with its database at 127.0.0.1:9, where nothing listens:
/// every database call fails fast, as in an outage.
pub fn with_unreachable_database(t: &TestApp) -> App {
    let mut config = t.app.config.clone();
    let db = config.database.as_mut().expect("a database config");
    db.uri = SecretSource::Value(Secret::new("mongodb://127.0.0.1:9/?directConnection=true"));
    db.timeout = Duration::from_millis(300);
    App::with_secret_store(config, None)
}

/// An app under `config` whose MongoDB URI is the secret `arn` in `store`.
pub fn with_database_secret(
    mut config: Config,
    arn: &str,
    store: shared::secrets::SecretStore,
) -> App {
    config.database.as_mut().expect("a database config").uri = SecretSource::SecretsManager {
        arn: arn.to_owned(),
    };
    App::with_secret_store(config, Some(store))
}

/// Checks the lifecycle invariants (docs/lifecycle.md) against the database: every organization
/// is active with exactly its own tenant collection, every tenant collection
/// belongs to one organization, every admin to one existing organization,
/// and every organization has its admin.
pub async fn assert_invariants(t: &TestApp) {
    let orgs = t.all("organizations").await;
    let admins = t.all("admins").await;
    let tenant = t.tenant_collections().await;
    let mut expected: Vec<String> = Vec::new();
    for org in &orgs {
        assert_eq!(
            org.get_str("state").unwrap(),
            "active",
            "org not settled: {org}"
        );
        assert!(org.get("pending").is_none(), "org still pending: {org}");
        let name = org.get_str("name").unwrap();
        assert_eq!(
            org.get_str("collection_name").unwrap(),
            format!("org_{name}")
        );
        let names = org.get_array("names").unwrap();
        assert_eq!(names.len(), 1, "org holds extra names: {org}");
        expected.push(format!("org_{name}"));
        let id = org.get_object_id("_id").unwrap();
        let admin_id = org.get_object_id("admin_id").unwrap();
        let own: Vec<_> = admins
            .iter()
            .filter(|a| a.get_object_id("organization_id").unwrap() == id)
            .collect();
        assert_eq!(own.len(), 1, "org {name} has {} admins", own.len());
        assert_eq!(own[0].get_object_id("_id").unwrap(), admin_id);
    }
    expected.sort();
    assert_eq!(
        tenant, expected,
        "tenant collections and organizations differ"
    );
    // Deleted organizations: each record settled, its organization and
    // admin gone, its collection under its holding name; no holding
    // collection without its record.
    let records = t.all("deleted_organizations").await;
    let mut expected_holding: Vec<String> = Vec::new();
    for record in &records {
        assert_eq!(
            record.get_str("state").unwrap(),
            "deleted",
            "record not settled: {record}"
        );
        assert!(
            record.get("pending").is_none(),
            "record still pending: {record}"
        );
        let org_id = record.get_object_id("organization_id").unwrap();
        assert!(
            orgs.iter()
                .all(|o| o.get_object_id("_id").unwrap() != org_id),
            "a deleted organization is also live: {record}"
        );
        assert!(
            admins
                .iter()
                .all(|a| a.get_object_id("organization_id").unwrap() != org_id),
            "a deleted organization kept its admin: {record}"
        );
        let holding = record.get_str("holding_collection").unwrap();
        assert_eq!(holding, format!("deleted_{}", org_id.to_hex()));
        assert!(
            !expected_holding.contains(&holding.to_owned()),
            "two records hold {holding}"
        );
        expected_holding.push(holding.to_owned());
    }
    expected_holding.sort();
    assert_eq!(
        t.holding_collections().await,
        expected_holding,
        "holding collections and deleted organizations differ"
    );
    for admin in &admins {
        let org_id = admin.get_object_id("organization_id").unwrap();
        assert!(
            orgs.iter()
                .any(|o| o.get_object_id("_id").unwrap() == org_id),
            "admin without organization: {admin}"
        );
        assert!(admin.get_str("password_hash").unwrap().starts_with("$2"));
    }
}

/// Asserts that a query `plan` (an explain's output) scans index `index`
/// and no collection; `what` names the query.
pub fn assert_index_scan(plan: &Document, index: &str, what: &str) {
    let text = plan.to_string();
    assert!(text.contains("IXSCAN"), "{what}: no index scan: {text}");
    assert!(text.contains(index), "{what}: not on {index}: {text}");
    assert!(
        !text.contains("COLLSCAN"),
        "{what}: a collection scan: {text}"
    );
}

/// Fills the tenant collection `collection` with `count` documents under a
/// unique index (created first: the local server builds indexes over existing
/// data slowly), so renames can be checked for losing either.
pub async fn fill_tenant(t: &TestApp, collection: &str, count: i64) {
    use mongodb::options::IndexOptions;
    use mongodb::IndexModel;
    let tenant = t.database().collection::<Document>(collection);
    tenant
        .create_index(
            IndexModel::builder()
                .keys(doc! {"sku": 1})
                .options(
                    IndexOptions::builder()
                        .unique(true)
                        .name("sku_unique".to_owned())
                        .build(),
                )
                .build(),
        )
        .await
        .unwrap();
    let docs: Vec<Document> = (0..count)
        .map(|i| doc! {"sku": i, "payload": format!("item {i}")})
        .collect();
    tenant.insert_many(docs).await.unwrap();
}

/// The workspace's root folder (where template.yaml and Cargo.toml are).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the shared crate sits inside the workspace")
        .to_path_buf()
}

/// `make run`'s router, `[workspace.metadata.lambda.watch.router]` in the
/// workspace's Cargo.toml, as (method, path, function) triples.
pub fn local_router() -> std::collections::BTreeSet<(String, String, String)> {
    let path = workspace_root().join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: toml::Value = text
        .parse::<toml::Table>()
        .map(toml::Value::Table)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let router = ["workspace", "metadata", "lambda", "watch", "router"]
        .iter()
        .try_fold(&manifest, |v, key| v.get(key))
        .and_then(toml::Value::as_table)
        .expect("Cargo.toml has a [workspace.metadata.lambda.watch.router] table");
    let mut routes = std::collections::BTreeSet::new();
    for (route_path, targets) in router {
        for target in targets.as_array().expect("each route lists its targets") {
            let field = |k: &str| {
                target
                    .get(k)
                    .and_then(toml::Value::as_str)
                    .unwrap_or_else(|| panic!("Cargo.toml router: {route_path} without a {k}"))
                    .to_owned()
            };
            routes.insert((field("method"), route_path.clone(), field("function")));
        }
    }
    routes
}

/// A free port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to 15 s for something to listen on `port`.
pub fn wait_for_port(port: u16) -> bool {
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A bcrypt hash of [`PASSWORD`] at cost 5: what a provisioning request
/// carries (the queue takes no plaintext); above the tests' cost of 4, so a
/// login against it is rehashed.
pub const HASH_COST_5: &str = "$2b$05$keN7EEi3UJYAro5wFnzN8u1wnB9K3UKeAf8NOtmTp6C208hSBbpkq";

/// Hands `payload` to the create function's event handler, as Lambda would.
pub async fn deliver(app: &App, payload: Value) -> Result<Value, String> {
    shared::provisioning::handle(
        app,
        shared::lambda_runtime::LambdaEvent::new(
            payload,
            shared::lambda_runtime::Context::default(),
        ),
    )
    .await
    .map_err(|e| e.to_string())
}

/// The ids of the messages an SQS batch answer reports as failed, sorted.
pub fn failed_messages(answer: &Value) -> Vec<String> {
    let mut ids: Vec<String> = answer["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// An SQS batch of `(messageId, body)` messages.
pub fn sqs(messages: &[(&str, Value)]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id, "receiptHandle": "h", "body": body.to_string(),
                "attributes": {}, "messageAttributes": {}, "md5OfBody": "",
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}
