//! The `list` Lambda: GET /org/list (operators, IAM). All logic lives in `shared::handlers::list`.

// The handler futures nest the AWS SDK's deeply; the default limit of 128
// is too low to compute their layout.
#![recursion_limit = "256"]

use shared::config::Function;
use shared::lambda_http::{run, service_fn, Error, Request};
use shared::{handlers, App};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let app = App::start(Function::List).await?;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(handlers::list(app, req).await)
    }))
    .await
}
