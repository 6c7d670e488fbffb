//! The one error type of the service and its one mapping to HTTP.
//!
//! Every failure a handler can meet becomes an [`ApiError`]. Its `Display` text
//! is what the client reads, so it never carries internal detail; the cause of
//! an internal or unavailable error is kept in `source` and logged in full by
//! [`ApiError::log`], never returned.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use serde_json::json;

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// Why a request conflicts with the data as it stands (409): decided where
/// the data is (mostly the store), mapped to a stable code here. Control flow
/// matches these variants, never a code string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// Another organization holds the name.
    NameTaken { name: String },
    /// A restore's old name has been taken since the delete, and the request
    /// names no other.
    RestoreNameTaken { name: String },
    /// Another admin has the email.
    EmailTaken,
    /// A create, rename or delete of the organization is under way
    /// (`doing`: "being renamed", ...).
    InProgress { name: String, doing: &'static str },
    /// The first request with this `Idempotency-Key` is still running.
    IdempotencyInProgress,
    /// The service holds `MAX_ORGANIZATIONS` already.
    OrganizationLimitReached { max: u64 },
}

impl Conflict {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NameTaken { .. } => "organization_exists",
            Self::RestoreNameTaken { .. } => "restore_name_taken",
            Self::EmailTaken => "email_taken",
            Self::InProgress { .. } => "operation_in_progress",
            Self::IdempotencyInProgress => "idempotency_in_progress",
            Self::OrganizationLimitReached { .. } => "organization_limit_reached",
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NameTaken { name } => write!(f, "organization name '{name}' is taken"),
            Self::RestoreNameTaken { name } => write!(
                f,
                "organization name '{name}' has been taken since the delete; give new_organization_name"
            ),
            Self::EmailTaken => f.write_str("an admin with this email already exists"),
            Self::InProgress { name, doing } => {
                write!(f, "organization '{name}' is {doing}; retry shortly")
            }
            Self::IdempotencyInProgress => {
                f.write_str("a request with this Idempotency-Key is in progress; retry shortly")
            }
            Self::OrganizationLimitReached { max } => {
                write!(f, "this service holds its maximum of {max} organizations")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid token that is too old for what it asks (a credential change).
    #[error("changing the email or password needs a recent login: log in again, or give current_password")]
    ReauthenticationRequired,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(Conflict),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    MethodNotAllowed(&'static str),
    #[error("{reason}; retry after {} seconds", retry_after.as_secs().max(1))]
    TooManyRequests {
        reason: &'static str,
        retry_after: Duration,
    },
    #[error("{what} is unavailable; retry later")]
    Unavailable {
        what: &'static str,
        #[source]
        source: Source,
    },
    #[error("internal error")]
    Internal(#[source] Source),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn unavailable(what: &'static str, source: impl Into<Source>) -> Self {
        Self::Unavailable {
            what,
            source: source.into(),
        }
    }

    /// A restore's one answer for credentials that match no deleted
    /// organization, an organization never deleted, and one purged.
    pub fn no_deleted_organization() -> Self {
        Self::NotFound("no deleted organization matches these credentials".into())
    }

    pub fn internal(source: impl Into<Source>) -> Self {
        Self::Internal(source.into())
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) => 400,
            Self::Unauthorized(_) | Self::ReauthenticationRequired => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge { .. } => 413,
            Self::Invalid { .. } => 422,
            Self::TooManyRequests { .. } => 429,
            Self::Internal(_) => 500,
            Self::Unavailable { .. } => 503,
        }
    }

    /// A stable, machine-readable code for the `error.code` field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_request",
            Self::Invalid { .. } => "invalid_field",
            Self::Unauthorized(_) => "unauthorized",
            Self::ReauthenticationRequired => "reauthentication_required",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict(conflict) => conflict.code(),
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::TooManyRequests { .. } => "too_many_requests",
            Self::Unavailable { .. } => "service_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The JSON body a client receives: `{"error": {"code", "message"}}`, plus
    /// `field` for an invalid field.
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let Self::Invalid { field, .. } = self {
            error["field"] = json!(field);
        }
        json!({ "error": error })
    }

    /// Logs the error with its whole cause chain at a level that fits it:
    /// client mistakes at `info`, server-side trouble at `error`.
    pub fn log(&self) {
        let chain = cause_chain(self);
        if self.status() >= 500 {
            tracing::error!(status = self.status(), code = self.code(), error = %chain, "request failed");
        } else {
            tracing::info!(status = self.status(), code = self.code(), error = %chain, "request refused");
        }
    }
}

/// `outer: inner: innermost`, for logs.
pub fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_never_reaches_the_body() {
        let err = ApiError::internal("connection string mongodb://user:secret@host");
        let body = err.body().to_string();
        assert!(!body.contains("secret"));
        assert_eq!(err.status(), 500);
        let err = ApiError::unavailable("database", "mongodb://user:secret@host refused");
        assert!(!err.body().to_string().contains("secret"));
        assert_eq!(err.status(), 503);
    }

    #[test]
    fn an_invalid_field_names_the_field() {
        let body = ApiError::invalid("email", "must contain '@'").body();
        assert_eq!(body["error"]["code"], "invalid_field");
        assert_eq!(body["error"]["field"], "email");
    }
}
