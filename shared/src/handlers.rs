//! The handlers behind each route, and the gateway authorizer.
//!
//! Each takes the [`App`] it runs in and a request, and always answers with a
//! response: an error becomes its status and JSON body here, never a Lambda
//! invocation error (API Gateway would turn that into an opaque 500).

use std::future::Future;

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use lambda_http::{Body, Request, Response};
use mongodb::bson::oid::ObjectId;
use serde_json::json;
use tracing::Instrument;

use crate::auth::{hash_password, verify_password, Claims, Tokens};
use crate::domain::{Email, OrgName, Password};
use crate::error::ApiError;
use crate::http::{self, error_response, json_response};
use crate::store::{CredentialChange, Idempotent, Organization};
use crate::App;

const ORGANIZATION_NAME: &str = "organization_name";
const EMAIL: &str = "email";
const PASSWORD: &str = "password";

/// Runs one route's logic inside a span that carries the request id, and maps
/// its outcome to a response.
async fn serve<F>(route: &'static str, req: &Request, work: F) -> Response<Body>
where
    F: Future<Output = Result<Response<Body>, ApiError>>,
{
    let span = tracing::info_span!(
        "request",
        route,
        request_id = %http::request_id(req),
        organization_id = tracing::field::Empty,
    );
    async {
        match work.await {
            Ok(response) => {
                tracing::info!(status = response.status().as_u16(), "request served");
                response
            }
            Err(err) => error_response(&err),
        }
    }
    .instrument(span)
    .await
}

fn record_org(org_id: &str) {
    tracing::Span::current().record("organization_id", org_id);
}

fn object_id(raw: &str) -> Result<ObjectId, ApiError> {
    ObjectId::parse_str(raw).map_err(|_| ApiError::Unauthorized("invalid or expired token"))
}

async fn bearer(tokens: &Tokens, req: &Request) -> Result<Claims, ApiError> {
    let claims = tokens
        .verify_bearer(http::header(req, "authorization"))
        .await?;
    record_org(&claims.org);
    Ok(claims)
}

/// POST /admin/login `{email, password}` → `{access_token, token_type, expires_in}`.
pub async fn login(app: &App, req: Request) -> Response<Body> {
    serve("POST /admin/login", &req, async {
        http::require_method(&req, "POST")?;
        let body = http::json_object(&req, &[EMAIL, PASSWORD])?;
        let email = Email::parse(body.required(EMAIL)?)?;
        let password = Password::parse(body.required(PASSWORD)?)?;
        let store = app.store().await?;
        let tokens = app.tokens()?;
        // Throttled per email and source address: someone failing from
        // elsewhere cannot lock the real admin out.
        let throttle_key = format!(
            "{}|{}",
            email.as_str(),
            http::source_ip(&req).unwrap_or("unknown")
        );
        let (allowed, admin) = tokio::join!(
            store.check_login_allowed(&throttle_key),
            store.find_admin(&email)
        );
        let had_failures = allowed?;
        let admin = admin?;
        let matched = verify_password(
            &password,
            admin.as_ref().map(|a| a.password_hash.as_str()),
            app.config.bcrypt_cost,
        )
        .await?;
        const BAD_CREDENTIALS: ApiError = ApiError::Unauthorized("invalid email or password");
        let Some(admin) = admin.filter(|_| matched) else {
            store.record_login_failure(&throttle_key).await?;
            return Err(BAD_CREDENTIALS);
        };
        // The admin of an organization that is being created or deleted
        // cannot log in yet, or any more.
        let org = store
            .find_org_by_id(admin.organization_id)
            .await?
            .filter(|o| o.state.allows_login())
            .ok_or(BAD_CREDENTIALS)?;
        record_org(&org.id.to_hex());
        if had_failures {
            store.clear_login_failures(&throttle_key).await?;
        }
        let token = tokens.issue(&admin.id.to_hex(), &org.id.to_hex()).await?;
        Ok(json_response(
            200,
            &json!({
                "access_token": token,
                "token_type": "bearer",
                "expires_in": tokens.ttl().as_secs(),
            }),
        ))
    })
    .await
}

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
        let store = app.store().await?;
        let name = OrgName::parse(body.required(ORGANIZATION_NAME)?, store.tenant_db())?;
        let email = Email::parse(body.required(EMAIL)?)?;
        let password = Password::parse(body.required(PASSWORD)?)?;
        let Some(key) = key else {
            return create_org(app, &name, &email, &password).await;
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
                return Err(ApiError::conflict(
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is in progress; retry shortly",
                ))
            }
        }
        let outcome = create_org(app, &name, &email, &password).await;
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

async fn create_org(
    app: &App,
    name: &OrgName,
    email: &Email,
    password: &Password,
) -> Result<Response<Body>, ApiError> {
    let store = app.store().await?;
    let hash = hash_password(password, app.config.bcrypt_cost).await?;
    let done = store.create_org(name, email, hash).await?;
    record_org(&done.org.id.to_hex());
    app.publish_own_events(done.event.as_slice()).await;
    Ok(json_response(201, &Organization::from(&done.org)))
}

/// GET /org/get?organization_name= → 200 org.
pub async fn get(app: &App, req: Request) -> Response<Body> {
    serve("GET /org/get", &req, async {
        http::require_method(&req, "GET")?;
        let store = app.store().await?;
        let name = OrgName::parse(
            http::query_param(&req, ORGANIZATION_NAME)?,
            store.tenant_db(),
        )?;
        let org = store.get_org(&name).await?;
        record_org(&org.id.to_hex());
        Ok(json_response(200, &Organization::from(&org)))
    })
    .await
}

/// PUT /org/update `{organization_name, email?, password?}` (bearer): renames
/// the token's organization to `organization_name` and/or changes its admin's
/// credentials → 200 org.
pub async fn update(app: &App, req: Request) -> Response<Body> {
    serve("PUT /org/update", &req, async {
        http::require_method(&req, "PUT")?;
        let claims = bearer(app.tokens()?, &req).await?;
        let body = http::json_object(&req, &[ORGANIZATION_NAME, EMAIL, PASSWORD])?;
        let store = app.store().await?;
        let name = OrgName::parse(body.required(ORGANIZATION_NAME)?, store.tenant_db())?;
        let email = body.optional(EMAIL)?.map(Email::parse).transpose()?;
        let password = body.optional(PASSWORD)?.map(Password::parse).transpose()?;
        let password_hash = match &password {
            Some(p) => Some(hash_password(p, app.config.bcrypt_cost).await?),
            None => None,
        };
        let done = store
            .update_org(
                object_id(&claims.org)?,
                object_id(&claims.sub)?,
                &name,
                CredentialChange {
                    email,
                    password_hash,
                },
            )
            .await?;
        app.publish_own_events(done.event.as_slice()).await;
        Ok(json_response(200, &Organization::from(&done.org)))
    })
    .await
}

/// DELETE /org/delete?organization_name= (bearer) → 200 `{status, organization}`.
pub async fn delete(app: &App, req: Request) -> Response<Body> {
    serve("DELETE /org/delete", &req, async {
        http::require_method(&req, "DELETE")?;
        let claims = bearer(app.tokens()?, &req).await?;
        let store = app.store().await?;
        let name = OrgName::parse(
            http::query_param(&req, ORGANIZATION_NAME)?,
            store.tenant_db(),
        )?;
        let done = store
            .delete_org(object_id(&claims.org)?, object_id(&claims.sub)?, &name)
            .await?;
        app.publish_own_events(done.event.as_slice()).await;
        Ok(json_response(
            200,
            &json!({ "status": "deleted", "organization": Organization::from(&done.org) }),
        ))
    })
    .await
}

/// Routes a request to its handler by method and path, as API Gateway does
/// in front of the functions; used where one process serves every route
/// (tests and the crash-test child).
pub async fn dispatch(app: &App, req: Request) -> Response<Body> {
    let route = (
        req.method().as_str().to_owned(),
        req.uri().path().to_owned(),
    );
    match (route.0.as_str(), route.1.as_str()) {
        ("POST", "/admin/login") => login(app, req).await,
        ("POST", "/org/create") => create(app, req).await,
        ("GET", "/org/get") => get(app, req).await,
        ("PUT", "/org/update") => update(app, req).await,
        ("DELETE", "/org/delete") => delete(app, req).await,
        _ => error_response(&ApiError::NotFound("no such route".into())),
    }
}

/// The API Gateway (HTTP API, payload 2.0, simple responses) authorizer: the
/// same token check the functions run, with the admin and organization ids
/// passed on in the context. Any failure is a plain deny.
pub async fn authorize(
    tokens: &Tokens,
    event: ApiGatewayV2CustomAuthorizerV2Request,
) -> ApiGatewayV2CustomAuthorizerSimpleResponse {
    let authorization = event
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            event
                .identity_source
                .as_ref()
                .and_then(|s| s.first().cloned())
        });
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    match tokens.verify_bearer(authorization.as_deref()).await {
        Ok(claims) => {
            response.is_authorized = true;
            response.context = json!({ "admin_id": claims.sub, "organization_id": claims.org });
        }
        Err(err) => {
            tracing::info!(reason = %err, "authorization denied");
            response.is_authorized = false;
            response.context = json!({});
        }
    }
    response
}
