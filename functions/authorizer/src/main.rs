//! The API Gateway Lambda authorizer (HTTP API, payload 2.0, simple responses)
//! in front of PUT /org/update and DELETE /org/delete. All logic lives in
//! `shared::handlers::authorize`.

#![recursion_limit = "256"]

use shared::aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use shared::functions::Function;
use shared::lambda_runtime::{Error, LambdaEvent};
use shared::{handlers, runtime};

fn main() -> Result<(), Error> {
    runtime::serve_events(
        Function::Authorizer,
        |app, event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>| async move {
            Ok::<_, Error>(handlers::authorize(app, event.payload).await)
        },
    )
}
