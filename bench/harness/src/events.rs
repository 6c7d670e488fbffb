//! The fixture events of `events/`, made into real requests: a unique
//! organization per create, the name to get, rename, delete or restore, the
//! query of a listing or audit page, and a real token in place of
//! `REPLACE_WITH_TOKEN`.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

pub struct Events {
    create: Value,
    login: Value,
    get: Value,
    update: Value,
    delete: Value,
    restore: Value,
    list: Value,
    audit: Value,
    authorizer: String,
}

fn load(dir: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(file))
        .map_err(|e| format!("{}: {e}", dir.join(file).display()))
}

fn parse(text: &str, file: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{file}: {e}"))
}

fn bytes(v: &Value) -> Arc<Vec<u8>> {
    Arc::new(serde_json::to_vec(v).expect("an event serializes"))
}

fn with_body(template: &Value, body: Value) -> Value {
    let mut event = template.clone();
    event["body"] = Value::String(body.to_string());
    event
}

fn with_name_query(template: &Value, name: &str) -> Value {
    let mut event = template.clone();
    event["rawQueryString"] = Value::String(format!("organization_name={name}"));
    event["queryStringParameters"] = json!({ "organization_name": name });
    event
}

fn with_query(template: &Value, query: &[(&str, &str)]) -> Value {
    let mut event = template.clone();
    let raw: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    event["rawQueryString"] = Value::String(raw.join("&"));
    let params: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect();
    event["queryStringParameters"] = Value::Object(params);
    event
}

fn with_token(event: Value, token: &str) -> Value {
    let text = event.to_string().replace("REPLACE_WITH_TOKEN", token);
    serde_json::from_str(&text).expect("still JSON")
}

pub const PASSWORD: &str = "correct-horse-battery";

pub fn email_of(org: &str) -> String {
    format!("admin@{org}.example")
}

impl Events {
    pub fn load(dir: &Path) -> Result<Self, String> {
        Ok(Self {
            create: parse(&load(dir, "create.json")?, "create.json")?,
            login: parse(&load(dir, "login.json")?, "login.json")?,
            get: parse(&load(dir, "get.json")?, "get.json")?,
            update: parse(&load(dir, "update.json")?, "update.json")?,
            delete: parse(&load(dir, "delete.json")?, "delete.json")?,
            restore: parse(&load(dir, "restore.json")?, "restore.json")?,
            list: parse(&load(dir, "list.json")?, "list.json")?,
            audit: parse(&load(dir, "audit.json")?, "audit.json")?,
            authorizer: load(dir, "authorizer.json")?,
        })
    }

    /// POST /org/create for organization `org`, admin `admin@<org>.example`.
    pub fn create(&self, org: &str) -> Arc<Vec<u8>> {
        bytes(&with_body(
            &self.create,
            json!({ "organization_name": org, "email": email_of(org), "password": PASSWORD }),
        ))
    }

    /// POST /admin/login as the admin of `org`.
    pub fn login(&self, org: &str) -> Arc<Vec<u8>> {
        bytes(&with_body(
            &self.login,
            json!({ "email": email_of(org), "password": PASSWORD }),
        ))
    }

    pub fn get(&self, org: &str) -> Arc<Vec<u8>> {
        bytes(&with_name_query(&self.get, org))
    }

    /// PUT /org/update renaming the token's organization to `new_name`.
    pub fn rename(&self, token: &str, new_name: &str) -> Arc<Vec<u8>> {
        bytes(&with_token(
            with_body(&self.update, json!({ "organization_name": new_name })),
            token,
        ))
    }

    pub fn delete(&self, token: &str, org: &str) -> Arc<Vec<u8>> {
        bytes(&with_token(with_name_query(&self.delete, org), token))
    }

    /// POST /org/restore of the deleted organization `org`, by the admin
    /// made for organization `admin_of` (its name when created).
    pub fn restore(&self, org: &str, admin_of: &str) -> Arc<Vec<u8>> {
        bytes(&with_body(
            &self.restore,
            json!({ "organization_name": org, "email": email_of(admin_of), "password": PASSWORD }),
        ))
    }

    /// GET /org/list with `query` (cursor and prefix values need no
    /// escaping: both are hex digits and name characters), signed by the
    /// fixture's IAM principal.
    pub fn list(&self, query: &[(&str, &str)]) -> Arc<Vec<u8>> {
        bytes(&with_query(&self.list, query))
    }

    /// GET /org/audit with `query`, as the admin of `token`.
    pub fn audit(&self, token: &str, query: &[(&str, &str)]) -> Arc<Vec<u8>> {
        bytes(&with_token(with_query(&self.audit, query), token))
    }

    pub fn authorizer(&self, token: &str) -> Arc<Vec<u8>> {
        Arc::new(
            self.authorizer
                .replace("REPLACE_WITH_TOKEN", token)
                .into_bytes(),
        )
    }
}

/// The status of a function's answer: `statusCode` of an HTTP response, 200
/// or 403 for an authorizer's allow or deny.
pub fn status(answer: &Value) -> u16 {
    if let Some(code) = answer.get("statusCode").and_then(Value::as_u64) {
        return code as u16;
    }
    match answer.get("isAuthorized").and_then(Value::as_bool) {
        Some(true) => 200,
        Some(false) => 403,
        None => 0,
    }
}

/// The JSON body of an HTTP response.
pub fn body(answer: &Value) -> Value {
    answer
        .get("body")
        .and_then(Value::as_str)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}
