//! Creates the benchmark's secrets and event bus in the local AWS endpoint
//! (moto), with the services' JSON protocol over plain HTTP. moto does not check
//! signatures, so no AWS SDK or CLI is needed here; the functions themselves
//! use the real SDK against the same endpoint.

use crate::http1;

/// Creates secret `name` holding `value`; returns its ARN.
pub fn create_secret(endpoint: &str, name: &str, value: &str) -> Result<String, String> {
    let json = call(
        endpoint,
        "secretsmanager",
        "secretsmanager.CreateSecret",
        serde_json::json!({ "Name": name, "SecretString": value }),
    )?;
    json.get("ARN")
        .and_then(|a| a.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("moto CreateSecret answered {json}"))
}

/// Creates EventBridge bus `name`, which create, rename and delete publish to.
pub fn create_event_bus(endpoint: &str, name: &str) -> Result<(), String> {
    call(
        endpoint,
        "events",
        "AWSEvents.CreateEventBus",
        serde_json::json!({ "Name": name }),
    )
    .map(|_| ())
}

fn call(
    endpoint: &str,
    service: &str,
    target: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let addr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let body = body.to_string();
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=0"
    );
    let response = http1::post(
        &addr,
        "/",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
            ("x-amz-date", "20250101T000000Z"),
            ("authorization", &authorization),
        ],
        body.as_bytes(),
    )
    .map_err(|e| format!("moto at {endpoint}: {e}"))?;
    if !response.start.contains(" 200") {
        return Err(format!(
            "moto {target}: {}: {}",
            response.start,
            String::from_utf8_lossy(&response.body)
        ));
    }
    serde_json::from_slice(&response.body).map_err(|e| {
        format!(
            "moto {target}: {e}: {}",
            String::from_utf8_lossy(&response.body)
        )
    })
}
