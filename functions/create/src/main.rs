//! The `create` Lambda: POST /org/create from API Gateway, provisioning
//! requests from EventBridge and SQS, and the scheduled outbox flush, told
//! apart by the event's shape in `shared::provisioning::handle`.

#![recursion_limit = "256"]

use shared::functions::Function;
use shared::lambda_runtime::Error;
use shared::{provisioning, runtime};

fn main() -> Result<(), Error> {
    runtime::serve_events(Function::Create, provisioning::handle)
}
