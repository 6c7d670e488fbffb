//! HTTP mapping: reading API Gateway requests strictly, writing JSON responses.
//!
//! Request bodies are read without serde's derive so that no error message ever
//! echoes a value the client sent (a password given as a number would otherwise
//! come back in "invalid type: integer ..."). Every field is checked for its
//! exact type and length; unknown fields are refused.

pub use lambda_http::http::header::HeaderValue;
use lambda_http::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::rfc3339;
use crate::error::ApiError;
use crate::store::OrgDoc;

/// Bodies above this are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// No string field of this API needs more.
pub const MAX_FIELD_BYTES: usize = 1024;

/// A JSON response; `Cache-Control: no-store` because every answer of this API
/// is about one organization or carries a token.
pub fn json_response(status: u16, body: &impl Serialize) -> Response<Body> {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = lambda_http::http::StatusCode::from_u16(status)
        .unwrap_or(lambda_http::http::StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An organization as clients see it. Never holds a hash or internal state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub organization_id: String,
    pub organization_name: String,
    pub collection_name: String,
    pub admin_id: String,
    pub created_at: String,
}

impl From<&OrgDoc> for Organization {
    fn from(doc: &OrgDoc) -> Self {
        Self {
            organization_id: doc.id.to_hex(),
            organization_name: doc.name.clone(),
            collection_name: doc.collection_name.clone(),
            admin_id: doc.admin_id.to_hex(),
            created_at: rfc3339(doc.created_at),
        }
    }
}

pub fn error_response(err: &ApiError) -> Response<Body> {
    err.log();
    let mut response = json_response(err.status(), &err.body());
    if let ApiError::TooManyRequests { retry_after, .. } = err {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
    }
    response
}

pub fn require_method(req: &Request, method: &str) -> Result<(), ApiError> {
    if req.method().as_str() == method {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed(
            "method not allowed for this route",
        ))
    }
}

/// The raw body, refused with 413 above [`MAX_BODY_BYTES`].
fn body_bytes(req: &Request) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(s) => s.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    Ok(bytes)
}

/// A JSON object body whose keys are all in `allowed`.
pub struct JsonObject(Map<String, Value>);

pub fn json_object(req: &Request, allowed: &[&str]) -> Result<JsonObject, ApiError> {
    let bytes = body_bytes(req)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Malformed(
            "request body must be a JSON object".into(),
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::Malformed(format!(
            "request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    JsonObject::from_value(value, allowed)
}

impl JsonObject {
    /// A JSON object (from any source: a body, an event's detail, a queue
    /// message) whose keys are all in `allowed`.
    pub fn from_value(value: Value, allowed: &[&str]) -> Result<Self, ApiError> {
        let Value::Object(map) = value else {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let shown: String = unknown
                .chars()
                .take(40)
                .filter(|c| !c.is_control())
                .collect();
            return Err(ApiError::invalid(
                &shown,
                format!("unknown field; expected only {}", allowed.join(", ")),
            ));
        }
        Ok(JsonObject(map))
    }

    /// A string field that must be present.
    pub fn required(&self, field: &str) -> Result<&str, ApiError> {
        self.optional(field)?
            .ok_or_else(|| ApiError::invalid(field, "is required"))
    }

    /// A string field that may be absent (or null).
    pub fn optional(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() > MAX_FIELD_BYTES => Err(ApiError::invalid(
                field,
                format!("must be at most {MAX_FIELD_BYTES} bytes"),
            )),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(field, "must be a string")),
        }
    }
}

/// The single value of query parameter `name`.
pub fn query_param<'r>(req: &'r Request, name: &str) -> Result<&'r str, ApiError> {
    optional_query_param(req, name)?
        .ok_or_else(|| ApiError::invalid(name, "query parameter is required"))
}

/// A query parameter that may be absent, given at most once.
pub fn optional_query_param<'r>(req: &'r Request, name: &str) -> Result<Option<&'r str>, ApiError> {
    let params = req.query_string_parameters_ref();
    let values = params.and_then(|p| p.all(name)).unwrap_or_default();
    match values.as_slice() {
        [] => Ok(None),
        [one] if one.len() > MAX_FIELD_BYTES => Err(ApiError::invalid(
            name,
            format!("must be at most {MAX_FIELD_BYTES} bytes"),
        )),
        [one] => Ok(Some(one)),
        _ => Err(ApiError::invalid(name, "must be given once")),
    }
}

pub fn header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The client's address as API Gateway saw it.
pub fn source_ip(req: &Request) -> Option<&str> {
    match req.request_context_ref()? {
        lambda_http::request::RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.as_deref(),
        _ => None,
    }
}

/// The ARN of the IAM principal whose SigV4 signature the gateway checked
/// (`requestContext.authorizer.iam.userArn`, on `AWS_IAM` routes); none on
/// any other request.
pub fn iam_caller(req: &Request) -> Option<&str> {
    match req.request_context_ref()? {
        lambda_http::request::RequestContext::ApiGatewayV2(ctx) => ctx
            .authorizer
            .as_ref()?
            .iam
            .as_ref()?
            .user_arn
            .as_deref()
            .filter(|arn| arn.starts_with("arn:")),
        _ => None,
    }
}

/// The gateway's id of the request (`requestContext.requestId`), which its
/// access log carries too.
pub fn gateway_request_id(req: &Request) -> Option<&str> {
    match req.request_context_ref()? {
        lambda_http::request::RequestContext::ApiGatewayV2(ctx) => ctx.request_id.as_deref(),
        _ => None,
    }
}
