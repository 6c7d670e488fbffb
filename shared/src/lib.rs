//! The common crate of the Organization Management Service.
//!
//! Every Lambda binary in `functions/*` is a thin `main` that builds an [`App`]
//! once per execution environment and hands requests to a handler here.
//!
//! - [`app`]: [`App`], what an execution environment holds: configuration,
//!   the store (connected on first use), tokens, the event publisher, warm-up.
//! - [`functions`]: the one table of functions, their routes and sections.
//! - [`config`]: environment variables in sections, read once.
//! - [`domain`]: validated names, emails and passwords.
//! - [`store`]: MongoDB: the master database, tenant collections, the
//!   crash-safe create / rename / delete / restore / purge sequences, and
//!   the audit trail.
//! - [`auth`]: bcrypt, signing keys (Secrets Manager or local), JWTs.
//! - [`aws`]: the AWS SDK configuration shared by every AWS client.
//! - [`secrets`]: the Secrets Manager client.
//! - [`events`]: lifecycle events out, through an outbox, to EventBridge.
//! - [`provisioning`]: the create function's EventBridge and SQS inputs.
//! - [`http`]: strict request parsing and JSON responses.
//! - [`handlers`]: one function per route, plus the gateway authorizer.
//! - [`error`]: the one error type and its HTTP mapping.
//! - [`runtime`]: what every function's `main` runs.
//! - [`telemetry`]: JSON logs and CloudWatch metrics.
//! - [`failpoint`]: test-only crash points.

pub mod app;
pub mod auth;
pub mod aws;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod functions;
pub mod handlers;
pub mod http;
pub mod provisioning;
pub mod runtime;
pub mod secrets;
pub mod store;
pub mod telemetry;

pub use app::App;
pub use aws_lambda_events;
pub use lambda_http;
pub use lambda_runtime;
