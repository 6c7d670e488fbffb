//! Test harness, built only with the `failpoints` feature: serves the one API
//! Gateway event in `CHILD_EVENT` with the configuration of the environment
//! and prints the response status. The crash tests run it with `ORG_FAILPOINT`
//! set, so that it dies between two steps of an operation as a Lambda would.

use std::process::ExitCode;

use shared::config::Function;
use shared::{handlers, lambda_http, App};

#[tokio::main]
async fn main() -> ExitCode {
    let Ok(event) = std::env::var("CHILD_EVENT") else {
        eprintln!("set CHILD_EVENT to an API Gateway v2 event");
        return ExitCode::from(2);
    };
    let req = match lambda_http::request::from_str(&event) {
        Ok(req) => req,
        Err(e) => {
            eprintln!("CHILD_EVENT is not an API Gateway v2 event: {e}");
            return ExitCode::from(2);
        }
    };
    // Login's sections are the union of what every route needs.
    let app = match App::init(Function::Login).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let response = handlers::dispatch(&app, req).await;
    println!("{}", response.status().as_u16());
    ExitCode::SUCCESS
}
