//! `GET /org/list`: every organization and its state, for operators.

use lambda_http::{Body, Request, Response};
use serde_json::json;

use super::{audit_context, page_limit, serve};
use crate::domain::OrgName;
use crate::error::ApiError;
use crate::http::{self, json_response};
use crate::store::{Action, Actor, ListCursor, ListQuery, ListedState};
use crate::App;

/// GET /org/list?limit=&cursor=&state=&prefix= (IAM) → 200
/// `{organizations, next_cursor}`: organizations in name order, live and
/// deleted, optionally only those in `state` or whose name starts with
/// `prefix`; `next_cursor` (opaque) continues after the page's last one,
/// null after the last page. A request without the IAM identity the
/// gateway adds to a SigV4-signed call is refused with 403, whatever route
/// configuration let it through. Each listing is audited with the caller's
/// ARN.
pub async fn list(app: &App, req: Request) -> Response<Body> {
    serve("GET /org/list", &req, async {
        http::require_method(&req, "GET")?;
        let operator = http::iam_caller(&req).ok_or(ApiError::Forbidden(
            "this route takes a request signed by an IAM principal (AWS_IAM)",
        ))?;
        let limit = page_limit(&req)?;
        let state = http::optional_query_param(&req, "state")?
            .map(|raw| {
                ListedState::parse(raw).ok_or_else(|| {
                    let states: Vec<&str> = ListedState::ALL.iter().map(|s| s.as_str()).collect();
                    ApiError::invalid("state", format!("must be one of {}", states.join(", ")))
                })
            })
            .transpose()?;
        let prefix = http::optional_query_param(&req, "prefix")?
            .map(|raw| OrgName::parse_prefix(raw, app.tenant_db()?, "prefix"))
            .transpose()?;
        let after = http::optional_query_param(&req, "cursor")?
            .map(|raw| {
                ListCursor::parse(raw).ok_or_else(|| {
                    ApiError::invalid("cursor", "must be a next_cursor this service returned")
                })
            })
            .transpose()?;
        let query = ListQuery {
            state,
            prefix,
            after,
        };
        let store = app.store().await?;
        let page = store.list_organizations(&query, limit).await?;
        store
            .audit_request(
                None,
                Action::OrganizationsListed,
                &audit_context(&req, Actor::Operator(operator.to_owned())),
            )
            .await;
        Ok(json_response(
            200,
            &json!({
                "organizations": page.organizations,
                "next_cursor": page.next.map(|c| c.encode()),
            }),
        ))
    })
    .await
}
