//! Hostile clients: a corpus of several hundred requests, generated across
//! routes, fields, JSON types and encodings, that must each get a 4xx and
//! leave the database exactly as it was.

mod support;

use base64::engine::{general_purpose::STANDARD, Engine};
use serde_json::{json, Value};
use support::*;

/// Values no string field accepts: operator objects and every other JSON type.
fn wrong_types() -> Vec<Value> {
    vec![
        json!({"$ne": ""}),
        json!({"$ne": null}),
        json!({"$gt": ""}),
        json!({"$regex": ".*"}),
        json!({"$where": "sleep(1000) || true"}),
        json!({"$exists": true}),
        json!({"$in": ["victim", "acme"]}),
        json!({}),
        json!(["victim"]),
        json!([]),
        json!(0),
        json!(-1),
        json!(1.5e308),
        json!(true),
        json!(false),
    ]
}

fn owned(strings: &[&str]) -> Vec<String> {
    strings.iter().map(|s| s.to_string()).collect()
}

/// Strings that break a rule of organization names.
fn bad_names() -> Vec<String> {
    let mut v = owned(&[
        "",
        "   ",
        "a$b",
        "$where",
        "a.b",
        "system.users",
        "a b",
        "a\0b",
        "a\nb",
        "a\tb",
        "a/b",
        "a\\b",
        "a\"b",
        "a*b",
        "a<b>",
        "a:b",
        "a|b",
        "a?b",
        "ümlaut",
        "ａｃｍｅ",
        "acme😀",
        "acme\u{202e}",
        "\u{feff}acme",
        "acme\u{200b}",
        "-lead",
        "_lead",
        "system",
        "systemx",
        "admin",
        "config",
        "local",
        "org_x",
        "'; db.dropDatabase(); '",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "%2e%2e",
        "{\"$ne\":1}",
    ]);
    v.push("a".repeat(65));
    v.push("a".repeat(1025));
    v.push("a".repeat(20_000));
    v
}

/// Strings that break a rule of emails.
fn bad_emails() -> Vec<String> {
    let mut v = owned(&[
        "",
        " ",
        "plain",
        "@x.example",
        "a@",
        "a@x",
        "a@.example",
        "a@x..example",
        "a b@x.example",
        "a@x .example",
        "a\0@x.example",
        "a\n@x.example",
        "<a@x.example>",
        "\"a\"@x.example",
        "a,b@x.example",
        "a@-x.example",
        "a@x.example-",
        "{\"$ne\":null}",
    ]);
    v.push(format!("{}@x.example", "a".repeat(65)));
    v.push(format!("a@{}.example", "b".repeat(64)));
    v.push(format!("a@{}", "b.".repeat(130)));
    v.push("a".repeat(2000));
    v
}

/// Strings that break a rule of passwords.
fn bad_passwords() -> Vec<String> {
    vec![
        String::new(),
        " ".into(),
        "short".into(),
        "1234567".into(),
        "with\0nul-inside".into(),
        "x".repeat(73),
        "€".repeat(25),
        "x".repeat(1025),
        "x".repeat(15_000),
    ]
}

fn hostile_values(field: &str) -> Vec<Value> {
    let strings = match field {
        "organization_name" => bad_names(),
        "email" => bad_emails(),
        _ => bad_passwords(),
    };
    wrong_types()
        .into_iter()
        .chain(strings.into_iter().map(Value::String))
        .collect()
}

fn with_field(base: &Value, field: &str, value: Value) -> String {
    let mut body = base.clone();
    body[field] = value;
    body.to_string()
}

/// Raw bodies that are not a JSON object of the right shape.
fn bad_bodies() -> Vec<(String, bool)> {
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    vec![
        ("".into(), false),
        ("   ".into(), false),
        ("null".into(), false),
        ("0".into(), false),
        ("\"acme\"".into(), false),
        ("[]".into(), false),
        ("[{\"organization_name\":\"acme\"}]".into(), false),
        ("{".into(), false),
        ("{\"organization_name\":}".into(), false),
        ("{'organization_name':'acme'}".into(), false),
        ("organization_name=acme&email=a@b.co&password=correct-horse".into(), false),
        ("\u{feff}{\"organization_name\":\"acme\"}".into(), false),
        (deep, false),
        ("{\"organization_name\":\"acme\",\"email\":\"a@acme.example\",\"password\":\"correct-horse-battery\",\"role\":\"root\"}".into(), false),
        ("{\"organization_name\":\"acme\",\"email\":\"a@acme.example\",\"password\":\"correct-horse-battery\",\"$where\":\"1\"}".into(), false),
        (format!("{{\"organization_name\":\"{}\"}}", "x".repeat(17_000)), false),
        // Not UTF-8, delivered base64-encoded as API Gateway does for binary bodies.
        (STANDARD.encode([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), true),
        (STANDARD.encode([0xc3, 0x28]), true),
        (STANDARD.encode(b"{\"organization_name\":\"acme\0\"}"), true),
    ]
}

fn raw_event(
    method: &str,
    path: &str,
    body: &str,
    base64: bool,
    token: Option<&str>,
) -> shared::lambda_http::Request {
    let mut ev: Value =
        serde_json::from_str(&event_json(method, path, &[], Some(body), token)).unwrap();
    ev["isBase64Encoded"] = json!(base64);
    shared::lambda_http::request::from_str(&ev.to_string()).unwrap()
}

#[tokio::test]
async fn hundreds_of_hostile_requests_get_only_4xx_and_change_nothing() {
    let t = TestApp::new().await;
    let (_, token) = t.create_and_login("victim").await;
    let before = t.snapshot().await;
    let mut requests = Vec::new();

    let create_base = json!({"organization_name": "newcomer", "email": "new@newcomer.example", "password": PASSWORD});
    let login_base = json!({"email": "admin@victim.example", "password": PASSWORD});
    let update_base = json!({"organization_name": "victim", "email": "admin@victim.example", "password": PASSWORD});
    for field in ["organization_name", "email", "password"] {
        for value in hostile_values(field) {
            requests.push((
                "create",
                raw_event(
                    "POST",
                    "/org/create",
                    &with_field(&create_base, field, value.clone()),
                    false,
                    None,
                ),
            ));
            requests.push((
                "update",
                raw_event(
                    "PUT",
                    "/org/update",
                    &with_field(&update_base, field, value.clone()),
                    false,
                    Some(&token),
                ),
            ));
            if field != "organization_name" {
                requests.push((
                    "login",
                    raw_event(
                        "POST",
                        "/admin/login",
                        &with_field(&login_base, field, value),
                        false,
                        None,
                    ),
                ));
            }
        }
    }
    for name in bad_names() {
        requests.push(("get", get_org(&name)));
        requests.push(("delete", delete(Some(&token), &name)));
    }
    for (body, base64) in bad_bodies() {
        requests.push((
            "create body",
            raw_event("POST", "/org/create", &body, base64, None),
        ));
        requests.push((
            "login body",
            raw_event("POST", "/admin/login", &body, base64, None),
        ));
        requests.push((
            "update body",
            raw_event("PUT", "/org/update", &body, base64, Some(&token)),
        ));
    }
    let total = requests.len();
    assert!(total >= 300, "only {total} hostile requests");

    for (i, (what, req)) in requests.into_iter().enumerate() {
        let r = t.call(req).await;
        assert!(
            (400..500).contains(&r.status) && r.body["error"]["code"].is_string(),
            "request {i} ({what}) got {}: {}",
            r.status,
            r.body
        );
    }

    assert_eq!(t.snapshot().await, before, "the database changed");
    assert_invariants(&t).await;
    println!("{total} hostile requests, all 4xx, nothing changed");
    t.drop().await;
}
