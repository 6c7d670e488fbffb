//! Test harness, built only with the `failpoints` feature: serves the one event
//! in `CHILD_EVENT` (an API Gateway request, or a provisioning event) as the
//! function that serves it would, with the configuration of the environment,
//! and prints the response status (or the provisioning answer). With
//! `CHILD_FUNCTION=purge` it runs one purge instead. The crash tests run it
//! with `ORG_FAILPOINT` set, so that it dies between two steps of an
//! operation as a Lambda would.

use std::process::ExitCode;

use shared::functions::Function;
use shared::{handlers, lambda_http, lambda_runtime, provisioning, App};

#[tokio::main]
async fn main() -> ExitCode {
    let Ok(event) = std::env::var("CHILD_EVENT") else {
        eprintln!("set CHILD_EVENT to an API Gateway v2 event");
        return ExitCode::from(2);
    };
    let Ok(payload) = serde_json::from_str::<serde_json::Value>(&event) else {
        eprintln!("CHILD_EVENT is not JSON");
        return ExitCode::from(2);
    };
    let kind = provisioning::classify(&payload);
    let requested = std::env::var("CHILD_FUNCTION").ok();
    let function = match requested.as_deref() {
        Some(name) => Function::ALL.into_iter().find(|f| f.name() == name),
        None if kind == provisioning::Kind::Http => {
            let route = |key: &str| {
                payload["requestContext"]["http"][key]
                    .as_str()
                    .unwrap_or("")
            };
            Function::for_route(route("method"), route("path"))
        }
        None => Some(Function::Create),
    };
    let Some(function) = function else {
        eprintln!("no function serves CHILD_EVENT (or CHILD_FUNCTION)");
        return ExitCode::from(2);
    };
    let app = match App::init(function).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if function == Function::Purge {
        match app.purge().await {
            Ok(report) => println!("{}", serde_json::json!(report)),
            Err(e) => println!("error: {e}"),
        }
        return ExitCode::SUCCESS;
    }
    if kind != provisioning::Kind::Http {
        // Provisioning events go where the create function sends them.
        let event = lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default());
        match provisioning::handle(&app, event).await {
            Ok(answer) => println!("{answer}"),
            Err(e) => println!("error: {e}"),
        }
        return ExitCode::SUCCESS;
    }
    let req = match lambda_http::request::from_str(&event) {
        Ok(req) => req,
        Err(e) => {
            eprintln!("CHILD_EVENT is not an API Gateway v2 event: {e}");
            return ExitCode::from(2);
        }
    };
    let response = handlers::dispatch(&app, req).await;
    println!("{}", response.status().as_u16());
    ExitCode::SUCCESS
}
