//! `POST /org/create`: a new organization with its admin, optionally under
//! an `Idempotency-Key`.

use lambda_http::{Body, Request, Response};

use super::{audit_context, record_org, serve, EMAIL, ORGANIZATION_NAME, PASSWORD};
use crate::auth::{start_hash, PendingHash};
use crate::domain::{Email, OrgName, Password};
use crate::error::{ApiError, Conflict};
use crate::http::{self, json_response, Organization};
use crate::store::{Actor, AuditContext, Idempotent, NewOrganization};
use crate::App;

/// POST /org/create `{organization_name, email, password}` → 201 org.
///
/// With an `Idempotency-Key` header, a repeat of the same request (same
/// organization name and admin email) replays the first response, and the
/// same key with another request is a 422. The password is deliberately not
/// part of that comparison: no fast hash of it is stored anywhere.
pub async fn create(app: &App, req: Request) -> Response<Body> {
    serve("POST /org/create", &req, async {
        http::require_method(&req, "POST")?;
        let key = match req.headers().get(IDEMPOTENCY_KEY) {
            None => None,
            Some(raw) => Some(parse_idempotency_key(raw.to_str().unwrap_or(""))?),
        };
        let body = http::json_object(&req, &[ORGANIZATION_NAME, EMAIL, PASSWORD])?;
        let name = OrgName::parse(body.required(ORGANIZATION_NAME)?, app.tenant_db()?)?;
        let email = Email::parse(body.required(EMAIL)?)?;
        let password = Password::parse(body.required(PASSWORD)?)?;
        // On a cold start the secret fetch and the MongoDB handshake are
        // still under way, and the first strength estimate builds zxcvbn's
        // dictionaries: the hash runs beside both rather than after them.
        // Warm, it waits for the estimate and the per-source count
        // (`create_org`), so that a refused request costs no bcrypt; cold,
        // at most one hash per execution environment can go to a request
        // that is then refused.
        let hashing =
            (!app.store_connected()).then(|| start_hash(&password, app.config.bcrypt_cost));
        password.check_strength(
            app.config.password_min_score,
            &[name.as_str(), email.as_str()],
        )?;
        let source = http::source_ip(&req);
        let audit = audit_context(&req, Actor::Anonymous(email.as_str().to_owned()));
        let store = app.store().await?;
        let Some(key) = key else {
            return create_org(app, name, email, &password, hashing, source, audit).await;
        };
        match store
            .idempotency_begin(key, &fingerprint(&name, &email))
            .await?
        {
            Idempotent::Run => {}
            Idempotent::Replay { status, body } => {
                let mut response = json_response(
                    status,
                    &serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default(),
                );
                response.headers_mut().insert(
                    "idempotent-replayed",
                    http::HeaderValue::from_static("true"),
                );
                return Ok(response);
            }
            Idempotent::Mismatch => {
                return Err(ApiError::invalid(
                    IDEMPOTENCY_KEY,
                    "was already used with a different request",
                ))
            }
            Idempotent::InProgress => {
                return Err(ApiError::Conflict(Conflict::IdempotencyInProgress))
            }
        }
        let outcome = create_org(app, name, email, &password, hashing, source, audit).await;
        let response = match &outcome {
            Ok(response) => response.clone(),
            Err(e) => json_response(e.status(), &e.body()),
        };
        if response.status().as_u16() >= 500 {
            // Worth retrying: let the retry run rather than replay a failure.
            store.idempotency_abandon(key).await?;
        } else if let Body::Text(text) = response.body() {
            store
                .idempotency_finish(key, response.status().as_u16(), text)
                .await?;
        }
        outcome
    })
    .await
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

fn parse_idempotency_key(raw: &str) -> Result<&str, ApiError> {
    if (1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(raw)
    } else {
        Err(ApiError::invalid(
            IDEMPOTENCY_KEY,
            "must be 1 to 255 visible ASCII characters",
        ))
    }
}

/// What identifies "the same request" for an idempotency key.
fn fingerprint(name: &OrgName, email: &Email) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}\n{}", name.as_str(), email.as_str()));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates an organization over HTTP: the per-source limit before any
/// bcrypt work not already `hashing`, then the hash, then the store (which
/// applies the cap).
async fn create_org(
    app: &App,
    name: OrgName,
    email: Email,
    password: &Password,
    hashing: Option<PendingHash>,
    source: Option<&str>,
    audit: AuditContext,
) -> Result<Response<Body>, ApiError> {
    let store = app.store().await?;
    if let Some(limit) = app.config.limits.creates_per_source_per_hour {
        store.count_create(source, limit).await?;
    }
    let password_hash = hashing
        .unwrap_or_else(|| start_hash(password, app.config.bcrypt_cost))
        .finish()
        .await?;
    let new = NewOrganization {
        name,
        email,
        password_hash,
        provisioned: None,
        audit,
    };
    let done = store
        .create_org(new, app.config.limits.max_organizations)
        .await?;
    record_org(&done.org.id.to_hex());
    app.publish_own_events(done.event.as_slice()).await;
    Ok(json_response(201, &Organization::from(&done.org)))
}
