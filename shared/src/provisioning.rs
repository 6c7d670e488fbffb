//! The create function's inputs besides API Gateway: provisioning requests
//! from other AWS services, and the schedule that flushes the event outbox.
//!
//! One binary, one dispatch on the event's shape ([`handle`]):
//! - API Gateway HTTP API (v2) events go to [`handlers::create`];
//! - EventBridge events with detail-type [`DETAIL_TYPE`] carry a request in
//!   `detail`;
//! - SQS batches carry one request per message body, or an EventBridge
//!   envelope (a rule targeting the queue); the answer is a partial batch
//!   response, so only failed messages are retried (and end in the DLQ);
//! - the scheduled rule (`aws.events`, "Scheduled Event") flushes the outbox.
//!
//! A request is `{organization_name, email, password_hash}` with a bcrypt hash
//! computed upstream at a cost from the service's own to `MAX_BCRYPT_COST`.
//! A plaintext `password` instead is accepted only where the deployment
//! allows it (`PROVISIONING_ALLOW_PLAINTEXT`): otherwise such a message is
//! consumed and logged, never retried into the dead-letter queue, where the
//! password would sit readable for 14 days.
//!
//! Deliveries repeat, and a repeat is recognised by the request's fingerprint
//! (SHA-256 of name, email and hash) recorded on the organization it created;
//! a plaintext request, whose hash is salted anew each time, by its
//! fingerprint without the hash plus a password that verifies. An
//! organization with the same name and email that some other request created
//! (someone registering a predictable name first over HTTP) is never adopted:
//! the request fails with that reason and ends in the dead-letter queue.
//! Neither password nor hash is ever logged.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request, RequestExt, Response};
use lambda_runtime::LambdaEvent;
use serde_json::{json, Value};

use crate::auth::{hash_password, parse_bcrypt_hash, verify_password};
use crate::domain::{Email, OrgName, Password};
use crate::error::{cause_chain, ApiError};
use crate::http::JsonObject;
use crate::store::{Actor, AuditContext, Finished, NewOrganization, OrgDoc, OrgState};
use crate::telemetry::{self, Metric};
use crate::{handlers, App};

/// The detail-type of a provisioning request on EventBridge.
pub const DETAIL_TYPE: &str = "CreateOrganization";
const FIELDS: &[&str] = &["organization_name", "email", "password", "password_hash"];

/// What an incoming event is.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Http,
    Sqs,
    EventBridge,
    Schedule,
    Unknown,
}

pub fn classify(payload: &Value) -> Kind {
    if payload["Records"][0]["eventSource"] == "aws:sqs" {
        return Kind::Sqs;
    }
    if let Some(detail_type) = payload["detail-type"].as_str() {
        return match detail_type {
            DETAIL_TYPE => Kind::EventBridge,
            "Scheduled Event" if payload["source"] == "aws.events" => Kind::Schedule,
            _ => Kind::Unknown,
        };
    }
    if payload["requestContext"]["http"].is_object() {
        return Kind::Http;
    }
    Kind::Unknown
}

/// How a provisioning request ended.
#[derive(Debug)]
pub enum Outcome {
    /// Created now; carries the event to publish.
    Created(Finished),
    /// The same request was delivered before: nothing to do.
    AlreadyDone(OrgDoc),
    /// Refused for good and not worth keeping: it carried a plaintext
    /// password where only hashes are accepted. Consumed, not retried.
    Discarded(&'static str),
}

enum AdminSecret {
    Password(Password),
    Hash(String),
}

struct ProvisionRequest {
    name: OrgName,
    email: Email,
    secret: AdminSecret,
}

/// Why a plaintext request is consumed rather than dead-lettered.
const PLAINTEXT_REFUSED: &str =
    "plaintext password refused on an asynchronous path; send password_hash";

fn parse_request(
    value: Value,
    tenant_db: &str,
    app: &App,
) -> Result<Result<ProvisionRequest, &'static str>, ApiError> {
    let body = JsonObject::from_value(value, FIELDS)?;
    let name = OrgName::parse(body.required("organization_name")?, tenant_db)?;
    let email = Email::parse(body.required("email")?)?;
    let secret = match (body.optional("password")?, body.optional("password_hash")?) {
        (Some(_), None) if !app.config.provisioning_plaintext => {
            return Ok(Err(PLAINTEXT_REFUSED));
        }
        (Some(p), None) => AdminSecret::Password(Password::parse_new(
            p,
            app.config.password_min_score,
            &[name.as_str(), email.as_str()],
        )?),
        (None, Some(h)) => AdminSecret::Hash(parse_bcrypt_hash(h, app.config.bcrypt_cost)?),
        _ => {
            return Err(ApiError::invalid(
                "password",
                "give exactly one of password or password_hash",
            ))
        }
    };
    Ok(Ok(ProvisionRequest {
        name,
        email,
        secret,
    }))
}

impl ProvisionRequest {
    /// What a repeated delivery of this request has in common with the first:
    /// name, email and the upstream hash (a plaintext request has no stable
    /// hash; its password is checked instead, see [`Self::made`]).
    fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let credential = match &self.secret {
            AdminSecret::Hash(h) => h.as_str(),
            AdminSecret::Password(_) => "plaintext",
        };
        let digest = Sha256::digest(format!(
            "{}\n{}\n{credential}",
            self.name.as_str(),
            self.email.as_str()
        ));
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `org` (whose admin has this request's email) is what this very
    /// request made on an earlier delivery.
    async fn made(&self, app: &App, org: &OrgDoc) -> Result<bool, ApiError> {
        if org.name != self.name.as_str()
            || org.state != OrgState::Active
            || org.provisioned.as_deref() != Some(self.fingerprint().as_str())
        {
            return Ok(false);
        }
        match &self.secret {
            AdminSecret::Hash(_) => Ok(true),
            AdminSecret::Password(p) => {
                let admin = app.store().await?.find_admin(&self.email).await?;
                let hash = admin.as_ref().map(|a| a.password_hash.as_str());
                verify_password(p, hash, app.config.bcrypt_cost).await
            }
        }
    }

    /// The organization this request made before, if its admin's email
    /// leads to one.
    async fn made_before(&self, app: &App) -> Result<Option<OrgDoc>, ApiError> {
        let store = app.store().await?;
        match store.org_of_admin(&self.email).await? {
            Some(org) if self.made(app, &org).await? => Ok(Some(org)),
            _ => Ok(None),
        }
    }
}

/// Creates the organization a provisioning request asks for, or recognises it
/// as delivered before.
pub async fn provision(
    app: &App,
    request: Value,
    origin: AuditContext,
) -> Result<Outcome, ApiError> {
    let req = match parse_request(request, app.tenant_db()?, app)? {
        Ok(req) => req,
        Err(reason) => return Ok(Outcome::Discarded(reason)),
    };
    // A repeated delivery is recognised before any bcrypt work.
    if let Some(org) = req.made_before(app).await? {
        return Ok(Outcome::AlreadyDone(org));
    }
    let password_hash = match &req.secret {
        AdminSecret::Password(p) => hash_password(p, app.config.bcrypt_cost).await?,
        AdminSecret::Hash(h) => h.clone(),
    };
    let new = NewOrganization {
        name: req.name.clone(),
        email: req.email.clone(),
        password_hash,
        provisioned: Some(req.fingerprint()),
        audit: origin,
    };
    let store = app.store().await?;
    match store
        .create_org(new, app.config.limits.max_organizations)
        .await
    {
        Ok(done) => Ok(Outcome::Created(done)),
        // Taken: by an earlier delivery of this request that finished in
        // between (a success), or by someone else (never adopted).
        Err(err @ ApiError::Conflict(_)) => match req.made_before(app).await? {
            Some(org) => Ok(Outcome::AlreadyDone(org)),
            None => Err(err),
        },
        Err(err) => Err(err),
    }
}

fn log_outcome(source: &str, id: &str, outcome: &Result<Outcome, ApiError>) {
    telemetry::count(match outcome {
        Ok(Outcome::Created(_) | Outcome::AlreadyDone(_)) => Metric::ProvisioningSucceeded,
        Ok(Outcome::Discarded(_)) => Metric::ProvisioningRejected,
        Err(_) => Metric::ProvisioningFailed,
    });
    match outcome {
        Ok(Outcome::Created(done)) => {
            tracing::info!(source, id, organization_id = %done.org.id, "provisioned")
        }
        Ok(Outcome::AlreadyDone(org)) => {
            tracing::info!(source, id, organization_id = %org.id, "already provisioned; delivery repeated")
        }
        Ok(Outcome::Discarded(reason)) => {
            tracing::error!(source, id, reason, "provisioning request discarded")
        }
        Err(e) => tracing::warn!(
            source,
            id,
            status = e.status(),
            code = e.code(),
            reason = %cause_chain(e),
            "provisioning request failed"
        ),
    }
}

/// The request inside an SQS message body: the request itself, or the
/// `detail` of an EventBridge envelope.
fn unwrap_message(body: &str) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|_| ApiError::Malformed("message body is not valid JSON".into()))?;
    if value.get("detail-type").is_some() {
        if value["detail-type"] != DETAIL_TYPE {
            return Err(ApiError::invalid(
                "detail-type",
                format!("must be {DETAIL_TYPE}"),
            ));
        }
        return Ok(value["detail"].clone());
    }
    Ok(value)
}

/// Processes an SQS batch; the answer names the messages to retry.
pub async fn sqs_batch(app: &App, batch: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut events = Vec::new();
    // One at a time: two copies of one request in a batch then meet a
    // finished organization rather than each other's operation in progress.
    for record in batch.records {
        let id = record.message_id.unwrap_or_default();
        let origin = AuditContext {
            actor: Actor::Provisioning(record.event_source_arn.unwrap_or_else(|| "sqs".into())),
            source_ip: None,
            request_id: Some(id.clone()),
        };
        let outcome = match record.body.as_deref() {
            Some(body) => match unwrap_message(body) {
                Ok(request) => provision(app, request, origin).await,
                Err(e) => Err(e),
            },
            None => Err(ApiError::Malformed("message has no body".into())),
        };
        log_outcome("sqs", &id, &outcome);
        match outcome {
            Ok(Outcome::Created(done)) => events.extend(done.event),
            Ok(Outcome::AlreadyDone(_) | Outcome::Discarded(_)) => {}
            Err(_) => response.add_failure(id),
        }
    }
    // One publish for the whole batch rather than one per organization.
    app.publish_own_events(&events).await;
    response
}

/// The answer API Gateway expects from a function (payload format 2.0).
fn gateway_response(response: Response<Body>) -> ApiGatewayV2httpResponse {
    let (parts, body) = response.into_parts();
    let mut answer = ApiGatewayV2httpResponse::default();
    answer.status_code = i64::from(parts.status.as_u16());
    answer.headers = parts.headers;
    answer.is_base64_encoded = matches!(body, Body::Binary(_));
    answer.body = Some(body);
    answer
}

/// The create function's entry point: one dispatch on the event's shape,
/// then the typed event of that shape.
pub async fn handle(app: &App, event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
    let (payload, context) = event.into_parts();
    match classify(&payload) {
        Kind::Http => {
            let lambda_request: LambdaRequest = serde_json::from_value(payload)
                .map_err(|e| format!("not an API Gateway HTTP event: {e}"))?;
            let request = Request::from(lambda_request).with_lambda_context(context);
            let response = handlers::create(app, request).await;
            Ok(serde_json::to_value(gateway_response(response))?)
        }
        Kind::Sqs => {
            let batch: SqsEvent =
                serde_json::from_value(payload).map_err(|e| format!("not an SQS event: {e}"))?;
            Ok(serde_json::to_value(sqs_batch(app, batch).await)?)
        }
        Kind::EventBridge => {
            let event: EventBridgeEvent = serde_json::from_value(payload)
                .map_err(|e| format!("not an EventBridge event: {e}"))?;
            let id = event.id.unwrap_or_default();
            let origin = AuditContext {
                actor: Actor::Provisioning(event.source.clone()),
                source_ip: None,
                request_id: Some(id.clone()),
            };
            let outcome = provision(app, event.detail, origin).await;
            log_outcome("eventbridge", &id, &outcome);
            match outcome {
                Ok(Outcome::Created(done)) => {
                    app.publish_own_events(done.event.as_slice()).await;
                    Ok(json!({ "status": "created", "organization_id": done.org.id.to_hex() }))
                }
                Ok(Outcome::AlreadyDone(org)) => {
                    Ok(json!({ "status": "exists", "organization_id": org.id.to_hex() }))
                }
                Ok(Outcome::Discarded(reason)) => {
                    Ok(json!({ "status": "discarded", "reason": reason }))
                }
                // An error makes Lambda retry the asynchronous invocation and
                // then hand the event to the dead-letter queue.
                Err(e) => Err(format!("{}: {}", e.code(), e).into()),
            }
        }
        Kind::Schedule => {
            app.flush_events().await;
            Ok(json!({ "status": "flushed" }))
        }
        Kind::Unknown => {
            tracing::error!(
                "unrecognised event shape; not an HTTP, SQS, EventBridge or scheduled event"
            );
            Err("unrecognised event".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_classified_by_their_shape() {
        assert_eq!(
            classify(&json!({"Records": [{"eventSource": "aws:sqs"}]})),
            Kind::Sqs
        );
        assert_eq!(
            classify(&json!({"detail-type": DETAIL_TYPE, "detail": {}})),
            Kind::EventBridge
        );
        assert_eq!(
            classify(&json!({"detail-type": "Scheduled Event", "source": "aws.events"})),
            Kind::Schedule
        );
        assert_eq!(
            classify(&json!({"detail-type": "Scheduled Event", "source": "evil"})),
            Kind::Unknown
        );
        assert_eq!(
            classify(&json!({"version": "2.0", "requestContext": {"http": {}}})),
            Kind::Http
        );
        assert_eq!(
            classify(&json!({"Records": [{"eventSource": "aws:s3"}]})),
            Kind::Unknown
        );
        assert_eq!(classify(&json!(null)), Kind::Unknown);
    }

    #[test]
    fn an_sqs_body_may_be_the_request_or_an_eventbridge_envelope() {
        let plain = unwrap_message(r#"{"organization_name":"a"}"#).unwrap();
        assert_eq!(plain["organization_name"], "a");
        let wrapped = unwrap_message(
            &json!({"detail-type": DETAIL_TYPE, "detail": {"organization_name": "b"}}).to_string(),
        )
        .unwrap();
        assert_eq!(wrapped["organization_name"], "b");
        assert!(
            unwrap_message(&json!({"detail-type": "Other", "detail": {}}).to_string()).is_err()
        );
        assert!(unwrap_message("not json").is_err());
    }
}
