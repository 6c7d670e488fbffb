//! The `purge` Lambda, invoked hourly by an EventBridge schedule: removes the
//! deleted organizations past their retention, a bounded batch per run. All
//! logic lives in `shared::App::purge`. A failed run is an invocation error,
//! so that it shows in the function's error metric; the next run resumes it.

#![recursion_limit = "256"]

use shared::functions::Function;
use shared::lambda_runtime::{Error, LambdaEvent};
use shared::runtime;

fn main() -> Result<(), Error> {
    runtime::serve_events(
        Function::Purge,
        |app, _event: LambdaEvent<serde_json::Value>| async move {
            match app.purge().await {
                Ok(report) => Ok(serde_json::to_value(report)?),
                Err(e) => {
                    e.log();
                    Err(Error::from(e.to_string()))
                }
            }
        },
    )
}
