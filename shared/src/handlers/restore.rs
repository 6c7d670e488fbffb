//! `POST /org/restore`: a deleted organization back, by its former admin's
//! credentials.

use lambda_http::{Body, Request, Response};

use super::{
    audit_context, record_org, serve, EMAIL, NEW_ORGANIZATION_NAME, ORGANIZATION_NAME, PASSWORD,
};
use crate::auth::verify_password;
use crate::domain::{Email, OrgName, Password};
use crate::error::ApiError;
use crate::http::{self, json_response, Organization};
use crate::store::{Actor, LoginKeys};
use crate::App;

/// POST /org/restore `{organization_name, email, password,
/// new_organization_name?}` → 200 org: brings back an organization deleted
/// within `DELETED_RETENTION_DAYS`, proven by its former admin's credentials
/// (its tokens ended with the delete), throttled as a login is and counted
/// with it. Under its old name, or `new_organization_name` when the old one
/// has been taken since. Wrong credentials, an organization never deleted
/// and one already purged are the same 404.
pub async fn restore(app: &App, req: Request) -> Response<Body> {
    serve("POST /org/restore", &req, async {
        http::require_method(&req, "POST")?;
        let body = http::json_object(
            &req,
            &[ORGANIZATION_NAME, EMAIL, PASSWORD, NEW_ORGANIZATION_NAME],
        )?;
        let tenant_db = app.tenant_db()?;
        let name = OrgName::parse(body.required(ORGANIZATION_NAME)?, tenant_db)?;
        let email = Email::parse(body.required(EMAIL)?)?;
        let password = Password::parse(body.required(PASSWORD)?)?;
        let new_name = body
            .optional(NEW_ORGANIZATION_NAME)?
            .map(|n| OrgName::parse(n, tenant_db))
            .transpose()?;
        let store = app.store().await?;
        let keys = LoginKeys::new(&email, http::source_ip(&req));
        let (allowed, record) = tokio::join!(
            store.check_login_allowed(&keys),
            store.find_deleted(&name, &email)
        );
        let had_failures = allowed?;
        let record = record?;
        let hash = record
            .as_ref()
            .and_then(|r| r.admin.as_ref())
            .map(|a| a.password_hash.as_str());
        // The indexes the restore writes through are built while bcrypt
        // checks the password on tokio's blocking pool; only a restore that
        // goes on needs them.
        let (matched, indexes) = tokio::join!(
            verify_password(&password, hash, app.config.bcrypt_cost),
            store.ensure_restore_indexes()
        );
        let matched = matched?;
        let Some(record) = record.filter(|_| matched) else {
            store.record_login_failure(&keys).await?;
            return Err(ApiError::no_deleted_organization());
        };
        indexes?;
        if had_failures {
            store.clear_login_failures(&keys).await?;
        }
        let admin_id = record.admin.as_ref().map(|a| a.id.to_hex());
        let audit = audit_context(&req, Actor::Admin(admin_id.unwrap_or_default()));
        let restored = Box::pin(store.restore_org(record, new_name.as_ref(), &audit)).await?;
        let org = &restored.finished.org;
        record_org(&org.id.to_hex());
        let (removed, ()) = tokio::join!(
            store.remove_restored_record(&restored),
            app.publish_own_events(restored.finished.event.as_slice())
        );
        // The organization is back either way; a record left behind goes
        // when it is next settled.
        if let Err(e) = removed {
            e.log();
        }
        Ok(json_response(200, &Organization::from(org)))
    })
    .await
}
