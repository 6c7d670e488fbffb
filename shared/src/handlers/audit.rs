//! `GET /org/audit`: the token's organization's audit trail, a page at a time.

use lambda_http::{Body, Request, Response};
use serde_json::json;

use super::{bearer, page_limit, serve, session};
use crate::error::ApiError;
use crate::http::{self, json_response};
use crate::store::{AuditCursor, AuditEntry};
use crate::App;

/// GET /org/audit?limit=&cursor= (bearer) → 200 `{entries, next_cursor}`:
/// the token's organization's audit trail, newest first; `next_cursor`
/// (opaque) continues after the page's last entry, null after the last page.
pub async fn audit(app: &App, req: Request) -> Response<Body> {
    serve("GET /org/audit", &req, async {
        http::require_method(&req, "GET")?;
        let claims = bearer(app.tokens()?, &req).await?;
        let limit = page_limit(&req)?;
        let cursor = http::optional_query_param(&req, "cursor")?
            .map(|raw| {
                AuditCursor::parse(raw).ok_or_else(|| {
                    ApiError::invalid("cursor", "must be a next_cursor this service returned")
                })
            })
            .transpose()?;
        let session = session(app, claims).await?;
        let page = app
            .store()
            .await?
            .audit_page(session.admin.organization_id, limit, cursor)
            .await?;
        let entries: Vec<serde_json::Value> = page.entries.iter().map(audit_entry_json).collect();
        Ok(json_response(
            200,
            &json!({ "entries": entries, "next_cursor": page.next.map(|c| c.encode()) }),
        ))
    })
    .await
}

fn audit_entry_json(entry: &AuditEntry) -> serde_json::Value {
    // `actor` serializes as `{kind, id}`, as it is stored.
    json!({
        "id": entry.id.to_hex(),
        "at": entry.at.try_to_rfc3339_string().unwrap_or_default(),
        "action": entry.action,
        "actor": entry.context.actor,
        "source_ip": entry.context.source_ip,
        "request_id": entry.context.request_id,
        "outcome": entry.outcome,
    })
}
