//! `openapi.yaml` checked against the handlers, so that the published contract
//! cannot drift from what the functions answer:
//!
//! - its routes are exactly those `handlers::dispatch` serves (and those the
//!   local router of `make run` serves, which is what
//!   `scripts/schemathesis.sh` fuzzes), and the bearer scheme sits on exactly
//!   the routes that demand a token;
//! - every documented status of every route is produced here by driving the
//!   handlers against the real database, and every answer is checked against
//!   the document: the status is documented, and the content type, the
//!   documented headers and the body match what it says of that status;
//! - every error body is the one `Error` schema (the service's) or the one
//!   `GatewayError` schema (API Gateway's own answers), and the gateway's
//!   answers are documented exactly where the gateway gives them: its
//!   throttle's 429 on every route, its Lambda authorizer's 401 and 403 on
//!   the bearer routes, its IAM authorizer's 403 on the operators' route;
//! - request bodies the handlers accept are valid by the document, and the
//!   bodies the document refuses are refused by the handlers.
//!
//! No documented status is exempt: a status the handlers cannot be driven to
//! answer here does not belong in the document, unless the document gives it
//! to the gateway alone (and the gateway's answer is checked instead).

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::sync::OnceLock;

use jsonschema::{Draft, Validator};
use mongodb::bson::{self, doc, DateTime, Document};
use serde_json::{json, Value};
use shared::lambda_http::Request;
use shared::store::{OrgState, Pending};
use shared::App;
use support::*;

/// The methods probed on every path when looking for routes.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// The HTTP methods an OpenAPI path item may hold operations for.
const OPERATION_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// Failed logins tried before concluding that login does not throttle
/// (the policy locks after 5).
const MAX_FAILED_LOGINS: usize = 30;
/// The one body of the service's errors.
const ERROR_SCHEMA: &str = "/components/schemas/Error";
/// The one body of API Gateway's own answers (`{"message": ...}`).
const GATEWAY_ERROR_SCHEMA: &str = "/components/schemas/GatewayError";

// ------------------------------------------------------------ the document

fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let path = workspace_root().join("openapi.yaml");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// `token` escaped for a JSON pointer (`/` and `~`).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Follows the document's own `$ref`s (to responses, parameters, headers)
/// from `pointer`: the pointer it lands on, and what is there.
fn resolve(pointer: &str) -> (String, &'static Value) {
    let mut pointer = pointer.to_owned();
    for _ in 0..8 {
        let value = document()
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("openapi.yaml has nothing at #{pointer}"));
        match value.get("$ref").and_then(Value::as_str) {
            Some(target) => {
                pointer = target
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("openapi.yaml refers outside itself: {target}"))
                    .to_owned();
            }
            None => return (pointer, value),
        }
    }
    panic!("openapi.yaml: a $ref chain at #{pointer} is too long")
}

/// A validator for the schema at `pointer`, whose `$ref`s resolve inside the
/// document. `formats`: whether `format` is asserted (answers) or, as JSON
/// Schema 2020-12 has it by default, only an annotation (requests: an email is
/// trimmed before its rule applies, so `" a@b.co"` is a valid request value).
fn validator(pointer: &str, formats: bool) -> Validator {
    let mut root = document().clone();
    root["$ref"] = json!(format!("#{pointer}"));
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(formats)
        .build(&root)
        .unwrap_or_else(|e| panic!("openapi.yaml: the schema at #{pointer} does not compile: {e}"))
}

/// Why `instance` breaks the schema at `pointer`; empty when it does not.
fn violations(pointer: &str, formats: bool, instance: &Value) -> Vec<String> {
    validator(pointer, formats)
        .iter_errors(instance)
        .map(|e| format!("at '{}': {e}", e.instance_path()))
        .collect()
}

fn operation_pointer(method: &str, path: &str) -> String {
    format!("/paths/{}/{}", escape(path), method.to_ascii_lowercase())
}

fn operation(method: &str, path: &str) -> &'static Value {
    resolve(&operation_pointer(method, path)).1
}

/// Every (METHOD, /path) the document describes.
fn documented_routes() -> BTreeSet<(String, String)> {
    let paths = document()["paths"]
        .as_object()
        .expect("openapi.yaml has paths");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for method in item.keys() {
            if OPERATION_METHODS.contains(&method.as_str()) {
                routes.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// The statuses documented for a route; each must be a plain status code.
fn documented_statuses(method: &str, path: &str) -> BTreeSet<u16> {
    let responses = operation(method, path)["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} documents no responses"));
    responses
        .keys()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{method} {path}: response key {s:?} is not a status"))
        })
        .collect()
}

/// Who gives the answers the response at `at` (a resolved pointer) describes:
/// the service's functions, the gateway itself, or either. Its JSON schema is
/// one schema or a `oneOf` of them; an alternative that is `GatewayError` is
/// the gateway's, any other the service's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Answerers {
    service: bool,
    gateway: bool,
}

fn answerers(at: &str) -> Answerers {
    let schema = format!("{at}/content/application~1json/schema");
    let alternatives: Vec<String> = match resolve(&schema).1.get("oneOf") {
        Some(Value::Array(items)) => (0..items.len())
            .map(|i| format!("{schema}/oneOf/{i}"))
            .collect(),
        _ => vec![schema],
    };
    let mut who = Answerers {
        service: false,
        gateway: false,
    };
    for alternative in alternatives {
        if resolve(&alternative).0 == GATEWAY_ERROR_SCHEMA {
            who.gateway = true;
        } else {
            who.service = true;
        }
    }
    who
}

/// The resolved pointer of a route's documented response to `status`.
fn response_at(method: &str, path: &str, status: u16) -> String {
    resolve(&format!(
        "{}/responses/{status}",
        operation_pointer(method, path)
    ))
    .0
}

/// The route's request body schema, as a pointer.
fn request_schema(method: &str, path: &str) -> String {
    let pointer = format!(
        "{}/requestBody/content/application~1json/schema",
        operation_pointer(method, path)
    );
    assert!(
        document().pointer(&pointer).is_some(),
        "{method} {path} documents no JSON request body"
    );
    pointer
}

/// Whether the route requires the bearer scheme (its own `security`, or the
/// document's when it has none).
fn documents_bearer(method: &str, path: &str) -> bool {
    let security = operation(method, path)
        .get("security")
        .or_else(|| document().get("security"));
    security
        .and_then(Value::as_array)
        .is_some_and(|reqs| reqs.iter().any(|r| r.get("bearerAuth").is_some()))
}

/// The routes of `[workspace.metadata.lambda.watch.router]` in Cargo.toml:
/// what `make run` serves and the schemathesis run of `make test` fuzzes.
/// Each entry is one line, `"/path" = [{ method = "X", function = "f" }, ..]`.
fn local_router_routes() -> BTreeSet<(String, String)> {
    let routes: BTreeSet<(String, String)> = local_router()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    assert!(
        !routes.is_empty(),
        "Cargo.toml has no [workspace.metadata.lambda.watch.router] routes"
    );
    routes
}

// ------------------------------------------------------- answers checked

/// Checks one answer of the handlers against what the document says of its
/// route and status, and against what it says of every answer of the service
/// (which a response that the gateway's answers share cannot mark required:
/// `Cache-Control`, a 429's `Retry-After`, the `Error` body with one of the
/// response's `x-error-codes`); panics naming the difference.
fn assert_documented(method: &str, path: &str, r: &Reply) {
    assert_conforms(method, path, r);
    let route = format!("{method} {path} {}", r.status);
    let at = response_at(method, path, r.status);
    assert!(
        answerers(&at).service,
        "{route}: the document gives this status to the gateway alone; body: {}",
        r.body
    );
    let header = |name: &str| r.response.headers().get(name).map(|v| v.to_str().unwrap());
    assert_eq!(header("cache-control"), Some("no-store"), "{route}");
    if r.status < 400 {
        return;
    }
    let wrong = violations(ERROR_SCHEMA, true, &r.body);
    assert!(
        wrong.is_empty(),
        "{route}: the body is not the service's Error:\n{}\n{wrong:#?}",
        r.body
    );
    let codes = &resolve(&at).1["x-error-codes"];
    assert!(
        codes
            .as_array()
            .is_some_and(|codes| codes.contains(&r.body["error"]["code"])),
        "{route}: code {} is not among the response's x-error-codes {codes}",
        r.body["error"]["code"]
    );
    if r.status == 429 {
        assert!(header("retry-after").is_some(), "{route}: no Retry-After");
    }
}

/// Checks one answer, the service's or the gateway's, against what the
/// document says of its route and status; panics naming the difference.
fn assert_conforms(method: &str, path: &str, r: &Reply) {
    let route = format!("{method} {path} {}", r.status);
    let at = format!("{}/responses/{}", operation_pointer(method, path), r.status);
    assert!(
        document().pointer(&at).is_some(),
        "{route} is not documented in openapi.yaml; body: {}",
        r.body
    );
    let (at, response) = resolve(&at);

    let header = |name: &str| {
        r.response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("an ASCII header").to_owned())
    };
    let content_type = header("content-type").unwrap_or_default();
    assert!(
        response["content"].get(&content_type).is_some(),
        "{route}: Content-Type {content_type:?} is not documented"
    );

    let documented_headers = response.get("headers").and_then(Value::as_object);
    for name in r.response.headers().keys() {
        let known = name == "content-type"
            || documented_headers
                .is_some_and(|h| h.keys().any(|d| d.eq_ignore_ascii_case(name.as_str())));
        assert!(known, "{route}: header {name} is not documented");
    }
    if let Some(headers) = documented_headers {
        for name in headers.keys() {
            let (header_at, spec) = resolve(&format!("{at}/headers/{}", escape(name)));
            let Some(text) = header(name) else {
                assert!(
                    spec["required"] != true,
                    "{route}: required header {name} is missing"
                );
                continue;
            };
            let value = match spec["schema"]["type"].as_str() {
                Some("integer") => text.parse::<i64>().map_or(json!(text), Value::from),
                _ => json!(text),
            };
            let wrong = violations(&format!("{header_at}/schema"), true, &value);
            assert!(
                wrong.is_empty(),
                "{route}: header {name}: {text:?} {wrong:?}"
            );
        }
    }

    let schema = format!("{at}/content/{}/schema", escape(&content_type));
    let wrong = violations(&schema, true, &r.body);
    assert!(
        wrong.is_empty(),
        "{route}: the body breaks #{schema}:\n{}\n{wrong:#?}",
        r.body
    );
}

/// The answers of one route, checked as they come, and the statuses seen.
struct RouteProbe {
    method: &'static str,
    path: &'static str,
    produced: BTreeSet<u16>,
}

impl RouteProbe {
    fn new(method: &'static str, path: &'static str) -> Self {
        Self {
            method,
            path,
            produced: BTreeSet::new(),
        }
    }

    /// Checks that `r` has `status` and is what the document says of it.
    fn expect(&mut self, status: u16, r: Reply) -> Reply {
        assert_eq!(
            r.status, status,
            "{} {}: unexpected answer {}",
            self.method, self.path, r.body
        );
        assert_documented(self.method, self.path, &r);
        self.produced.insert(status);
        r
    }

    /// Every documented status of the route that the service answers was
    /// produced (those of the gateway alone are checked by
    /// `the_gateways_own_answers_are_documented_exactly_where_the_gateway_gives_them`).
    fn assert_every_documented_status_was_produced(&self) {
        let documented: BTreeSet<u16> = documented_statuses(self.method, self.path)
            .into_iter()
            .filter(|&s| answerers(&response_at(self.method, self.path, s)).service)
            .collect();
        let missing: Vec<&u16> = documented.difference(&self.produced).collect();
        assert!(
            missing.is_empty(),
            "{} {}: openapi.yaml documents {missing:?}, which the handlers were never \
             driven to answer here (produced {:?})",
            self.method,
            self.path,
            self.produced
        );
    }
}

/// Repeats a request that fails (401) until it is throttled (429), each
/// answer checked against the document.
async fn until_throttled(route: &mut RouteProbe, t: &TestApp, request: impl Fn() -> Request) {
    until_throttled_after(route, t, 401, request).await;
}

/// The same for a route whose failed attempt is `failure`.
async fn until_throttled_after(
    route: &mut RouteProbe,
    t: &TestApp,
    failure: u16,
    request: impl Fn() -> Request,
) {
    for _ in 0..MAX_FAILED_LOGINS {
        let r = t.call(request()).await;
        if r.status == 429 {
            route.expect(429, r);
            return;
        }
        route.expect(failure, r);
    }
}

async fn call(app: &App, req: Request) -> Reply {
    reply(shared::handlers::dispatch(app, req).await)
}

/// Leaves organization `name` as a delete that has just started and not
/// finished leaves it (a crash, or a concurrent request): within the
/// operation's lease, everything else on it gets 409.
async fn leave_a_delete_in_progress(t: &TestApp, name: &str) {
    leave_a_delete_since(t, name, DateTime::now()).await;
}

async fn leave_a_delete_since(t: &TestApp, name: &str, started_at: DateTime) {
    let pending = Pending::new(started_at);
    let marked = t
        .database()
        .collection::<Document>(shared::store::ORGANIZATIONS)
        .update_one(
            doc! { "name": name },
            doc! { "$set": {
                "state": bson::to_bson(&OrgState::Deleting).unwrap(),
                "pending": bson::to_document(&pending).unwrap(),
            } },
        )
        .await
        .unwrap();
    assert_eq!(marked.matched_count, 1, "no organization {name}");
}

/// Leaves organization `name` as a delete that started long ago and died
/// before removing anything: whoever meets it next finishes it.
async fn leave_a_delete_abandoned(t: &TestApp, name: &str) {
    let long_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
    leave_a_delete_since(t, name, long_ago).await;
}

/// A create request whose body is bytes that are not UTF-8, as API Gateway
/// delivers such a body: base64-encoded.
fn create_with_bytes(bytes: &[u8]) -> Request {
    use base64::Engine as _;
    let text = event_json("POST", "/org/create", &[], Some(""), None);
    let mut ev: Value = serde_json::from_str(&text).unwrap();
    ev["body"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    ev["isBase64Encoded"] = json!(true);
    shared::lambda_http::request::from_str(&ev.to_string()).expect("a valid v2 event")
}

fn with_idempotency_key(mut req: Request, key: &str) -> Request {
    let value = key.parse().expect("a header value");
    req.headers_mut().insert("idempotency-key", value);
    req
}

/// A body over the 16 KiB cap, otherwise well-formed.
fn oversized(fields: Value) -> String {
    let mut body = fields;
    body["password"] = json!("x".repeat(20_000));
    body.to_string()
}

// ------------------------------------------------------------ the routes

#[tokio::test]
async fn the_document_names_exactly_the_routes_the_handlers_serve() {
    let t = TestApp::new().await;
    let documented = documented_routes();
    let mut paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();
    paths.extend(local_router_routes().into_iter().map(|(_, p)| p));
    let with_slash: Vec<String> = paths.iter().map(|p| format!("{p}/")).collect();
    paths.extend(with_slash);
    paths.insert("/".to_owned());

    let mut served = BTreeSet::new();
    for path in &paths {
        for method in METHODS {
            let r = t.call(event(method, path, &[], None, None)).await;
            let unrouted = r.status == 404 && r.body["error"]["message"] == "no such route";
            if !unrouted {
                served.insert((method.to_owned(), path.clone()));
            }
        }
    }

    assert_eq!(documented, served, "openapi.yaml vs handlers::dispatch");
    assert_eq!(
        local_router_routes(),
        documented,
        "the local API's router (Cargo.toml) vs openapi.yaml"
    );
    t.drop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_documented_on_exactly_the_routes_that_demand_a_token() {
    let t = TestApp::new().await;
    let scheme = &document()["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&json!("http"), &json!("bearer"))
    );

    for (method, path) in documented_routes() {
        // Nothing at all: a protected route refuses it for the token before
        // reading anything else; the others, for the missing body or query.
        let r = t.call(event(&method, &path, &[], None, None)).await;
        assert_documented(&method, &path, &r);
        assert_eq!(
            documents_bearer(&method, &path),
            r.status == 401,
            "{method} {path} answers {} without a token",
            r.status
        );
    }
    t.drop().await;
}

#[tokio::test]
async fn the_sigv4_scheme_is_documented_on_exactly_the_routes_behind_iam() {
    let t = TestApp::new().await;
    let scheme = &document()["components"]["securitySchemes"]["sigv4"];
    assert_eq!(scheme["x-amazon-apigateway-authtype"], "awsSigv4");

    for (method, path) in documented_routes() {
        let security = operation(&method, &path)
            .get("security")
            .or_else(|| document().get("security"));
        let documents_sigv4 = security
            .and_then(Value::as_array)
            .is_some_and(|reqs| reqs.iter().any(|r| r.get("sigv4").is_some()));
        let behind_iam = shared::functions::Function::for_route(&method, &path)
            .and_then(|f| f.route())
            .is_some_and(|r| r.auth == shared::functions::Auth::Iam);
        assert_eq!(documents_sigv4, behind_iam, "{method} {path}");
        if behind_iam {
            let r = t.call(event(&method, &path, &[], None, None)).await;
            assert_documented(&method, &path, &r);
            assert_eq!(r.status, 403, "{method} {path} without an IAM identity");
        }
    }
    t.drop().await;
}

#[test]
fn the_document_is_openapi_3_1_and_every_answer_of_the_service_is_json_and_never_cached() {
    assert_eq!(document()["openapi"], "3.1.0");
    let codes = document()
        .pointer(&format!(
            "{ERROR_SCHEMA}/properties/error/properties/code/enum"
        ))
        .and_then(Value::as_array)
        .expect("Error names its codes");
    for (method, path) in documented_routes() {
        if operation(&method, &path).get("requestBody").is_some() {
            validator(&request_schema(&method, &path), false);
        }
        for status in documented_statuses(&method, &path) {
            let route = format!("{method} {path} {status}");
            let at = response_at(&method, &path, status);
            let response = resolve(&at).1;
            let media: Vec<&String> = response["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{route} documents no content"))
                .keys()
                .collect();
            assert_eq!(media, ["application/json"], "{route}");
            validator(&format!("{at}/content/application~1json/schema"), true);

            let who = answerers(&at);
            if !who.service {
                let headers = response.get("headers").and_then(Value::as_object);
                assert!(
                    headers.is_none_or(|h| h.is_empty()),
                    "{route}: the gateway's own answer carries none of the service's headers"
                );
                continue;
            }
            // Required, unless the gateway's answers (which have neither)
            // share the status; assert_documented checks every answer of the
            // service for them all the same.
            let (_, cache_control) = resolve(&format!("{at}/headers/Cache-Control"));
            assert_eq!(cache_control["required"], !who.gateway, "{route}");
            assert_eq!(cache_control["schema"]["const"], "no-store", "{route}");
            if status == 429 {
                let (_, retry_after) = resolve(&format!("{at}/headers/Retry-After"));
                assert_eq!(retry_after["required"], !who.gateway, "{route}");
            }
            if status >= 400 {
                let listed = response["x-error-codes"]
                    .as_array()
                    .filter(|listed| !listed.is_empty())
                    .unwrap_or_else(|| panic!("{route}: the response lists no x-error-codes"));
                for code in listed {
                    assert!(
                        codes.contains(code),
                        "{route}: x-error-codes names {code}, which Error does not have"
                    );
                }
            }
        }
    }
}

#[test]
fn every_error_response_refers_to_the_one_error_body_of_the_service_or_of_the_gateway() {
    let allowed = [ERROR_SCHEMA, GATEWAY_ERROR_SCHEMA].map(|p| json!(format!("#{p}")));
    for (method, path) in documented_routes() {
        for status in documented_statuses(&method, &path) {
            if status < 400 {
                continue;
            }
            let route = format!("{method} {path} {status}");
            let declared = &operation(&method, &path)["responses"][status.to_string()];
            assert!(
                declared["$ref"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("#/components/responses/")),
                "{route}: an error response is a $ref to components/responses, not {declared}"
            );
            let at = response_at(&method, &path, status);
            let schema = &resolve(&at).1["content"]["application/json"]["schema"];
            let alternatives: Vec<&Value> = match schema.get("oneOf") {
                Some(Value::Array(items)) => {
                    assert_eq!(schema.as_object().unwrap().len(), 1, "{route}: {schema}");
                    items.iter().collect()
                }
                _ => vec![schema],
            };
            for alternative in alternatives {
                let is_ref = alternative.as_object().is_some_and(|o| o.len() == 1)
                    && allowed.contains(&alternative["$ref"]);
                assert!(
                    is_ref,
                    "{route}: an error body is Error or GatewayError by $ref, never declared \
                     in place: {alternative}"
                );
            }
        }
    }
}

#[test]
fn the_gateways_own_answers_are_documented_exactly_where_the_gateway_gives_them() {
    use shared::functions::Auth;
    use shared::lambda_http::http::{HeaderValue, StatusCode};
    use shared::lambda_http::{Body, Response};

    // The stage's throttle covers every route (RouteSettings only lower it
    // on some): the gateway may answer 429 anywhere.
    let path = workspace_root().join("template.yaml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let template: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let apis: Vec<&serde_yaml::Value> = template["Resources"]
        .as_mapping()
        .expect("template.yaml has Resources")
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::Serverless::HttpApi"))
        .collect();
    assert_eq!(apis.len(), 1, "one HTTP API");
    let defaults = &apis[0]["Properties"]["DefaultRouteSettings"];
    for limit in ["ThrottlingBurstLimit", "ThrottlingRateLimit"] {
        assert!(
            defaults[limit].as_f64().is_some(),
            "the HTTP API's DefaultRouteSettings set no {limit}"
        );
    }

    for (method, path) in documented_routes() {
        let auth = shared::functions::Function::for_route(&method, &path)
            .and_then(|f| f.route())
            .unwrap_or_else(|| panic!("{method} {path} is no function's route"))
            .auth;
        let mut expected = vec![(429, "Too Many Requests")];
        match auth {
            // The Lambda authorizer: no Authorization header, or a token it refuses.
            Auth::Bearer => expected.extend([(401, "Unauthorized"), (403, "Forbidden")]),
            // The IAM authorizer: unsigned, badly signed, or not permitted.
            Auth::Iam => expected.push((403, "Forbidden")),
            Auth::Public => {}
        }
        let documented: BTreeSet<u16> = documented_statuses(&method, &path)
            .into_iter()
            .filter(|&s| answerers(&response_at(&method, &path, s)).gateway)
            .collect();
        let given: BTreeSet<u16> = expected.iter().map(|&(s, _)| s).collect();
        assert_eq!(
            documented, given,
            "{method} {path}: the statuses documented as the gateway's own answers"
        );
        for (status, message) in expected {
            // As API Gateway words it: JSON, and none of the service's headers.
            let mut response = Response::new(Body::Text(json!({ "message": message }).to_string()));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            assert_conforms(&method, &path, &reply(response));
        }
    }
}

// ------------------------------------------------- every status, per route

#[tokio::test]
async fn login_answers_every_documented_status_as_the_document_describes_it() {
    let t = TestApp::new().await;
    let mut route = RouteProbe::new("POST", "/admin/login");
    let email = "admin@acme.example";
    assert_eq!(t.create("acme", email).await.status, 201);

    route.expect(200, t.call(login_request(email, PASSWORD)).await);
    route.expect(400, t.call(post_raw("/admin/login", "{\"email\":")).await);
    route.expect(401, t.call(login_request(email, "wrong-password")).await);
    let huge = oversized(json!({"email": email}));
    route.expect(413, t.call(post_raw("/admin/login", &huge)).await);
    route.expect(422, t.call(login_request("not-an-email", PASSWORD)).await);
    let down = with_unreachable_database(&t);
    route.expect(503, call(&down, login_request(email, PASSWORD)).await);
    // Repeated failures for one email from one address are throttled.
    until_throttled(&mut route, &t, || login_request(email, "wrong-password")).await;

    route.assert_every_documented_status_was_produced();
    t.drop().await;
}

#[tokio::test]
async fn create_answers_every_documented_status_as_the_document_describes_it() {
    let t = TestApp::new().await;
    let mut route = RouteProbe::new("POST", "/org/create");
    let body =
        json!({"organization_name": "acme", "email": "a@acme.example", "password": PASSWORD});

    route.expect(201, t.call(post("/org/create", &body)).await);
    route.expect(400, t.call(post_raw("/org/create", "{not json")).await);
    route.expect(400, t.call(create_with_bytes(b"\xff\xfe{")).await);
    let taken =
        json!({"organization_name": "ACME", "email": "b@acme.example", "password": PASSWORD});
    route.expect(409, t.call(post("/org/create", &taken)).await);
    route.expect(
        413,
        t.call(post_raw("/org/create", &oversized(body.clone())))
            .await,
    );
    let dotted =
        json!({"organization_name": "a.b", "email": "c@acme.example", "password": PASSWORD});
    route.expect(422, t.call(post("/org/create", &dotted)).await);
    let down = with_unreachable_database(&t);
    let fresh =
        json!({"organization_name": "other", "email": "d@acme.example", "password": PASSWORD});
    route.expect(503, call(&down, post("/org/create", &fresh)).await);

    // With an Idempotency-Key: the repeat replays the first answer, marked.
    let keyed =
        json!({"organization_name": "keyed", "email": "k@keyed.example", "password": PASSWORD});
    let first = t
        .call(with_idempotency_key(post("/org/create", &keyed), "k-1"))
        .await;
    route.expect(201, first);
    let again = t
        .call(with_idempotency_key(post("/org/create", &keyed), "k-1"))
        .await;
    let again = route.expect(201, again);
    assert_eq!(again.response.headers()["idempotent-replayed"], "true");
    let reused = t
        .call(with_idempotency_key(post("/org/create", &fresh), "k-1"))
        .await;
    let reused = route.expect(422, reused);
    assert_eq!(reused.body["error"]["field"], "idempotency-key");
    let spaced = t
        .call(with_idempotency_key(post("/org/create", &fresh), "a key"))
        .await;
    route.expect(422, spaced);

    // One source address past its hourly limit of creates.
    let limited = TestApp::configured(|c| c.limits.creates_per_source_per_hour = Some(1)).await;
    route.expect(201, limited.call(post("/org/create", &body)).await);
    route.expect(429, limited.call(post("/org/create", &fresh)).await);
    limited.drop().await;

    route.assert_every_documented_status_was_produced();
    t.drop().await;
}

#[tokio::test]
async fn get_answers_every_documented_status_as_the_document_describes_it() {
    let t = TestApp::new().await;
    let mut route = RouteProbe::new("GET", "/org/get");
    t.create("acme", "a@acme.example").await;
    t.create("busy", "a@busy.example").await;
    leave_a_delete_in_progress(&t, "busy").await;

    route.expect(200, t.call(get_org("Acme")).await);
    route.expect(404, t.call(get_org("nobody")).await);
    route.expect(409, t.call(get_org("busy")).await);
    route.expect(422, t.call(get_org("a.b")).await);
    let down = with_unreachable_database(&t);
    route.expect(503, call(&down, get_org("acme")).await);

    route.assert_every_documented_status_was_produced();
    t.drop().await;
}

#[tokio::test]
async fn update_answers_every_documented_status_as_the_document_describes_it() {
    let t = TestApp::new().await;
    let mut route = RouteProbe::new("PUT", "/org/update");
    let (_, token) = t.create_and_login("acme").await;
    t.create("taken", "a@taken.example").await;
    let (_, abandoned_token) = t.create_and_login("abandoned").await;
    leave_a_delete_abandoned(&t, "abandoned").await;
    let rename = |name: &str| json!({"organization_name": name});
    let raw = |body: &str| event("PUT", "/org/update", &[], Some(body), Some(&token));

    route.expect(
        200,
        t.call(update(Some(&token), &rename("acme-labs"))).await,
    );
    route.expect(400, t.call(raw("{\"organization_name\":")).await);
    route.expect(401, t.call(update(None, &rename("x"))).await);
    // The organization went while its admin still had a session: a delete
    // that died past its lease, finished by this request.
    route.expect(
        404,
        t.call(update(Some(&abandoned_token), &rename("x"))).await,
    );
    route.expect(409, t.call(update(Some(&token), &rename("taken"))).await);
    route.expect(413, t.call(raw(&oversized(rename("x")))).await);
    route.expect(422, t.call(update(Some(&token), &rename("a.b"))).await);
    let down = with_unreachable_database(&t);
    route.expect(503, call(&down, update(Some(&token), &rename("x"))).await);
    // Wrong current passwords are throttled like failed logins.
    let guess = json!({"organization_name": "acme-labs", "password": "a-new-strong-passphrase-7", "current_password": "wrong-password"});
    until_throttled(&mut route, &t, || update(Some(&token), &guess)).await;

    route.assert_every_documented_status_was_produced();
    t.drop().await;
}

#[tokio::test]
async fn delete_answers_every_documented_status_as_the_document_describes_it() {
    let t = TestApp::new().await;
    let mut route = RouteProbe::new("DELETE", "/org/delete");
    let (_, token) = t.create_and_login("acme").await;
    let (_, other_token) = t.create_and_login("other").await;
    let (_, busy_token) = t.create_and_login("busy").await;
    leave_a_delete_in_progress(&t, "busy").await;

    route.expect(401, t.call(delete(None, "acme")).await);
    route.expect(403, t.call(delete(Some(&other_token), "acme")).await);
    route.expect(404, t.call(delete(Some(&token), "nobody")).await);
    route.expect(409, t.call(delete(Some(&busy_token), "busy")).await);
    route.expect(422, t.call(delete(Some(&token), "a.b")).await);
    let down = with_unreachable_database(&t);
    route.expect(503, call(&down, delete(Some(&token), "acme")).await);
    route.expect(200, t.call(delete(Some(&token), "acme")).await);

    route.assert_every_documented_status_was_produced();
    t.drop().await;
}

#[tokio::test]
async fn restore_answers_every_documented_status_as_the_document_describes_it() {
    let t = TestApp::new().await;
    let mut route = RouteProbe::new("POST", "/org/restore");
    // Four deleted organizations: one restored, one whose name is taken
    // since, one whose email is, one left mid-restore.
    for name in ["acme", "named", "mailed", "busy"] {
        let (_, token) = t.create_and_login(name).await;
        assert_eq!(t.call(delete(Some(&token), name)).await.status, 200);
    }
    assert_eq!(
        t.create("named", "newcomer@named.example").await.status,
        201
    );
    assert_eq!(t.create("other", "admin@mailed.example").await.status, 201);
    t.database()
        .collection::<Document>("deleted_organizations")
        .update_one(
            doc! { "name": "busy" },
            doc! { "$set": { "state": "restoring", "pending": bson::to_document(&Pending::new(DateTime::now())).unwrap() } },
        )
        .await
        .unwrap();

    let acme = |p: &str| restore_request("acme", "admin@acme.example", p, None);
    route.expect(400, t.call(post_raw("/org/restore", "{\"email\":")).await);
    let huge = oversized(json!({"organization_name": "acme", "email": "admin@acme.example"}));
    route.expect(413, t.call(post_raw("/org/restore", &huge)).await);
    route.expect(
        422,
        t.call(restore_request("a.b", "admin@acme.example", PASSWORD, None))
            .await,
    );
    route.expect(404, t.call(acme("wrong-password")).await);
    let down = with_unreachable_database(&t);
    route.expect(503, call(&down, acme(PASSWORD)).await);
    let conflicts = [
        restore_request("named", "admin@named.example", PASSWORD, None),
        restore_request("named", "admin@named.example", PASSWORD, Some("other")),
        restore_request("mailed", "admin@mailed.example", PASSWORD, None),
        restore_request("busy", "admin@busy.example", PASSWORD, None),
    ];
    let mut codes = Vec::new();
    for request in conflicts {
        let r = route.expect(409, t.call(request).await);
        codes.push(r.body["error"]["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        codes,
        [
            "restore_name_taken",
            "organization_exists",
            "email_taken",
            "operation_in_progress"
        ]
    );
    route.expect(200, t.call(acme(PASSWORD)).await);
    // Wrong passwords are throttled like failed logins (a 404 each, then 429).
    until_throttled_after(&mut route, &t, 404, || {
        restore_request("named", "admin@named.example", "wrong-password", None)
    })
    .await;

    route.assert_every_documented_status_was_produced();
    t.drop().await;
}

#[tokio::test]
async fn audit_answers_every_documented_status_as_the_document_describes_it() {
    let t = TestApp::new().await;
    let mut route = RouteProbe::new("GET", "/org/audit");
    let (_, token) = t.create_and_login("acme").await;
    let page = |query: &[(&str, &str)], token: Option<&str>| {
        event("GET", "/org/audit", query, None, token)
    };

    route.expect(200, t.call(page(&[("limit", "1")], Some(&token))).await);
    route.expect(401, t.call(page(&[], None)).await);
    route.expect(422, t.call(page(&[("limit", "0")], Some(&token))).await);
    route.expect(422, t.call(page(&[("cursor", "x")], Some(&token))).await);
    let down = with_unreachable_database(&t);
    route.expect(503, call(&down, page(&[], Some(&token))).await);

    route.assert_every_documented_status_was_produced();
    t.drop().await;
}

#[tokio::test]
async fn list_answers_every_documented_status_as_the_document_describes_it() {
    let t = TestApp::new().await;
    let mut route = RouteProbe::new("GET", "/org/list");
    let (_, token) = t.create_and_login("acme").await;
    t.create_and_login("beta").await;

    let first = route.expect(
        200,
        t.call(list_request(&[("limit", "1")], Some(OPERATOR_ARN)))
            .await,
    );
    let next = first.body["next_cursor"].as_str().unwrap().to_owned();
    route.expect(
        200,
        t.call(list_request(&[("cursor", &next)], Some(OPERATOR_ARN)))
            .await,
    );
    assert_eq!(t.call(delete(Some(&token), "acme")).await.status, 200);
    route.expect(
        200,
        t.call(list_request(&[("state", "deleted")], Some(OPERATOR_ARN)))
            .await,
    );
    route.expect(403, t.call(list_request(&[], None)).await);
    for (field, value) in [
        ("limit", "0"),
        ("cursor", "x"),
        ("state", "gone"),
        ("prefix", "a b"),
    ] {
        route.expect(
            422,
            t.call(list_request(&[(field, value)], Some(OPERATOR_ARN)))
                .await,
        );
    }
    let down = with_unreachable_database(&t);
    route.expect(
        503,
        call(&down, list_request(&[], Some(OPERATOR_ARN))).await,
    );

    route.assert_every_documented_status_was_produced();
    t.drop().await;
}

// ------------------------------------------------------- request bodies

#[tokio::test]
async fn bodies_the_handlers_accept_are_valid_by_the_document_and_those_it_refuses_are_refused() {
    let t = TestApp::new().await;
    let (_, token) = t.create_and_login("acme").await;
    let long_name = "a".repeat(64);
    // 72 bytes, the most bcrypt reads, and hard to guess.
    let long_password = "quartz-lantern-meadow-7-".repeat(3);
    let long = |n: usize| "n".repeat(n);
    // (method, path, body, whether the handler accepts it)
    let cases = [
        // Raw values are normalised: padding and capitals are fine; a
        // password is bounded in bytes, not characters (the three 3-byte
        // characters here count as 9).
        (
            "POST",
            "/org/create",
            json!({"organization_name": " Acme-Labs ", "email": " Admin@Labs.Example ", "password": "€€€-kettle-orbit"}),
            true,
        ),
        (
            "POST",
            "/org/create",
            json!({"organization_name": long_name, "email": "b@long.example", "password": long_password}),
            true,
        ),
        (
            "POST",
            "/org/create",
            json!({"organization_name": "x1", "email": "c@x.example", "password": PASSWORD, "admin": true}),
            false,
        ),
        (
            "POST",
            "/org/create",
            json!({"organization_name": 5, "email": "c@x.example", "password": PASSWORD}),
            false,
        ),
        (
            "POST",
            "/org/create",
            json!({"organization_name": null, "email": "c@x.example", "password": PASSWORD}),
            false,
        ),
        (
            "POST",
            "/org/create",
            json!({"organization_name": "x1", "email": "c@x.example"}),
            false,
        ),
        (
            "POST",
            "/org/create",
            json!({"organization_name": "x1", "email": "c@x.example", "password": "x"}),
            false,
        ),
        (
            "POST",
            "/org/create",
            json!({"organization_name": "x1", "email": "c@x.example", "password": "x".repeat(73)}),
            false,
        ),
        (
            "POST",
            "/org/create",
            json!({"organization_name": long(1025), "email": "c@x.example", "password": PASSWORD}),
            false,
        ),
        (
            "POST",
            "/org/create",
            json!({"organization_name": "x1", "email": {"$ne": ""}, "password": PASSWORD}),
            false,
        ),
        (
            "POST",
            "/org/create",
            json!(["x1", "c@x.example", PASSWORD]),
            false,
        ),
        (
            "POST",
            "/admin/login",
            json!({"email": " B@Long.Example ", "password": long_password}),
            true,
        ),
        (
            "POST",
            "/admin/login",
            json!({"email": "b@long.example", "password": PASSWORD, "remember": true}),
            false,
        ),
        (
            "POST",
            "/admin/login",
            json!({"email": "b@long.example"}),
            false,
        ),
        (
            "POST",
            "/admin/login",
            json!({"email": 1, "password": PASSWORD}),
            false,
        ),
        (
            "PUT",
            "/org/update",
            json!({"organization_name": "Acme-Two", "email": null, "password": null}),
            true,
        ),
        (
            "PUT",
            "/org/update",
            json!({"organization_name": "acme-two", "email": "new@acme.example", "password": "a-new-passphrase"}),
            true,
        ),
        (
            "PUT",
            "/org/update",
            json!({"email": "new@acme.example"}),
            false,
        ),
        (
            "PUT",
            "/org/update",
            json!({"organization_name": "acme-two", "owner": "me"}),
            false,
        ),
        (
            "PUT",
            "/org/update",
            json!({"organization_name": "acme-two", "password": "x".repeat(73)}),
            false,
        ),
        (
            "PUT",
            "/org/update",
            json!({"organization_name": "acme-two", "email": false}),
            false,
        ),
    ];

    for (method, path, body, accepted) in cases {
        let wrong = violations(&request_schema(method, path), false, &body);
        let req = event(method, path, &[], Some(&body.to_string()), Some(&token));
        let r = t.call(req).await;
        assert_documented(method, path, &r);
        assert_eq!(
            wrong.is_empty(),
            accepted,
            "{method} {path} {body}: the document's verdict differs from the handler's ({wrong:?})"
        );
        let expected = if accepted {
            r.status < 300
        } else {
            r.status == 422
        };
        assert!(
            expected,
            "{method} {path} {body}: answered {} {}",
            r.status, r.body
        );
    }
    t.drop().await;
}
