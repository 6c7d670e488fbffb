//! The `delete` Lambda: DELETE /org/delete. All logic lives in `shared::handlers::delete`.

use shared::config::Function;
use shared::lambda_http::{run, service_fn, Error, Request};
use shared::{handlers, App};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let app = App::init(Function::Delete).await?;
    app.warm().await;
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(handlers::delete(app, req).await)
    }))
    .await
}
