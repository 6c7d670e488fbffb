//! The baseline of the cold-start benchmark: the smallest `lambda_runtime`
//! function, on the same tokio runtime flavour and release profile as the
//! service's functions. Whatever a function costs above this binary is the
//! cost of the service itself.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(|_event: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({ "statusCode": 200, "body": "hello" }))
    }))
    .await
}
