//! The `rename` Lambda: PUT /org/update. All logic lives in `shared::handlers::update`.

use shared::config::Function;
use shared::lambda_http::{run, service_fn, Error, Request};
use shared::{handlers, App};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let app = App::init(Function::Rename).await?;
    app.warm().await;
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(handlers::update(app, req).await)
    }))
    .await
}
