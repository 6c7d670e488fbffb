//! The `create` Lambda: POST /org/create from API Gateway, provisioning
//! requests from EventBridge and SQS, and the scheduled outbox flush, told
//! apart by the event's shape in `shared::provisioning::handle`.

#![recursion_limit = "256"]

use shared::config::Function;
use shared::lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::{provisioning, App};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let app = App::start(Function::Create).await?;
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            provisioning::handle(app, event).await
        },
    ))
    .await
}
