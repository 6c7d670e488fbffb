//! What every function's `main` runs: logs, then its [`App`] and the
//! metrics recorder, then the Lambda runtime, each invocation tagged for the
//! metrics before it runs and what it recorded written after it.
//!
//! All of it runs on one thread (tokio's current-thread scheduler). An
//! execution environment serves one invocation at a time and gets at most a
//! share of one vCPU below 1,769 MB, so a second worker thread has nothing to
//! run in parallel; it would only move the driver's and the SDK's tasks
//! between threads at every round trip, each move a wake-up across cores.
//! bcrypt runs on tokio's blocking pool either way
//! ([`crate::auth::verify_password`]).

use std::future::Future;

use lambda_http::{Body, Request, RequestExt, Response};
use lambda_runtime::{Context, Error, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::functions::Function;
use crate::telemetry::{self, Metrics};
use crate::App;

/// Serves an HTTP route's function: `handler` answers each API Gateway
/// request (payload format 2.0).
pub fn serve_http<F, Fut>(function: Function, handler: F) -> Result<(), Error>
where
    F: Fn(&'static App, Request) -> Fut,
    Fut: Future<Output = Response<Body>> + Send,
{
    block_on(async move {
        let (app, metrics) = start(function).await?;
        lambda_http::run(lambda_http::service_fn(move |req: Request| {
            app.invocation_arrived();
            if let Some(context) = req.lambda_context_ref() {
                before(metrics, context);
            }
            let answer = handler(app, req);
            async move {
                let response = answer.await;
                metrics.after_invocation();
                Ok::<_, Error>(response)
            }
        }))
        .await
    })
}

/// Serves a function that takes events of type `E`: the authorizer's
/// requests, the create function's mixed inputs, the purge's schedule.
pub fn serve_events<E, R, F, Fut>(function: Function, handler: F) -> Result<(), Error>
where
    E: DeserializeOwned,
    R: Serialize,
    F: Fn(&'static App, LambdaEvent<E>) -> Fut,
    Fut: Future<Output = Result<R, Error>>,
{
    block_on(async move {
        let (app, metrics) = start(function).await?;
        lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<E>| {
            app.invocation_arrived();
            before(metrics, &event.context);
            let answer = handler(app, event);
            async move {
                let outcome = answer.await;
                metrics.after_invocation();
                outcome
            }
        }))
        .await
    })
}

fn block_on(serve: impl Future<Output = Result<(), Error>>) -> Result<(), Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve)
}

async fn start(function: Function) -> Result<(&'static App, Metrics), Error> {
    telemetry::init();
    let app = App::start(function).await?;
    if invocation_waiting(
        std::env::var(AWS_LAMBDA_INITIALIZATION_TYPE)
            .ok()
            .as_deref(),
    ) {
        app.invocation_arrived();
    }
    let metrics = Metrics::install(&app.config.service_name)?;
    Ok((app, metrics))
}

/// The variable Lambda sets to how this execution environment was started:
/// `on-demand`, `provisioned-concurrency` or `snap-start`.
pub const AWS_LAMBDA_INITIALIZATION_TYPE: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";

/// Whether an invocation is already waiting for this environment: an
/// on-demand environment is started for one, so its request opens the
/// database connection itself and the warm-up sends nothing ahead of it. A
/// provisioned (or restored) environment may wait minutes for its first
/// request, and one started outside Lambda cannot tell; their warm-up opens
/// the connection ([`App::warm`]).
pub fn invocation_waiting(initialization_type: Option<&str>) -> bool {
    initialization_type == Some("on-demand")
}

fn before(metrics: Metrics, context: &Context) {
    metrics.before_invocation(&context.request_id, context.xray_trace_id.as_deref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_on_demand_environment_has_an_invocation_waiting_at_init() {
        assert!(invocation_waiting(Some("on-demand")));
        assert!(!invocation_waiting(Some("provisioned-concurrency")));
        assert!(!invocation_waiting(Some("snap-start")));
        assert!(!invocation_waiting(None));
    }
}
