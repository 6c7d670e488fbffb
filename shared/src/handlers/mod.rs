//! The handlers behind each route, and the gateway authorizer: login, get,
//! update and delete here, `POST /org/create` in [`create`],
//! `POST /org/restore` in [`restore`], `GET /org/audit` in [`audit`],
//! `GET /org/list` in [`list`], the authorizer in [`authorize`].
//!
//! Each takes the [`App`] it runs in and a request, and always answers with a
//! response: an error becomes its status and JSON body here, never a Lambda
//! invocation error (API Gateway would turn that into an opaque 500).

use std::future::Future;

use lambda_http::{Body, Request, Response};
use mongodb::bson::oid::ObjectId;
use serde_json::json;
use tracing::Instrument;

use crate::auth::{hash_password, needs_rehash, verify_password, Claims, Tokens};
use crate::domain::{Email, OrgName, Password};
use crate::error::ApiError;
use crate::functions::Function;
use crate::http::{self, error_response, json_response, Organization};
use crate::store::{Action, Actor, AdminDoc, AuditContext, CredentialChange, LoginKeys};
use crate::App;

mod audit;
mod authorizer;
mod create;
mod list;
mod restore;

pub use audit::audit;
pub use authorizer::authorize;
pub use create::create;
pub use list::list;
pub use restore::restore;

const ORGANIZATION_NAME: &str = "organization_name";
const EMAIL: &str = "email";
const PASSWORD: &str = "password";
const CURRENT_PASSWORD: &str = "current_password";
const NEW_ORGANIZATION_NAME: &str = "new_organization_name";

/// Runs one route's logic inside a span that carries the gateway's request
/// id (the runtime's span around it carries Lambda's), and maps its outcome
/// to a response.
async fn serve<F>(route: &'static str, req: &Request, work: F) -> Response<Body>
where
    F: Future<Output = Result<Response<Body>, ApiError>>,
{
    let span = tracing::info_span!(
        "request",
        route,
        gatewayRequestId = http::gateway_request_id(req).unwrap_or_default(),
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

/// How many items one page of a listing route may hold, and holds by default.
const PAGE_MAX: u32 = 100;
const PAGE_DEFAULT: u32 = 50;

/// The `limit` query parameter of a paged route.
fn page_limit(req: &Request) -> Result<u32, ApiError> {
    match http::optional_query_param(req, "limit")? {
        None => Ok(PAGE_DEFAULT),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=PAGE_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    "limit",
                    format!("must be a whole number from 1 to {PAGE_MAX}"),
                )
            }),
    }
}

/// The audit context of `req`, acted by `actor`.
fn audit_context(req: &Request, actor: Actor) -> AuditContext {
    AuditContext {
        actor,
        source_ip: http::source_ip(req).map(str::to_owned),
        request_id: http::gateway_request_id(req).map(str::to_owned),
    }
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

/// What a bearer token stands for once checked against the database.
struct Session {
    claims: Claims,
    admin: AdminDoc,
}

/// The session behind verified `claims`: their admin still exists, in the
/// token's organization, at the token's version (a change of email or
/// password ends every session opened before it).
async fn session(app: &App, claims: Claims) -> Result<Session, ApiError> {
    let admin = app
        .store()
        .await?
        .session_admin(object_id(&claims.sub)?, object_id(&claims.org)?, claims.ver)
        .await?;
    Ok(Session { claims, admin })
}

/// The organization and admin a token acts for: its session's, or, when
/// `deleting` (DELETE /org/delete), those of an admin a delete has already
/// removed: that delete's retry, or a repeat once it is done, is answered
/// as the delete (finished, or a 404), not as a stale token.
async fn acting_for(
    app: &App,
    claims: &Claims,
    deleting: bool,
) -> Result<(ObjectId, ObjectId), ApiError> {
    let (org_id, admin_id) = (object_id(&claims.org)?, object_id(&claims.sub)?);
    let store = app.store().await?;
    match store.session_admin(admin_id, org_id, claims.ver).await {
        Ok(admin) => Ok((admin.organization_id, admin.id)),
        Err(stale @ ApiError::Unauthorized(_)) if deleting => {
            if store.deleted_with_its_admin(org_id, admin_id).await? {
                Ok((org_id, admin_id))
            } else {
                Err(stale)
            }
        }
        Err(e) => Err(e),
    }
}

/// The response to a login, and to a credential change (which ends the
/// session it was made through and opens a new one).
async fn token_body(
    tokens: &Tokens,
    admin_id: &str,
    org_id: &str,
    version: i64,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let token = tokens.issue(admin_id, org_id, version).await?;
    let body = json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": tokens.ttl().as_secs(),
    });
    Ok(body.as_object().cloned().unwrap_or_default())
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
        let cost = app.config.bcrypt_cost;
        let keys = LoginKeys::new(&email, http::source_ip(&req));
        let (allowed, admin) =
            tokio::join!(store.check_login_allowed(&keys), store.find_admin(&email));
        let admin = admin?;
        // Every attempt leaves an entry (its organization's, when the email
        // is an admin's), written before the answer goes out.
        let attempt = audit_context(&req, Actor::Anonymous(email.as_str().to_owned()));
        let attempted_org = admin.as_ref().map(|a| a.organization_id);
        let had_failures = match allowed {
            Ok(had_failures) => had_failures,
            Err(e @ ApiError::TooManyRequests { .. }) => {
                store
                    .audit_request(attempted_org, Action::LoginThrottled, &attempt)
                    .await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let matched = verify_password(
            &password,
            admin.as_ref().map(|a| a.password_hash.as_str()),
            cost,
        )
        .await?;
        const BAD_CREDENTIALS: ApiError = ApiError::Unauthorized("invalid email or password");
        let Some(admin) = admin.filter(|_| matched) else {
            store.record_login_failure(&keys).await?;
            store
                .audit_request(attempted_org, Action::LoginFailed, &attempt)
                .await;
            return Err(BAD_CREDENTIALS);
        };
        // The admin of an organization that is being created or deleted
        // cannot log in yet, or any more.
        let Some(org) = store
            .find_org_by_id(admin.organization_id)
            .await?
            .filter(|o| o.state.allows_login())
        else {
            store
                .audit_request(attempted_org, Action::LoginFailed, &attempt)
                .await;
            return Err(BAD_CREDENTIALS);
        };
        record_org(&org.id.to_hex());
        if had_failures {
            store.clear_login_failures(&keys).await?;
        }
        if needs_rehash(&admin.password_hash, cost) {
            // The login has succeeded either way: a failed upgrade is retried
            // at the next one.
            let upgraded = match hash_password(&password, cost).await {
                Ok(new_hash) => {
                    store
                        .rehash_password(admin.id, &admin.password_hash, &new_hash)
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = upgraded {
                e.log();
            }
        }
        let body = token_body(
            tokens,
            &admin.id.to_hex(),
            &org.id.to_hex(),
            admin.token_version,
        )
        .await?;
        let succeeded = audit_context(&req, Actor::Admin(admin.id.to_hex()));
        store
            .audit_request(Some(org.id), Action::LoginSucceeded, &succeeded)
            .await;
        Ok(json_response(200, &body))
    })
    .await
}

/// GET /org/get?organization_name= → 200 org.
pub async fn get(app: &App, req: Request) -> Response<Body> {
    serve("GET /org/get", &req, async {
        http::require_method(&req, "GET")?;
        let name = OrgName::parse(
            http::query_param(&req, ORGANIZATION_NAME)?,
            app.tenant_db()?,
        )?;
        let org = app.store().await?.get_org(&name).await?;
        record_org(&org.id.to_hex());
        Ok(json_response(200, &Organization::from(&org)))
    })
    .await
}

/// PUT /org/update `{organization_name, email?, password?, current_password?}`
/// (bearer): renames the token's organization to `organization_name` and/or
/// changes its admin's credentials → 200 org.
///
/// A credential change ends every session opened before it, this one
/// included, so its answer also carries a fresh `access_token`. It needs a
/// token issued within `CREDENTIAL_CHANGE_MAX_TOKEN_AGE_SECS` or a
/// `current_password` that verifies (throttled like a login); an older token
/// alone gets 401 `reauthentication_required`.
pub async fn update(app: &App, req: Request) -> Response<Body> {
    serve("PUT /org/update", &req, async {
        http::require_method(&req, "PUT")?;
        // The token first (no database): an anonymous caller learns nothing
        // about the body's rules; then the body; then the session.
        let claims = bearer(app.tokens()?, &req).await?;
        let body = http::json_object(
            &req,
            &[ORGANIZATION_NAME, EMAIL, PASSWORD, CURRENT_PASSWORD],
        )?;
        let name = OrgName::parse(body.required(ORGANIZATION_NAME)?, app.tenant_db()?)?;
        let email = body.optional(EMAIL)?.map(Email::parse).transpose()?;
        let context: Vec<&str> = std::iter::once(name.as_str())
            .chain(email.as_ref().map(Email::as_str))
            .collect();
        let password = body
            .optional(PASSWORD)?
            .map(|p| Password::parse_new(p, app.config.password_min_score, &context))
            .transpose()?;
        let current_password = body
            .optional(CURRENT_PASSWORD)?
            .map(|p| {
                Password::parse(p).map_err(|_| {
                    ApiError::invalid(
                        CURRENT_PASSWORD,
                        "must be the admin's password (8 to 72 bytes)",
                    )
                })
            })
            .transpose()?;

        let session = session(app, claims).await?;
        let store = app.store().await?;
        let changes_credentials = email.is_some() || password.is_some();
        if let Some(current) = &current_password {
            let keys = LoginKeys::new(
                &Email::from_stored(&session.admin.email),
                http::source_ip(&req),
            );
            store.check_login_allowed(&keys).await?;
            let matched = verify_password(
                current,
                Some(&session.admin.password_hash),
                app.config.bcrypt_cost,
            )
            .await?;
            if !matched {
                store.record_login_failure(&keys).await?;
                return Err(ApiError::Unauthorized(
                    "current_password is not the admin's password",
                ));
            }
        } else if changes_credentials
            && !session
                .claims
                .issued_within(app.config.credential_change_max_token_age)
        {
            return Err(ApiError::ReauthenticationRequired);
        }

        let password_hash = match &password {
            Some(p) => Some(hash_password(p, app.config.bcrypt_cost).await?),
            None => None,
        };
        // Boxed: the whole rename sits in this future, and unboxed it
        // outgrows a test thread's stack in debug builds.
        let updated = Box::pin(store.update_org(
            session.admin.organization_id,
            session.admin.id,
            &name,
            CredentialChange {
                email,
                password_hash,
                token_version: session.claims.ver,
            },
            &audit_context(&req, Actor::Admin(session.admin.id.to_hex())),
        ))
        .await?;
        let org = &updated.finished.org;
        app.publish_own_events(updated.finished.event.as_slice())
            .await;
        let mut body = serde_json::to_value(Organization::from(org)).map_err(ApiError::internal)?;
        if let (Some(version), Some(fields)) = (updated.token_version, body.as_object_mut()) {
            let tokens = app.tokens()?;
            fields.extend(
                token_body(
                    tokens,
                    &session.admin.id.to_hex(),
                    &org.id.to_hex(),
                    version,
                )
                .await?,
            );
        }
        Ok(json_response(200, &body))
    })
    .await
}

/// DELETE /org/delete?organization_name= (bearer) → 200 `{status, organization}`.
pub async fn delete(app: &App, req: Request) -> Response<Body> {
    serve("DELETE /org/delete", &req, async {
        http::require_method(&req, "DELETE")?;
        let claims = bearer(app.tokens()?, &req).await?;
        let name = OrgName::parse(
            http::query_param(&req, ORGANIZATION_NAME)?,
            app.tenant_db()?,
        )?;
        let (org_id, admin_id) = acting_for(app, &claims, true).await?;
        let store = app.store().await?;
        let done = Box::pin(store.delete_org(
            org_id,
            admin_id,
            &name,
            app.config.deleted_retention,
            &audit_context(&req, Actor::Admin(admin_id.to_hex())),
        ))
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
    // Each handler's future boxed: inline, the largest one's state would sit
    // in every caller's (a test's whole body), and a debug build's test
    // thread runs out of stack.
    match Function::for_route(req.method().as_str(), req.uri().path()) {
        Some(Function::Login) => Box::pin(login(app, req)).await,
        Some(Function::Create) => Box::pin(create(app, req)).await,
        Some(Function::Get) => Box::pin(get(app, req)).await,
        Some(Function::Update) => Box::pin(update(app, req)).await,
        Some(Function::Delete) => Box::pin(delete(app, req)).await,
        Some(Function::Restore) => Box::pin(restore(app, req)).await,
        Some(Function::Audit) => Box::pin(audit(app, req)).await,
        Some(Function::List) => Box::pin(list(app, req)).await,
        Some(Function::Purge | Function::Authorizer) | None => {
            error_response(&ApiError::NotFound("no such route".into()))
        }
    }
}
