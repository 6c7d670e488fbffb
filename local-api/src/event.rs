//! An HTTP request as the API Gateway HTTP API event (payload format 2.0)
//! the gateway sends a function, and the function's answer back as HTTP.
//!
//! As the gateway does: header names lower-cased and repeated headers joined
//! with commas, cookies in their own list, query parameters percent-decoded
//! (repeated ones joined with commas) beside the raw query string, and the
//! body passed as text only when it is text: valid UTF-8 under a textual
//! content type (or none). Anything else, a JSON-labelled body that is not
//! UTF-8 included, arrives base64-encoded with `isBase64Encoded`, for the
//! function to judge. Nothing a client sends makes the conversion fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, COOKIE, SET_COOKIE};
use hyper::{HeaderMap, Method, Response, StatusCode, Uri};
use serde_json::{json, Map, Value};

/// What the event is built from.
pub struct Incoming<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub peer: SocketAddr,
    pub request_id: &'a str,
    /// The IAM principal whose SigV4 signature the gateway is taken to have
    /// checked; none for an unsigned request.
    pub iam_caller: Option<&'a str>,
}

pub fn to_event(req: &Incoming<'_>) -> Value {
    let path = req.uri.path();
    let raw_query = req.uri.query().unwrap_or("");
    let route_key = format!("{} {}", req.method, path);

    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in req.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == COOKIE {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let host = headers
        .get("host")
        .cloned()
        .unwrap_or_else(|| "localhost".to_owned());

    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k), decode(v));
        query
            .entry(k)
            .and_modify(|existing| {
                existing.push(',');
                existing.push_str(&v);
            })
            .or_insert(v);
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(""),
            "http": {
                "method": req.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": req.peer.ip().to_string(),
                "userAgent": headers.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": req.request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": clf_time(now.as_secs()),
            "timeEpoch": now.as_millis() as u64,
        },
        "isBase64Encoded": false,
    });
    let fields = event
        .as_object_mut()
        .expect("the event literal is an object");
    if let Some(arn) = req.iam_caller {
        if let Some(context) = fields
            .get_mut("requestContext")
            .and_then(Value::as_object_mut)
        {
            context.insert("authorizer".into(), iam_identity(arn));
        }
    }
    if !cookies.is_empty() {
        fields.insert("cookies".into(), json!(cookies));
    }
    if !query.is_empty() {
        fields.insert("queryStringParameters".into(), json!(query));
    }
    if !req.body.is_empty() {
        let content_type = req
            .headers
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase());
        match std::str::from_utf8(req.body) {
            Ok(text) if is_textual(content_type.as_deref()) => {
                fields.insert("body".into(), json!(text));
            }
            _ => {
                fields.insert("body".into(), json!(STANDARD.encode(req.body)));
                fields.insert("isBase64Encoded".into(), json!(true));
            }
        }
    }
    event
}

/// Content types whose bodies the gateway passes as text.
fn is_textual(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.is_empty()
        || essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence,
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
        )
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The identity API Gateway adds to the event of an `AWS_IAM` route once it
/// has checked the request's signature, for the principal `arn`.
fn iam_identity(arn: &str) -> Value {
    let account = arn.split(':').nth(4).unwrap_or_default();
    json!({ "iam": {
        "accessKey": "ASIALOCALAPIEXAMPLE",
        "accountId": account,
        "callerId": "AROALOCALAPIEXAMPLE:local",
        "cognitoIdentity": null,
        "principalOrgId": null,
        "userArn": arn,
        "userId": "AROALOCALAPIEXAMPLE:local",
    }})
}

/// `12/Mar/2020:19:03:58 +0000`, the gateway's `requestContext.time`.
fn clf_time(epoch_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (epoch_secs / 86_400) as i64;
    let secs = epoch_secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A gateway-made answer: `{"message": ...}`, as API Gateway words its own.
pub fn gateway_answer(status: StatusCode, message: &str) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(json!({ "message": message }).to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The function's answer (payload 2.0) as HTTP. A JSON object with a
/// `statusCode` is a full response; any other JSON value is a 200 whose body
/// it is, as the gateway infers; what is not JSON is the gateway's 502.
pub fn from_function(output: &[u8]) -> Response<Bytes> {
    let Ok(value) = serde_json::from_slice::<Value>(output) else {
        return gateway_answer(StatusCode::BAD_GATEWAY, "Internal Server Error");
    };
    let Some(fields) = value.as_object().filter(|o| o.contains_key("statusCode")) else {
        let mut resp = Response::new(Bytes::from(value.to_string()));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return resp;
    };
    match structured(fields) {
        Some(resp) => resp,
        None => gateway_answer(StatusCode::BAD_GATEWAY, "Internal Server Error"),
    }
}

fn structured(fields: &Map<String, Value>) -> Option<Response<Bytes>> {
    let status = fields.get("statusCode")?.as_u64()?;
    let status = StatusCode::from_u16(u16::try_from(status).ok()?).ok()?;
    let body = match fields.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if fields.get("isBase64Encoded") == Some(&json!(true)) => {
            Bytes::from(STANDARD.decode(s).ok()?)
        }
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    let mut add = |name: &str, value: &Value| {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(n, v);
        }
    };
    if let Some(Value::Object(h)) = fields.get("headers") {
        for (name, value) in h {
            add(name, value);
        }
    }
    if let Some(Value::Object(h)) = fields.get("multiValueHeaders") {
        for (name, values) in h {
            for value in values.as_array().into_iter().flatten() {
                add(name, value);
            }
        }
    }
    if let Some(Value::Array(cookies)) = fields.get("cookies") {
        for cookie in cookies {
            add(SET_COOKIE.as_str(), cookie);
        }
    }
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming<'a>(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> Incoming<'a> {
        Incoming {
            method,
            uri,
            headers,
            body,
            peer: "127.0.0.1:5000".parse().unwrap(),
            request_id: "req-1",
            iam_caller: None,
        }
    }

    #[test]
    fn a_json_body_that_is_not_utf8_is_passed_base64_encoded() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let (method, uri) = (Method::POST, Uri::from_static("/org/create"));
        let body = b"{\"organization_name\": \"\xff\xfe\"}";

        let event = to_event(&incoming(&method, &uri, &headers, body));

        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(
            STANDARD.decode(event["body"].as_str().unwrap()).unwrap(),
            body
        );
    }

    #[test]
    fn a_utf8_json_body_is_passed_as_text_with_the_route_and_query() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.append("x-many", HeaderValue::from_static("a"));
        headers.append("x-many", HeaderValue::from_static("b"));
        headers.insert(COOKIE, HeaderValue::from_static("a=1; b=2"));
        let (method, uri) = (
            Method::GET,
            Uri::from_static("/org/get?organization_name=ac%20me&x=1&x=2"),
        );

        let event = to_event(&incoming(&method, &uri, &headers, b"{}"));

        assert_eq!(event["routeKey"], "GET /org/get");
        assert_eq!(event["rawQueryString"], "organization_name=ac%20me&x=1&x=2");
        assert_eq!(event["queryStringParameters"]["organization_name"], "ac me");
        assert_eq!(event["queryStringParameters"]["x"], "1,2");
        assert_eq!(event["headers"]["x-many"], "a,b");
        assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(event["body"], "{}");
        assert_eq!(event["isBase64Encoded"], false);
    }

    #[test]
    fn an_event_parses_as_the_request_lambda_http_hands_the_handler() {
        let headers = HeaderMap::new();
        let (method, uri) = (
            Method::DELETE,
            Uri::from_static("/org/delete?organization_name=a"),
        );
        let event = to_event(&incoming(&method, &uri, &headers, b""));

        let parsed: Result<shared::aws_lambda_events::apigw::ApiGatewayV2httpRequest, _> =
            serde_json::from_value(event);

        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn the_time_is_in_the_gateways_format() {
        assert_eq!(clf_time(1_584_039_838), "12/Mar/2020:19:03:58 +0000");
        assert_eq!(clf_time(0), "01/Jan/1970:00:00:00 +0000");
    }

    #[test]
    fn a_function_answer_becomes_the_http_response() {
        let out = json!({
            "statusCode": 201,
            "headers": {"content-type": "application/json"},
            "multiValueHeaders": {"x-a": ["1", "2"]},
            "body": "{\"ok\":true}",
            "isBase64Encoded": false
        });
        let resp = from_function(out.to_string().as_bytes());

        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(resp.body().as_ref(), b"{\"ok\":true}");
    }

    #[test]
    fn an_answer_that_is_not_json_is_a_bad_gateway() {
        assert_eq!(from_function(b"not json").status(), 502);
        assert_eq!(from_function(br#"{"statusCode": 99}"#).status(), 502);
        assert_eq!(from_function(br#"{"hello": 1}"#).status(), 200);
    }
}
