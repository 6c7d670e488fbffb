//! The `create` Lambda: POST /org/create. All logic lives in `shared::handlers::create`.

use shared::config::Function;
use shared::lambda_http::{run, service_fn, Error, Request};
use shared::{handlers, App};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let app = App::init(Function::Create).await?;
    app.warm().await;
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(handlers::create(app, req).await)
    }))
    .await
}
