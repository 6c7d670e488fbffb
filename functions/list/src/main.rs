//! The `list` Lambda: GET /org/list (operators, IAM). All logic lives in `shared::handlers::list`.

// The handler futures nest the AWS SDK's deeply; the default limit of 128
// is too low to compute their layout.
#![recursion_limit = "256"]

use shared::functions::Function;
use shared::lambda_runtime::Error;
use shared::{handlers, runtime};

fn main() -> Result<(), Error> {
    runtime::serve_http(Function::List, handlers::list)
}
