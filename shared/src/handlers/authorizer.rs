//! The gateway's authorizer: the function routes' token and session check,
//! answered as API Gateway's simple response.

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use serde_json::json;
use tracing::Instrument;

use super::acting_for;
use crate::auth::Claims;
use crate::error::ApiError;
use crate::functions::Function;
use crate::App;

/// The API Gateway (HTTP API, payload 2.0, simple responses) authorizer: the
/// same token and session check the functions run, with the admin and
/// organization ids passed on in the context. Any failure is a plain deny,
/// but one: with the database unreachable the token's signature and claims
/// decide, because the function behind it checks the session again (and
/// answers 503 while it cannot).
pub async fn authorize(
    app: &App,
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
    let deleting = Function::Delete
        .route()
        .is_some_and(|r| event.route_key.as_deref() == Some(&format!("{} {}", r.method, r.path)));
    let span = tracing::info_span!(
        "authorize",
        gatewayRequestId = event
            .request_context
            .request_id
            .as_deref()
            .unwrap_or_default(),
    );
    match authorized(app, authorization.as_deref(), deleting)
        .instrument(span)
        .await
    {
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

async fn authorized(
    app: &App,
    authorization: Option<&str>,
    deleting: bool,
) -> Result<Claims, ApiError> {
    let claims = app.tokens()?.verify_bearer(authorization).await?;
    match acting_for(app, &claims, deleting).await {
        Ok(_) => Ok(claims),
        Err(err @ ApiError::Unavailable { .. }) => {
            tracing::warn!(error = %crate::error::cause_chain(&err), "session not checked at the gateway; the function will");
            Ok(claims)
        }
        Err(err) => Err(err),
    }
}
