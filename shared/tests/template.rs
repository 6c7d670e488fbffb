//! `template.yaml` and `events/` checked against the code, so that the
//! deployment cannot drift from what the binaries do: the routes and the
//! function behind each, one function per binary, the environment variable
//! names each function reads (`shared::config`), the routes the authorizer
//! guards, the secrets each function may read and the bus it may publish to,
//! the provisioning paths into the create function (EventBridge rule, SQS
//! queue, schedule) each with its dead-letter queue, the queue's event source
//! mapping and the queue permissions it needs (on that queue alone, where a
//! SAM `SQS` event would attach a managed policy for every queue), the purge
//! function's hourly schedule and its narrow role, the gateway throttle on
//! the public routes that run bcrypt (restore among them), the retention only
//! the delete function reads, the audit retention that exactly the functions
//! writing audit entries read, the audit route behind the authorizer and the
//! audit function's narrow role, fixture events that parse as the events
//! the functions receive, and what operating the stack relies on: an alarm
//! on each function and on the queue, API, authorizer and outbox, each on
//! the resource it names and all notifying one topic; a log group per
//! function kept `LogRetentionDays`; Lambda's log level; reserved
//! concurrency whose defaults keep MongoDB's connections in budget; the
//! access log's request ids; the `live` alias every event source invokes;
//! and the dashboard.
//!
//! CloudFormation short tags (`!Ref`, `!GetAtt`, `!Sub`) arrive from
//! `serde_yaml` as `Value::Tagged`; [`intrinsic`] reads them and the long
//! `{Ref: ..}` / `{Fn::GetAtt: ..}` forms alike.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use serde_yaml::{Mapping, Value};
use shared::aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use shared::aws_lambda_events::eventbridge::EventBridgeEvent;
use shared::aws_lambda_events::sqs::SqsEvent;
use shared::config::{
    Config, Section, AUDIT_RETENTION_DAYS, DEFAULT_AUDIT_RETENTION_DAYS, DELETED_RETENTION_DAYS,
    EVENT_BUS_NAME, JWT_SECRET, JWT_SECRET_ARN, LOCAL_ONLY_VARS, MONGODB_URI_SECRET_ARN,
    OPERATION_LEASE_SECS, PROVISIONING_ALLOW_PLAINTEXT,
};
use shared::functions::{Auth, Function};
use shared::lambda_http::request::RequestContext;
use shared::lambda_http::RequestExt;
use shared::provisioning::{classify, Kind, DETAIL_TYPE};
use shared::telemetry::Metric;
use support::workspace_root;

const SERVERLESS_FUNCTION: &str = "AWS::Serverless::Function";
const AUTHORIZER_FUNCTION: &str = "AuthorizerFunction";
const HTTP_API: &str = "HttpApi";
const READ_SECRET: &str = "secretsmanager:GetSecretValue";
const PUT_EVENTS: &str = "events:PutEvents";
const EVENT_BUS: &str = "AWS::Events::EventBus";
const EVENT_BUS_POLICY: &str = "AWS::Events::EventBusPolicy";
const SQS_QUEUE: &str = "AWS::SQS::Queue";
const PROVISIONING_QUEUE: &str = "ProvisioningQueue";
const DEAD_LETTER_QUEUE: &str = "ProvisioningDeadLetterQueue";
const EVENT_SOURCE_MAPPING: &str = "AWS::Lambda::EventSourceMapping";
/// What Lambda's poller needs on a queue it reads for a function, granted
/// through that function's role.
const CONSUME_QUEUE: [&str; 4] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
];
/// The template parameter behind `DELETED_RETENTION_DAYS`, which the delete
/// function alone reads.
const RETENTION_PARAMETER: &str = "DeletedRetentionDays";
/// The template parameter behind `AUDIT_RETENTION_DAYS`.
const AUDIT_RETENTION_PARAMETER: &str = "AuditRetentionDays";
/// The functions whose code reads `section` (`Function::sections`, the one
/// table): those that publish lifecycle events ([`Section::Events`]), write
/// audit entries ([`Section::Audit`]), sign or verify tokens
/// ([`Section::Tokens`]). What the template gives each is checked against it.
fn reading(section: Section) -> Vec<Function> {
    Function::ALL
        .into_iter()
        .filter(|f| f.sections().contains(&section))
        .collect()
}
/// The lifecycle events of soft delete, which must not provision either.
const RESTORED: &str = "OrganizationRestored";
const PURGED: &str = "OrganizationPurged";

fn template() -> Value {
    let path = workspace_root().join("template.yaml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `template[key1][key2]...`, or `Value::Null` when any step is missing.
fn at<'a>(value: &'a Value, keys: &[&str]) -> &'a Value {
    keys.iter()
        .fold(value, |v, k| v.get(*k).unwrap_or(&Value::Null))
}

fn mapping<'a>(value: &'a Value, what: &str) -> &'a Mapping {
    value
        .as_mapping()
        .unwrap_or_else(|| panic!("{what} is not a mapping: {value:?}"))
}

fn string<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

/// An intrinsic function call, short (`!Ref X`) or long (`{Ref: X}`,
/// `{Fn::GetAtt: ..}`) form, as its name without `!` or `Fn::` and its argument.
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => Some((
            tagged.tag.to_string().trim_start_matches('!').to_owned(),
            &tagged.value,
        )),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" || k.starts_with("Fn::") {
                Some((k.trim_start_matches("Fn::").to_owned(), v))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The logical id in `!Ref X`.
fn ref_target(value: &Value) -> Option<&str> {
    match intrinsic(value)? {
        (name, arg) if name == "Ref" => arg.as_str(),
        _ => None,
    }
}

/// `!GetAtt X.Arn` (or `[X, Arn]`) as `"X.Arn"`.
fn get_att(value: &Value) -> Option<String> {
    match intrinsic(value)? {
        (name, Value::String(s)) if name == "GetAtt" => Some(s.clone()),
        (name, Value::Sequence(parts)) if name == "GetAtt" => Some(
            parts
                .iter()
                .map(|p| p.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("."),
        ),
        _ => None,
    }
}

/// The alias every function publishes (`AutoPublishAlias`) and every event
/// source invokes.
const ALIAS: &str = "live";

/// The function whose alias [`ALIAS`] `value` names, as `X`: `!Ref X.Alias`
/// (SAM's reference to the alias) or `!Sub "${X.Arn}:live"` (its ARN).
fn alias_of(value: &Value) -> Option<&str> {
    if let Some(target) = ref_target(value) {
        return target.strip_suffix(".Alias");
    }
    match intrinsic(value)? {
        (name, Value::String(arn)) if name == "Sub" => arn
            .strip_prefix("${")?
            .strip_suffix(&format!(".Arn}}:{ALIAS}")),
        _ => None,
    }
}

fn resources(t: &Value) -> &Mapping {
    mapping(at(t, &["Resources"]), "Resources")
}

fn resources_of_type<'a>(t: &'a Value, ty: &str) -> Vec<(&'a str, &'a Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| at(r, &["Type"]).as_str() == Some(ty))
        .map(|(id, r)| (string(id, "a logical id"), r))
        .collect()
}

/// The logical id a function keeps: `login` → `LoginFunction`.
fn logical_id(f: Function) -> String {
    let name = f.name();
    let mut chars = name.chars();
    let first = chars.next().expect("function names are not empty");
    format!("{}{}Function", first.to_ascii_uppercase(), chars.as_str())
}

fn function_resource(t: &Value, f: Function) -> &Value {
    let id = logical_id(f);
    let r = at(t, &["Resources", &id]);
    assert_eq!(
        at(r, &["Type"]).as_str(),
        Some(SERVERLESS_FUNCTION),
        "{id} must be an {SERVERLESS_FUNCTION} for the {} binary",
        f.name()
    );
    r
}

/// Variable name → value, from the Globals and then the function (which wins).
fn environment(t: &Value, f: Function) -> BTreeMap<String, Value> {
    let mut vars = BTreeMap::new();
    for source in [
        at(t, &["Globals", "Function", "Environment", "Variables"]),
        at(
            function_resource(t, f),
            &["Properties", "Environment", "Variables"],
        ),
    ] {
        if let Some(m) = source.as_mapping() {
            for (k, v) in m {
                vars.insert(string(k, "a variable name").to_owned(), v.clone());
            }
        }
    }
    vars
}

/// A function property, falling back to Globals.Function.
fn function_property<'a>(t: &'a Value, f: Function, key: &str) -> &'a Value {
    match at(function_resource(t, f), &["Properties", key]) {
        Value::Null => at(t, &["Globals", "Function", key]),
        v => v,
    }
}

/// The function's `Timeout` in seconds (its own, else the Globals').
fn timeout_secs(t: &Value, f: Function) -> u64 {
    function_property(t, f, "Timeout")
        .as_u64()
        .unwrap_or_else(|| panic!("{}: Timeout", f.name()))
}

/// One `HttpApi` event: method, path, the function's binary, and its `Auth`.
struct Route {
    method: String,
    path: String,
    function: String,
    auth: Value,
}

fn routes(t: &Value) -> Vec<Route> {
    let mut out = Vec::new();
    for (id, r) in resources_of_type(t, SERVERLESS_FUNCTION) {
        let binary = string(
            at(r, &["Metadata", "BuildProperties", "Binary"]),
            &format!("{id} Metadata.BuildProperties.Binary"),
        );
        let Some(events) = at(r, &["Properties", "Events"]).as_mapping() else {
            continue;
        };
        for (name, event) in events {
            let ty = string(at(event, &["Type"]), "an event Type");
            assert!(
                ty != "Api",
                "{id}: REST API events are not part of this service"
            );
            if ty != "HttpApi" {
                continue;
            }
            let props = at(event, &["Properties"]);
            assert_eq!(
                ref_target(at(props, &["ApiId"])),
                Some(HTTP_API),
                "{id}.{name:?} must attach to !Ref {HTTP_API}, not an implicit API"
            );
            out.push(Route {
                method: string(at(props, &["Method"]), "Method").to_ascii_uppercase(),
                path: string(at(props, &["Path"]), "Path").to_owned(),
                function: binary.to_owned(),
                auth: at(props, &["Auth"]).clone(),
            });
        }
    }
    out
}

/// Every `Statement` object anywhere in the template.
fn statements(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Mapping(m) => {
            for (k, v) in m {
                if k.as_str() == Some("Statement") {
                    match v {
                        Value::Sequence(s) => out.extend(s.iter().cloned()),
                        other => out.push(other.clone()),
                    }
                } else {
                    statements(v, out);
                }
            }
        }
        Value::Sequence(s) => s.iter().for_each(|v| statements(v, out)),
        Value::Tagged(t) => statements(&t.value, out),
        _ => {}
    }
}

/// A statement's Action or Resource as a list (a single value or a list).
fn one_or_many(value: &Value) -> Vec<Value> {
    match value {
        Value::Null => Vec::new(),
        Value::Sequence(s) => s.clone(),
        v => vec![v.clone()],
    }
}

/// Whether a literal (or any literal inside an intrinsic such as `!Sub`)
/// contains a wildcard.
fn has_wildcard(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('*'),
        Value::Sequence(s) => s.iter().any(has_wildcard),
        Value::Mapping(m) => m.values().any(has_wildcard),
        Value::Tagged(t) => has_wildcard(&t.value),
        _ => false,
    }
}

/// The value an environment variable gets when the stack is deployed with the
/// parameters' defaults; `overrides` replaces some parameter values.
fn deployed_value(t: &Value, value: &Value, overrides: &BTreeMap<&str, String>) -> String {
    // A local-only variable, declared empty.
    if let Value::String(s) = value {
        return s.clone();
    }
    let target = ref_target(value).unwrap_or_else(|| {
        panic!("environment values are !Ref a parameter, a secret or the stack's name: {value:?}")
    });
    if let Some(v) = overrides.get(target) {
        return v.clone();
    }
    // The pseudo parameter: samconfig.toml's stack name.
    if target == "AWS::StackName" {
        return "org-service".to_owned();
    }
    let parameter = at(t, &["Parameters", target]);
    if !parameter.is_null() {
        return match at(parameter, &["Default"]) {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            // A parameter without a default is an ARN supplied at deploy time.
            Value::Null => {
                format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{target}-AbCdEf")
            }
            other => panic!("parameter {target} has an unexpected default {other:?}"),
        };
    }
    match at(t, &["Resources", target, "Type"]).as_str() {
        Some("AWS::SecretsManager::Secret") => {
            format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{target}-AbCdEf")
        }
        // `Ref` of an event bus is its name.
        Some(EVENT_BUS) => format!("org-service-{target}"),
        other => panic!(
            "an environment variable refers to {target} ({other:?}), which is neither a \
             parameter, a secret nor an event bus"
        ),
    }
}

fn config_from_template(
    t: &Value,
    f: Function,
    overrides: &BTreeMap<&str, String>,
) -> Result<Config, shared::config::ConfigError> {
    let env: BTreeMap<String, String> = environment(t, f)
        .iter()
        .map(|(k, v)| (k.clone(), deployed_value(t, v, overrides)))
        .collect();
    Config::from_lookup(f.sections(), |name| env.get(name).cloned())
}

fn read_events() -> Vec<(String, serde_json::Value, String)> {
    let dir = workspace_root().join("events");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((name, json, text));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// An HTTP API route event (payload 2.0), as opposed to an authorizer request
/// or another service's event.
fn is_route_event(json: &serde_json::Value) -> bool {
    json["version"] == "2.0" && json["routeKey"].is_string() && json.get("type").is_none()
}

fn is_authorizer_request(json: &serde_json::Value) -> bool {
    json["version"] == "2.0" && json["type"] == "REQUEST"
}

#[test]
fn every_contract_route_is_served_by_its_function_and_no_other_route_exists() {
    let t = template();

    let declared: BTreeSet<(String, String, String)> = routes(&t)
        .into_iter()
        .map(|r| (r.method, r.path, r.function))
        .collect();
    let contract: BTreeSet<(String, String, String)> = Function::routes()
        .map(|(f, r)| (r.method.to_owned(), r.path.to_owned(), f.name().to_owned()))
        .collect();

    assert_eq!(declared, contract);
    assert_eq!(
        routes(&t).len(),
        contract.len(),
        "a route is declared twice"
    );
}

#[test]
fn there_is_one_http_api_and_its_routes_come_only_from_the_functions() {
    let t = template();

    let apis = resources_of_type(&t, "AWS::Serverless::HttpApi");
    let ids: Vec<&str> = apis.iter().map(|(id, _)| *id).collect();

    assert_eq!(ids, [HTTP_API]);
    let api = apis[0].1;
    for hidden in ["DefinitionBody", "DefinitionUri"] {
        assert!(
            at(api, &["Properties", hidden]).is_null(),
            "{HTTP_API}.{hidden} would declare routes this test cannot see"
        );
    }
    assert_no_resources_of_types(
        &t,
        &[
            "AWS::Serverless::Api",
            "AWS::ApiGatewayV2::Api",
            "AWS::ApiGatewayV2::Route",
            "AWS::ApiGateway::RestApi",
        ],
    );
}

#[test]
fn every_function_in_the_template_is_a_workspace_binary_and_every_binary_is_deployed() {
    let t = template();
    let root = workspace_root();

    let in_template: BTreeSet<String> = resources_of_type(&t, SERVERLESS_FUNCTION)
        .into_iter()
        .map(|(id, r)| {
            assert_eq!(
                at(r, &["Metadata", "BuildMethod"]).as_str(),
                Some("rust-cargolambda"),
                "{id}"
            );
            assert_eq!(
                at(r, &["Properties", "CodeUri"]).as_str(),
                Some("."),
                "{id}"
            );
            let binary = string(at(r, &["Metadata", "BuildProperties", "Binary"]), id);
            let manifest = root.join("functions").join(binary).join("Cargo.toml");
            let text = fs::read_to_string(&manifest)
                .unwrap_or_else(|e| panic!("{id}: no binary at {}: {e}", manifest.display()));
            assert_eq!(
                package_name(&text).as_deref(),
                Some(binary),
                "{id}: package name in {}",
                manifest.display()
            );
            binary.to_owned()
        })
        .collect();
    let in_workspace: BTreeSet<String> = fs::read_dir(root.join("functions"))
        .expect("functions/")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let in_code: BTreeSet<String> = Function::ALL.iter().map(|f| f.name().to_owned()).collect();

    assert_eq!(in_template, in_workspace);
    assert_eq!(in_template, in_code);
    for f in Function::ALL {
        function_resource(&t, f);
    }
}

/// `package.name` of a Cargo manifest.
fn package_name(manifest: &str) -> Option<String> {
    let manifest: toml::Table = manifest.parse().ok()?;
    manifest
        .get("package")?
        .get("name")?
        .as_str()
        .map(str::to_owned)
}

#[test]
fn make_runs_router_in_cargo_toml_sends_each_route_to_its_function_and_nothing_else() {
    let in_router = support::local_router();
    let table: BTreeSet<(String, String, String)> = Function::routes()
        .map(|(f, r)| (r.method.to_owned(), r.path.to_owned(), f.name().to_owned()))
        .collect();

    assert_eq!(in_router, table);
}

#[test]
fn each_function_sets_exactly_the_environment_variables_its_code_reads() {
    let t = template();

    for f in Function::ALL {
        let set: BTreeSet<String> = environment(&t, f).into_keys().collect();
        let read: BTreeSet<String> = f.env_vars().into_iter().map(str::to_owned).collect();

        assert_eq!(set, read, "{}: template (left) vs code (right)", f.name());
    }
}

#[test]
fn local_only_variables_are_declared_empty_and_every_other_one_comes_from_the_stack() {
    let t = template();

    for f in Function::ALL {
        for (name, value) in environment(&t, f) {
            if LOCAL_ONLY_VARS.contains(&name.as_str()) {
                // Declared so that `sam local --env-vars` can set it; empty,
                // which the code reads as unset, so a deployment never holds
                // a plaintext secret or a local endpoint.
                assert_eq!(
                    value,
                    Value::String(String::new()),
                    "{}: {name} must be the literal \"\"",
                    f.name()
                );
            } else {
                assert!(
                    ref_target(&value).is_some(),
                    "{}: {name} must be !Ref a parameter or a resource, not {value:?}",
                    f.name()
                );
            }
        }
    }
}

#[test]
fn no_function_declares_the_sdks_own_endpoint_variables() {
    let t = template();

    // The SDK takes `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_<SERVICE>`) as
    // the endpoint even when it is empty: declared empty for local runs, it
    // would send every deployed call nowhere.
    for f in Function::ALL {
        for name in environment(&t, f).into_keys() {
            assert!(
                !name.starts_with("AWS_ENDPOINT_URL"),
                "{}: {name}; local runs use LOCAL_AWS_ENDPOINT_URL",
                f.name()
            );
        }
    }
}

#[test]
fn functions_deploy_on_arm64_unless_the_architecture_parameter_says_otherwise() {
    let t = template();

    let parameter = at(&t, &["Parameters", "Architecture"]);
    assert_eq!(at(parameter, &["Default"]).as_str(), Some("arm64"));
    let allowed: Vec<String> = one_or_many(at(parameter, &["AllowedValues"]))
        .iter()
        .map(|v| string(v, "an allowed architecture").to_owned())
        .collect();
    assert_eq!(allowed, ["arm64", "x86_64"]);
    for f in Function::ALL {
        let archs = one_or_many(function_property(&t, f, "Architectures"));
        assert_eq!(archs.len(), 1, "{}", f.name());
        assert_eq!(
            ref_target(&archs[0]),
            Some("Architecture"),
            "{}: Architectures must be [!Ref Architecture]",
            f.name()
        );
    }
}

#[test]
fn the_code_accepts_every_value_the_template_can_deploy() {
    let t = template();
    let parameters = mapping(at(&t, &["Parameters"]), "Parameters");

    for f in Function::ALL {
        let defaults = config_from_template(&t, f, &BTreeMap::new());
        assert!(defaults.is_ok(), "{}: {:?}", f.name(), defaults.err());

        // The bounds a numeric parameter allows must be values the code takes.
        for (name, p) in parameters {
            let name = string(name, "a parameter name");
            for bound in ["MinValue", "MaxValue"] {
                let Some(n) = at(p, &[bound]).as_u64() else {
                    continue;
                };
                let overrides = BTreeMap::from([(name, n.to_string())]);
                let config = config_from_template(&t, f, &overrides);
                assert!(
                    config.is_ok(),
                    "{}: {name} = {n} ({bound}) is refused: {:?}",
                    f.name(),
                    config.err()
                );
            }
        }
    }
}

#[test]
fn every_database_timeout_leaves_its_function_time_to_answer() {
    let t = template();
    for f in Function::ALL {
        let Some(value) = environment(&t, f).get("MONGODB_TIMEOUT_MS").cloned() else {
            continue;
        };
        let parameter = at(&t, &["Parameters", ref_target(&value).expect("a !Ref")]);
        let longest_ms = at(parameter, &["MaxValue"])
            .as_u64()
            .unwrap_or_else(|| panic!("{}: the timeout parameter needs a MaxValue", f.name()));
        let timeout_ms = timeout_secs(&t, f) * 1000;
        // The rest: a cold start's secret fetch and handshake, and the answer.
        assert!(
            longest_ms + 2_000 <= timeout_ms,
            "{}: MONGODB_TIMEOUT_MS up to {longest_ms} ms in a {timeout_ms} ms function",
            f.name()
        );
    }
}

#[test]
fn the_operation_lease_outlasts_every_function_timeout() {
    let t = template();
    let longest = Function::ALL
        .into_iter()
        .map(|f| timeout_secs(&t, f))
        .max()
        .expect("there are functions");

    for f in Function::ALL {
        let Some(value) = environment(&t, f).get(OPERATION_LEASE_SECS).cloned() else {
            continue;
        };
        let parameter = at(&t, &["Parameters", ref_target(&value).expect("a !Ref")]);
        for key in ["Default", "MinValue"] {
            let lease = at(parameter, &[key]).as_u64().unwrap_or_else(|| {
                panic!("{OPERATION_LEASE_SECS} parameter needs a numeric {key}")
            });
            assert!(
                lease > longest,
                "{}: {OPERATION_LEASE_SECS} {key} {lease} s must exceed the longest timeout {longest} s",
                f.name()
            );
        }
    }
}

#[test]
fn the_authorizer_guards_exactly_the_protected_routes() {
    let t = template();
    let auth = at(&t, &["Resources", HTTP_API, "Properties", "Auth"]);
    let authorizers = mapping(at(auth, &["Authorizers"]), "HttpApi Auth.Authorizers");
    assert_eq!(
        authorizers.len(),
        1,
        "one authorizer: the authorizer function"
    );
    let (name, authorizer) = authorizers.iter().next().unwrap();
    let name = string(name, "the authorizer's name");
    assert_eq!(
        alias_of(at(authorizer, &["FunctionArn"])),
        Some(AUTHORIZER_FUNCTION),
        "the gateway calls the authorizer's alias, as it calls every route's"
    );
    assert_eq!(
        at(authorizer, &["AuthorizerPayloadFormatVersion"]).as_str(),
        Some("2.0")
    );
    assert_eq!(
        at(authorizer, &["EnableSimpleResponses"]).as_bool(),
        Some(true)
    );
    assert_eq!(
        one_or_many(at(authorizer, &["Identity", "Headers"])),
        [Value::from("Authorization")],
        "results are cached per token"
    );
    let default = at(auth, &["DefaultAuthorizer"]).as_str();

    let mut guarded = BTreeSet::new();
    let mut signed = BTreeSet::new();
    for route in routes(&t) {
        let effective = match at(&route.auth, &["Authorizer"]).as_str() {
            Some("NONE") => None,
            Some(explicit) => Some(explicit),
            None => default,
        };
        match effective {
            Some("AWS_IAM") => {
                signed.insert((route.method, route.path));
            }
            Some(a) => {
                assert_eq!(a, name, "{} {}", route.method, route.path);
                guarded.insert((route.method, route.path));
            }
            None => {}
        }
    }
    let with = |auth: Auth| -> BTreeSet<(String, String)> {
        Function::routes()
            .filter(|(_, r)| r.auth == auth)
            .map(|(_, r)| (r.method.to_owned(), r.path.to_owned()))
            .collect()
    };

    assert_eq!(guarded, with(Auth::Bearer));
    assert_eq!(signed, with(Auth::Iam), "the routes behind AWS_IAM");
    assert!(!signed.is_empty());
    assert_eq!(
        at(auth, &["EnableIamAuthorizer"]).as_bool(),
        Some(true),
        "SAM takes AWS_IAM on a route only with the IAM authorizer enabled"
    );
}

/// The one route the template declares on `f`, checked to be `f`'s route in
/// the contract.
fn declared_route(t: &Value, f: Function) -> Route {
    let id = logical_id(f);
    let contract = f
        .route()
        .unwrap_or_else(|| panic!("{id} serves no route in the contract"));
    let mut declared: Vec<Route> = routes(t)
        .into_iter()
        .filter(|r| r.function == f.name())
        .collect();
    assert_eq!(declared.len(), 1, "one route on {id}");
    let route = declared.remove(0);
    assert_eq!(
        (route.method.as_str(), route.path.as_str()),
        (contract.method, contract.path),
        "{id}: the contract's route"
    );
    route
}

/// A route's own `RouteSettings` on the HTTP API, or `Value::Null`.
fn route_settings<'a>(t: &'a Value, method: &str, path: &str) -> &'a Value {
    let key = format!("{method} {path}");
    at(
        t,
        &["Resources", HTTP_API, "Properties", "RouteSettings", &key],
    )
}

/// The burst and rate limits of a `RouteSettings` or `DefaultRouteSettings`.
fn throttle(settings: &Value, what: &str) -> (f64, f64) {
    let limit = |key: &str| {
        at(settings, &[key])
            .as_f64()
            .unwrap_or_else(|| panic!("{what}: {key} is not a number: {settings:?}"))
    };
    (limit("ThrottlingBurstLimit"), limit("ThrottlingRateLimit"))
}

#[test]
fn every_public_route_that_runs_bcrypt_has_its_own_throttle_below_the_default() {
    let t = template();
    let (default_burst, default_rate) = throttle(
        at(
            &t,
            &["Resources", HTTP_API, "Properties", "DefaultRouteSettings"],
        ),
        "DefaultRouteSettings",
    );

    // Without a token, each request buys a bcrypt hash or verify: the
    // gateway must cap them more tightly than the rest.
    let mut throttled = BTreeSet::new();
    for (f, r) in Function::routes()
        .filter(|(f, r)| r.auth == Auth::Public && f.sections().contains(&Section::Passwords))
    {
        let what = format!("{} {} ({})", r.method, r.path, f.name());
        let own = route_settings(&t, r.method, r.path);
        assert!(!own.is_null(), "{what} needs its own RouteSettings");
        let (burst, rate) = throttle(own, &what);
        assert!(
            burst < default_burst && rate < default_rate,
            "{what}: {burst}/{rate} must be below the default {default_burst}/{default_rate}"
        );
        throttled.insert(f.name());
    }
    for f in [Function::Login, Function::Create, Function::Restore] {
        assert!(
            throttled.contains(f.name()),
            "{} is a public bcrypt route: {throttled:?}",
            f.name()
        );
    }
}

#[test]
fn the_restore_route_is_public_and_throttled_no_looser_than_login() {
    let t = template();
    let restore = Function::Restore
        .route()
        .expect("the restore function serves a route");
    assert!(
        restore.auth == Auth::Public,
        "a deleted organization's admin has no token to show"
    );

    let declared = declared_route(&t, Function::Restore);
    // The HTTP API's default authorizer guards every route that does not
    // opt out: restore must say NONE, as login and create do.
    assert_eq!(
        at(&declared.auth, &["Authorizer"]).as_str(),
        Some("NONE"),
        "{} {}: no authorizer",
        restore.method,
        restore.path
    );

    let login = Function::Login.route().expect("the login route");
    let (login_burst, login_rate) = throttle(
        route_settings(&t, login.method, login.path),
        "the login route",
    );
    let own = route_settings(&t, restore.method, restore.path);
    assert!(
        !own.is_null(),
        "the restore route has its own RouteSettings"
    );
    let (burst, rate) = throttle(own, "the restore route");
    assert!(
        burst <= login_burst && rate <= login_rate,
        "restore {burst}/{rate} is looser than login {login_burst}/{login_rate}"
    );
}

#[test]
fn no_iam_statement_allows_every_action_or_every_resource() {
    let t = template();
    let mut found = Vec::new();
    statements(&t, &mut found);
    assert!(!found.is_empty(), "the functions' policies have statements");

    for s in &found {
        for key in ["Action", "NotAction", "Resource", "NotResource"] {
            assert!(
                !has_wildcard(at(s, &[key])),
                "{key} with a wildcard in {s:?}"
            );
        }
        assert!(
            at(s, &["NotAction"]).is_null() && at(s, &["NotResource"]).is_null(),
            "NotAction / NotResource grant everything else: {s:?}"
        );
    }
    // Named managed policies and SAM policy templates are opaque to this
    // test: every policy must be a statement list written out here.
    for f in Function::ALL {
        for policy in one_or_many(at(function_resource(&t, f), &["Properties", "Policies"])) {
            assert!(
                policy.as_mapping().is_some_and(|m| m.len() == 1)
                    && !at(&policy, &["Statement"]).is_null(),
                "{}: a policy that is not an inline statement list: {policy:?}",
                f.name()
            );
        }
    }
}

/// A function's grants as (action, resource) pairs: a secret by its `!Ref`
/// logical id, anything else (the bus, a queue) by its `!GetAtt` (`X.Arn`).
/// The statements of `f`'s own `Policies`.
fn policy_statements(t: &Value, f: Function) -> Vec<Value> {
    let mut found = Vec::new();
    statements(
        at(function_resource(t, f), &["Properties", "Policies"]),
        &mut found,
    );
    found
}

/// [`policy_statements`], each checked to grant one action on one resource.
fn single_grant_statements(t: &Value, f: Function) -> Vec<Value> {
    let found = policy_statements(t, f);
    for s in &found {
        assert!(
            one_or_many(at(s, &["Action"])).len() == 1
                && one_or_many(at(s, &["Resource"])).len() == 1,
            "{}: one action on one resource per statement: {s:?}",
            f.name()
        );
    }
    found
}

fn grants(t: &Value, f: Function) -> BTreeSet<(String, String)> {
    let found = policy_statements(t, f);
    let mut granted = BTreeSet::new();
    for s in &found {
        assert_eq!(at(s, &["Effect"]).as_str(), Some("Allow"), "{s:?}");
        for action in one_or_many(at(s, &["Action"])) {
            let action = string(&action, "an Action");
            for r in one_or_many(at(s, &["Resource"])) {
                let resource = match action {
                    READ_SECRET => ref_target(&r)
                        .unwrap_or_else(|| panic!("{}: a secret by !Ref: {r:?}", f.name()))
                        .to_owned(),
                    PUT_EVENTS => get_att(&r)
                        .unwrap_or_else(|| panic!("{}: the bus by !GetAtt X.Arn: {r:?}", f.name())),
                    a if CONSUME_QUEUE.contains(&a) => {
                        queue_of_arn(t, &r, &format!("{}: {a}", f.name())) + ".Arn"
                    }
                    other => panic!(
                        "{}: only {READ_SECRET}, {PUT_EVENTS} and {CONSUME_QUEUE:?} are needed, \
                         not {other}: {s:?}",
                        f.name()
                    ),
                };
                granted.insert((action.to_owned(), resource));
            }
        }
    }
    granted
}

#[test]
fn each_function_is_granted_only_what_its_configuration_and_its_queue_mapping_name() {
    let t = template();

    for f in Function::ALL {
        let env = environment(&t, f);
        let mut needed: BTreeSet<(String, String)> = [MONGODB_URI_SECRET_ARN, JWT_SECRET_ARN]
            .iter()
            .filter_map(|v| env.get(*v))
            .map(|v| {
                let secret = ref_target(v).expect("a secret ARN is a !Ref");
                (READ_SECRET.to_owned(), secret.to_owned())
            })
            .collect();
        if let Some(v) = env.get(EVENT_BUS_NAME) {
            let bus = ref_target(v).expect("EVENT_BUS_NAME is !Ref the bus");
            assert_eq!(
                at(&t, &["Resources", bus, "Type"]).as_str(),
                Some(EVENT_BUS),
                "{}: {EVENT_BUS_NAME}",
                f.name()
            );
            needed.insert((PUT_EVENTS.to_owned(), format!("{bus}.Arn")));
        }
        // Lambda polls a mapped queue with the function's role.
        for (_, mapping) in resources_of_type(&t, EVENT_SOURCE_MAPPING) {
            let props = at(mapping, &["Properties"]);
            if alias_of(at(props, &["FunctionName"])) != Some(logical_id(f).as_str()) {
                continue;
            }
            let queue = queue_of_arn(&t, at(props, &["EventSourceArn"]), "EventSourceArn");
            for action in CONSUME_QUEUE {
                needed.insert((action.to_owned(), format!("{queue}.Arn")));
            }
        }

        assert_eq!(
            grants(&t, f),
            needed,
            "{}: granted (left) vs named in its environment or its mapping (right)",
            f.name()
        );
    }
}

#[test]
fn only_the_publishing_functions_may_put_events_and_only_on_the_service_bus() {
    let t = template();
    let publishers = reading(Section::Events);

    let buses = resources_of_type(&t, EVENT_BUS);
    assert_eq!(buses.len(), 1, "one event bus: {buses:?}");
    let (bus, bus_resource) = buses[0];
    // An Allow in the bus's resource policy would let principals outside
    // this account put events, provisioning requests among them: it only
    // denies (what it denies: the next tests).
    assert!(
        at(bus_resource, &["Properties", "Policy"]).is_null(),
        "{bus}: its policy is written as EventBusPolicy resources"
    );
    for (id, policy) in resources_of_type(&t, EVENT_BUS_POLICY) {
        assert_eq!(
            at(policy, &["Properties", "Statement", "Effect"]).as_str(),
            Some("Deny"),
            "{id} may only deny"
        );
    }
    let on_the_bus = BTreeSet::from([(PUT_EVENTS.to_owned(), format!("{bus}.Arn"))]);
    for f in Function::ALL {
        let put: BTreeSet<(String, String)> = grants(&t, f)
            .into_iter()
            .filter(|(action, _)| action == PUT_EVENTS)
            .collect();
        if publishers.contains(&f) {
            assert_eq!(put, on_the_bus, "{}", f.name());
            assert_eq!(
                ref_target(&environment(&t, f)[EVENT_BUS_NAME]),
                Some(bus),
                "{}: {EVENT_BUS_NAME}",
                f.name()
            );
        } else {
            assert!(put.is_empty(), "{} must not publish: {put:?}", f.name());
        }
    }
    // Nowhere else (a queue policy, a role written out) grants PutEvents.
    let puts = |v: &Value| statements_granting(v, |a| a == PUT_EVENTS);
    let in_publishers: usize = publishers
        .iter()
        .map(|f| puts(at(function_resource(&t, *f), &["Properties", "Policies"])))
        .sum();
    assert_eq!(
        puts(&t),
        in_publishers,
        "{PUT_EVENTS} granted outside the publishing functions' policies"
    );
}

#[test]
fn only_the_create_function_may_consume_a_queue_and_only_the_provisioning_queue() {
    let t = template();
    let consumed = BTreeSet::from_iter(
        CONSUME_QUEUE.map(|a| (a.to_owned(), format!("{PROVISIONING_QUEUE}.Arn"))),
    );
    for f in Function::ALL {
        let consume: BTreeSet<(String, String)> = grants(&t, f)
            .into_iter()
            .filter(|(action, _)| action.starts_with("sqs:"))
            .collect();
        if f == Function::Create {
            assert_eq!(consume, consumed, "{}", f.name());
        } else {
            assert!(
                consume.is_empty(),
                "{} reads no queue: {consume:?}",
                f.name()
            );
        }
    }
    // Nowhere else (a queue policy, a role written out) lets anyone read or
    // delete messages: not the dead-letter queue, not another queue.
    let consumers = |v: &Value| statements_granting(v, |a| CONSUME_QUEUE.contains(&a));
    assert_eq!(
        consumers(&t),
        consumers(at(
            function_resource(&t, Function::Create),
            &["Properties", "Policies"]
        )),
        "{CONSUME_QUEUE:?} granted outside CreateFunction's policies"
    );
}

#[test]
fn the_signing_key_is_generated_never_typed_in() {
    let t = template();
    let key = at(&t, &["Resources", "JwtSigningKey"]);

    assert_eq!(
        at(key, &["Type"]).as_str(),
        Some("AWS::SecretsManager::Secret")
    );
    assert!(at(key, &["Properties", "SecretString"]).is_null());
    let generate = at(key, &["Properties", "GenerateSecretString"]);
    assert!(at(generate, &["PasswordLength"]).as_u64().unwrap_or(0) >= 64);
    assert!(
        at(generate, &["SecretStringTemplate"]).is_null(),
        "the value is the key itself, not JSON"
    );
}

#[test]
fn the_outputs_name_the_api_the_secrets_the_bus_the_queues_the_alarm_topic_and_the_dashboard() {
    let t = template();
    let outputs: BTreeSet<&str> = mapping(at(&t, &["Outputs"]), "Outputs")
        .keys()
        .map(|k| string(k, "an output name"))
        .collect();

    for name in [
        "ApiUrl",
        "JwtSigningKeyArn",
        "MongoUriSecretArn",
        "EventBusName",
        "EventBusArn",
        "ProvisioningQueueUrl",
        "ProvisioningDeadLetterQueueUrl",
        "AlarmTopicArn",
        "OperationsDashboardUrl",
    ] {
        assert!(outputs.contains(name), "missing output {name}");
    }
    let value = |name: &str| at(&t, &["Outputs", name, "Value"]);
    let bus = the_bus(&t);
    // `Ref` of a bus is its name; of a queue, its URL.
    assert_eq!(ref_target(value("EventBusName")), Some(bus));
    assert_eq!(
        get_att(value("EventBusArn")),
        Some(format!("{bus}.Arn")),
        "EventBusArn"
    );
    assert_eq!(
        ref_target(value("ProvisioningQueueUrl")),
        Some(PROVISIONING_QUEUE)
    );
    assert_eq!(
        ref_target(value("ProvisioningDeadLetterQueueUrl")),
        Some(DEAD_LETTER_QUEUE)
    );
}

/// The one event bus: where lifecycle events go and provisioning requests
/// come from.
fn the_bus(t: &Value) -> &str {
    let buses = resources_of_type(t, EVENT_BUS);
    assert_eq!(buses.len(), 1, "one event bus");
    buses[0].0
}

/// The events of `f` of SAM event type `ty`, by name.
fn events_of_type<'a>(t: &'a Value, f: Function, ty: &str) -> Vec<(&'a str, &'a Value)> {
    at(function_resource(t, f), &["Properties", "Events"])
        .as_mapping()
        .map(|events| {
            events
                .iter()
                .filter(|(_, e)| at(e, &["Type"]).as_str() == Some(ty))
                .map(|(name, e)| (string(name, "an event name"), at(e, &["Properties"])))
                .collect()
        })
        .unwrap_or_default()
}

/// The one event of `ty` on the create function.
fn create_event<'a>(t: &'a Value, ty: &str) -> (&'a str, &'a Value) {
    let found = events_of_type(t, Function::Create, ty);
    assert_eq!(found.len(), 1, "CreateFunction has one {ty} event");
    found[0]
}

/// The one event source mapping (the provisioning queue's) and its
/// properties.
fn queue_mapping(t: &Value) -> (&str, &Value) {
    let found = resources_of_type(t, EVENT_SOURCE_MAPPING);
    assert_eq!(
        found.len(),
        1,
        "one {EVENT_SOURCE_MAPPING}: the provisioning queue's"
    );
    let (id, mapping) = found[0];
    (id, at(mapping, &["Properties"]))
}

/// `!GetAtt Q.Arn` of an SQS queue declared here, as `Q`.
fn queue_of_arn(t: &Value, value: &Value, what: &str) -> String {
    let att = get_att(value).unwrap_or_else(|| panic!("{what}: !GetAtt Queue.Arn: {value:?}"));
    let queue = att
        .strip_suffix(".Arn")
        .unwrap_or_else(|| panic!("{what}: {att} is not an Arn"));
    assert_eq!(
        at(t, &["Resources", queue, "Type"]).as_str(),
        Some(SQS_QUEUE),
        "{what}: {queue}"
    );
    queue.to_owned()
}

/// The seconds a numeric property holds, or `default` when it is absent.
fn seconds(value: &Value, default: u64, what: &str) -> u64 {
    match value {
        Value::Null => default,
        v => v
            .as_u64()
            .unwrap_or_else(|| panic!("{what} is not a number: {v:?}")),
    }
}

#[test]
fn only_the_create_and_purge_functions_take_events_besides_http_routes_through_sam_events_or_the_queue_mapping(
) {
    let t = template();
    // Not `SQS`: SAM would attach the managed AWSLambdaSQSQueueExecutionRole
    // (receive and delete on every queue in the account); the queue comes
    // in through the mapping written out below instead.
    let provisioning: BTreeSet<&str> = ["EventBridgeRule", "Schedule", "ScheduleV2"].into();
    // The purge function runs on its schedule and nothing else.
    let purging: BTreeSet<&str> = ["Schedule", "ScheduleV2"].into();

    for (id, r) in resources_of_type(&t, SERVERLESS_FUNCTION) {
        let Some(events) = at(r, &["Properties", "Events"]).as_mapping() else {
            continue;
        };
        for (name, event) in events {
            let ty = string(at(event, &["Type"]), "an event Type");
            if ty == "HttpApi" {
                continue;
            }
            assert_ne!(
                ty, "SQS",
                "{id}.{name:?}: a SAM SQS event attaches AWSLambdaSQSQueueExecutionRole \
                 (every queue); write an {EVENT_SOURCE_MAPPING} and an inline statement"
            );
            // Only the create binary dispatches on the event's shape; the
            // purge binary takes its schedule.
            let allowed = if id == logical_id(Function::Create) {
                &provisioning
            } else if id == logical_id(Function::Purge) {
                &purging
            } else {
                panic!("{id}.{name:?}: a {ty} event on a function that takes only its route")
            };
            assert!(allowed.contains(ty), "{id}.{name:?}: a {ty} event");
        }
    }
    // Written out by hand, these would bypass the checks on the SAM events.
    // The one event source mapping is the provisioning queue's into the
    // create function, checked on its own.
    let (_, mapping) = queue_mapping(&t);
    assert_eq!(
        alias_of(at(mapping, &["FunctionName"])),
        Some(logical_id(Function::Create).as_str())
    );
    assert_no_resources_of_types(
        &t,
        &[
            "AWS::Events::Rule",
            "AWS::Lambda::EventInvokeConfig",
            "AWS::Scheduler::Schedule",
            "AWS::Lambda::Permission",
        ],
    );
}

#[test]
fn the_provisioning_rule_sends_create_organization_requests_on_the_bus_to_the_create_function() {
    let t = template();
    let (_, rule) = create_event(&t, "EventBridgeRule");

    assert_eq!(
        ref_target(at(rule, &["EventBusName"])),
        Some(the_bus(&t)),
        "the rule listens on the service's bus, not the default one"
    );
    mapping(at(rule, &["Pattern"]), "the rule's Pattern");
    assert_eq!(
        at(rule, &["Pattern", "detail-type"]),
        &Value::from(vec![DETAIL_TYPE]),
        "the rule matches provisioning requests by detail-type"
    );
    for published in [
        shared::events::CREATED,
        shared::events::RENAMED,
        shared::events::DELETED,
        RESTORED,
        PURGED,
    ] {
        assert_ne!(
            published, DETAIL_TYPE,
            "the service's own events must not provision"
        );
    }
    assert!(
        at(rule, &["Input"]).is_null() && at(rule, &["InputPath"]).is_null(),
        "the function needs the whole event, detail-type included"
    );
}

#[test]
fn what_the_provisioning_rule_cannot_deliver_ends_in_the_dead_letter_queue() {
    let t = template();
    let (name, rule) = create_event(&t, "EventBridgeRule");

    let retry = at(rule, &["RetryPolicy"]);
    let attempts = seconds(at(retry, &["MaximumRetryAttempts"]), u64::MAX, "attempts");
    let age = seconds(at(retry, &["MaximumEventAgeInSeconds"]), u64::MAX, "age");
    assert!(attempts <= 185, "bounded retries: {retry:?}");
    assert!((60..=86_400).contains(&age), "bounded age: {retry:?}");
    assert!(
        at(rule, &["DeadLetterConfig", "Type"]).is_null(),
        "the dead-letter queue is declared here, not generated"
    );
    let dlq = queue_of_arn(
        &t,
        at(rule, &["DeadLetterConfig", "Arn"]),
        "rule DeadLetterConfig",
    );
    assert_eq!(dlq, DEAD_LETTER_QUEUE);

    // EventBridge writes to a dead-letter queue under the queue's policy:
    // without a statement for this rule, failed events are silently lost.
    // SAM names the rule it generates <function><event>.
    let rule_arn = format!("{}{name}.Arn", logical_id(Function::Create));
    let allowed = resources_of_type(&t, "AWS::SQS::QueuePolicy")
        .into_iter()
        .filter(|(_, p)| {
            one_or_many(at(p, &["Properties", "Queues"]))
                .iter()
                .any(|q| ref_target(q) == Some(DEAD_LETTER_QUEUE))
        })
        .flat_map(|(_, p)| {
            let mut found = Vec::new();
            statements(at(p, &["Properties", "PolicyDocument"]), &mut found);
            found
        })
        .any(|s| {
            at(&s, &["Effect"]).as_str() == Some("Allow")
                && at(&s, &["Principal", "Service"]).as_str() == Some("events.amazonaws.com")
                && one_or_many(at(&s, &["Action"])) == [Value::from("sqs:SendMessage")]
                && get_att(at(&s, &["Resource"])) == Some(format!("{DEAD_LETTER_QUEUE}.Arn"))
                && get_att(at(&s, &["Condition", "ArnEquals", "aws:SourceArn"]))
                    == Some(rule_arn.clone())
        });
    assert!(
        allowed,
        "{DEAD_LETTER_QUEUE}'s policy lets events.amazonaws.com send from {rule_arn} only"
    );
}

#[test]
fn a_provisioning_event_the_create_function_fails_ends_in_the_dead_letter_queue() {
    let t = template();
    // The rule invokes asynchronously: when the function returns an error,
    // Lambda retries, then hands the event to the on-failure destination.
    let config = at(
        function_resource(&t, Function::Create),
        &["Properties", "EventInvokeConfig"],
    );
    let retries = at(config, &["MaximumRetryAttempts"]).as_u64();
    assert!(
        matches!(retries, Some(0..=2)),
        "MaximumRetryAttempts is set: {config:?}"
    );
    let on_failure = at(config, &["DestinationConfig", "OnFailure"]);
    assert_eq!(at(on_failure, &["Type"]).as_str(), Some("SQS"));
    let dlq = queue_of_arn(&t, at(on_failure, &["Destination"]), "OnFailure");
    assert_eq!(dlq, DEAD_LETTER_QUEUE);
}

#[test]
fn the_provisioning_queue_is_mapped_to_the_create_function_once_its_role_may_read_the_queue() {
    let t = template();
    let (id, mapping) = queue_mapping(&t);
    let create = logical_id(Function::Create);

    assert_eq!(
        alias_of(at(mapping, &["FunctionName"])),
        Some(create.as_str()),
        "{id}: FunctionName is !Ref {create}.Alias, the alias the rule and the schedule invoke"
    );
    let queue = queue_of_arn(&t, at(mapping, &["EventSourceArn"]), id);
    assert_eq!(queue, PROVISIONING_QUEUE, "{id}");
    assert_eq!(
        at(mapping, &["Enabled"]).as_bool(),
        Some(true),
        "{id} is enabled"
    );
    // A message a filter drops is deleted, never dead-lettered.
    assert!(
        at(mapping, &["FilterCriteria"]).is_null(),
        "{id}: every message reaches the function"
    );
    // Bounded, as the database's connections are.
    let concurrency = at(mapping, &["ScalingConfig", "MaximumConcurrency"]).as_u64();
    assert!(
        matches!(concurrency, Some(2..=1000)),
        "{id}: ScalingConfig.MaximumConcurrency is set: {concurrency:?}"
    );

    // Lambda checks the role when it creates the mapping: the mapping waits
    // for the role SAM generates, which carries the function's Policies.
    assert!(
        function_property(&t, Function::Create, "Role").is_null(),
        "{create} gets its role from SAM, with its Policies"
    );
    let role = format!("{create}Role");
    let depends_on = one_or_many(at(&t, &["Resources", id, "DependsOn"]));
    assert!(
        depends_on.contains(&Value::from(role.as_str())),
        "{id} DependsOn {role}: {depends_on:?}"
    );
}

#[test]
fn the_provisioning_queue_reports_batch_item_failures_and_redrives_to_the_dead_letter_queue() {
    let t = template();
    let (name, source) = queue_mapping(&t);

    let queue = queue_of_arn(&t, at(source, &["EventSourceArn"]), name);
    assert_eq!(queue, PROVISIONING_QUEUE);
    assert_eq!(
        one_or_many(at(source, &["FunctionResponseTypes"])),
        [Value::from("ReportBatchItemFailures")],
        "only failed messages are retried"
    );
    assert_eq!(at(source, &["BatchSize"]).as_u64(), Some(10));

    let properties = at(&t, &["Resources", PROVISIONING_QUEUE, "Properties"]);
    let redrive = at(properties, &["RedrivePolicy"]);
    let dlq = queue_of_arn(&t, at(redrive, &["deadLetterTargetArn"]), "RedrivePolicy");
    assert_eq!(dlq, DEAD_LETTER_QUEUE);
    assert_eq!(at(redrive, &["maxReceiveCount"]).as_u64(), Some(5));
    assert!(
        at(
            &t,
            &[
                "Resources",
                DEAD_LETTER_QUEUE,
                "Properties",
                "RedrivePolicy"
            ]
        )
        .is_null(),
        "the dead-letter queue is the end of the line"
    );

    // Lambda's advice: at least six times the function's timeout (plus the
    // batching window), or a batch in progress is delivered again.
    let timeout = timeout_secs(&t, Function::Create);
    let window = seconds(
        at(source, &["MaximumBatchingWindowInSeconds"]),
        0,
        "MaximumBatchingWindowInSeconds",
    );
    let visibility = seconds(
        at(properties, &["VisibilityTimeout"]),
        30,
        "VisibilityTimeout",
    );
    assert!(
        visibility >= 6 * timeout + window,
        "VisibilityTimeout {visibility} s < 6 x {timeout} s + {window} s"
    );

    for q in [PROVISIONING_QUEUE, DEAD_LETTER_QUEUE] {
        let p = at(&t, &["Resources", q, "Properties"]);
        assert!(
            at(p, &["SqsManagedSseEnabled"]).as_bool() == Some(true)
                || !at(p, &["KmsMasterKeyId"]).is_null(),
            "{q} is encrypted at rest"
        );
    }
    // A redriven message keeps its first enqueue time: the dead-letter queue
    // must keep it longer than the source queue did.
    let retention = |q: &str| {
        seconds(
            at(
                &t,
                &["Resources", q, "Properties", "MessageRetentionPeriod"],
            ),
            345_600,
            "MessageRetentionPeriod",
        )
    };
    assert!(retention(DEAD_LETTER_QUEUE) > retention(PROVISIONING_QUEUE));
}

/// Asserts that schedule event `name` is enabled and runs at `rate`.
fn assert_enabled_at(name: &str, schedule: &Value, rate: &str) {
    assert_eq!(at(schedule, &["Schedule"]).as_str(), Some(rate), "{name}");
    assert!(
        at(schedule, &["Enabled"]).as_bool() != Some(false)
            && at(schedule, &["State"]).as_str().unwrap_or("ENABLED") == "ENABLED",
        "{name} is enabled"
    );
}

#[test]
fn a_schedule_on_the_create_function_sends_the_event_that_flushes_the_outbox() {
    let t = template();
    let classic = events_of_type(&t, Function::Create, "Schedule");
    let scheduler = events_of_type(&t, Function::Create, "ScheduleV2");
    assert_eq!(
        classic.len() + scheduler.len(),
        1,
        "one schedule on CreateFunction"
    );

    for (name, schedule) in classic.iter().chain(&scheduler) {
        assert_enabled_at(name, schedule, "rate(5 minutes)");
    }
    // An EventBridge schedule rule sends a "Scheduled Event" from aws.events,
    // which the function recognises; EventBridge Scheduler sends only its
    // Input, which must then be shaped like one.
    for (name, schedule) in &classic {
        assert!(at(schedule, &["Input"]).is_null(), "{name}: no Input");
    }
    for (name, schedule) in &scheduler {
        let input: serde_json::Value =
            serde_json::from_str(string(at(schedule, &["Input"]), "ScheduleV2 Input"))
                .unwrap_or_else(|e| panic!("{name}: Input is not JSON: {e}"));
        assert_eq!(classify(&input), Kind::Schedule, "{name}: Input");
    }
}

#[test]
fn a_schedule_runs_the_purge_function_every_hour_and_nothing_else_invokes_it() {
    let t = template();
    assert!(
        Function::Purge.route().is_none(),
        "the purge function serves no route"
    );
    let events = mapping(
        at(
            function_resource(&t, Function::Purge),
            &["Properties", "Events"],
        ),
        "PurgeFunction Events",
    );
    assert_eq!(events.len(), 1, "PurgeFunction has one event: {events:?}");
    let schedules = events_of_type(&t, Function::Purge, "Schedule");
    assert_eq!(
        schedules.len(),
        1,
        "PurgeFunction's event is an EventBridge schedule rule"
    );
    let (name, schedule) = schedules[0];

    assert_enabled_at(name, schedule, "rate(1 hour)");
    // The function receives the "Scheduled Event" itself.
    assert!(at(schedule, &["Input"]).is_null(), "{name}: no Input");

    // It drops collections in batches: no function here has longer.
    let timeout = |f: Function| timeout_secs(&t, f);
    let longest_other = Function::ALL
        .into_iter()
        .filter(|f| *f != Function::Purge)
        .map(timeout)
        .max()
        .expect("there are other functions");
    assert!(
        timeout(Function::Purge) >= longest_other,
        "PurgeFunction Timeout {} s < {longest_other} s",
        timeout(Function::Purge)
    );
}

#[test]
fn every_route_has_a_fixture_event_that_parses_as_the_request_its_function_receives() {
    let mut covered = BTreeSet::new();

    for (name, json, text) in read_events()
        .into_iter()
        .filter(|(_, j, _)| is_route_event(j))
    {
        let req = shared::lambda_http::request::from_str(&text)
            .unwrap_or_else(|e| panic!("{name} does not parse as an HTTP API request: {e}"));

        let route_key = json["routeKey"].as_str().unwrap();
        let (method, path) = route_key
            .split_once(' ')
            .expect("routeKey is 'METHOD /path'");
        assert_eq!(req.method().as_str(), method, "{name}");
        assert_eq!(req.uri().path(), path, "{name}");
        assert_eq!(json["rawPath"], path, "{name}");
        assert_eq!(json["requestContext"]["routeKey"], route_key, "{name}");
        assert_eq!(json["requestContext"]["http"]["method"], method, "{name}");
        assert_eq!(json["requestContext"]["http"]["path"], path, "{name}");
        assert_eq!(json["isBase64Encoded"], false, "{name}");
        let query: BTreeMap<String, String> = req
            .query_string_parameters_ref()
            .map(|q| {
                q.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let raw: BTreeMap<String, String> = json["rawQueryString"]
            .as_str()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            query, raw,
            "{name}: queryStringParameters vs rawQueryString"
        );
        if let Some(body) = json["body"].as_str() {
            serde_json::from_str::<serde_json::Value>(body)
                .unwrap_or_else(|e| panic!("{name}: body is not JSON: {e}"));
        }
        let route = Function::for_route(method, path)
            .and_then(Function::route)
            .unwrap_or_else(|| panic!("{name}: {route_key} is not a contract route"));
        if route.auth == Auth::Bearer {
            let authorization = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            assert_eq!(authorization, Some("Bearer REPLACE_WITH_TOKEN"), "{name}");
            let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref() else {
                panic!("{name}: no HTTP API request context");
            };
            let fields = &ctx
                .authorizer
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: no requestContext.authorizer"))
                .fields;
            for key in ["admin_id", "organization_id"] {
                assert!(
                    fields.contains_key(key),
                    "{name}: authorizer context lacks {key}"
                );
            }
        }
        if route.auth == Auth::Iam {
            let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref() else {
                panic!("{name}: no HTTP API request context");
            };
            // A fixture either carries the identity the gateway adds after
            // checking a SigV4 signature, or none at all (the refusal's).
            if let Some(authorizer) = &ctx.authorizer {
                let arn = authorizer
                    .iam
                    .as_ref()
                    .and_then(|iam| iam.user_arn.as_deref())
                    .unwrap_or_default();
                assert!(arn.starts_with("arn:aws:iam::"), "{name}: userArn {arn:?}");
                assert!(authorizer.fields.is_empty(), "{name}: no Lambda context");
            }
        }
        covered.insert(route_key.to_owned());
    }
    let contract: BTreeSet<String> = Function::routes()
        .map(|(_, r)| format!("{} {}", r.method, r.path))
        .collect();

    assert_eq!(covered, contract);
}

#[test]
fn the_authorizer_fixture_parses_as_the_request_the_gateway_sends() {
    let requests: Vec<_> = read_events()
        .into_iter()
        .filter(|(_, j, _)| is_authorizer_request(j))
        .collect();
    assert!(!requests.is_empty(), "events/ has an authorizer request");

    for (name, _, text) in requests {
        let event: ApiGatewayV2CustomAuthorizerV2Request = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name} does not parse as an authorizer request: {e}"));

        let route_key = event.route_key.as_deref().unwrap_or_default();
        assert!(
            Function::routes()
                .any(|(_, r)| r.auth == Auth::Bearer
                    && format!("{} {}", r.method, r.path) == route_key),
            "{name}: the authorizer only runs for protected routes, not {route_key:?}"
        );
        assert_eq!(
            event
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer REPLACE_WITH_TOKEN"),
            "{name}"
        );
        assert_eq!(
            event.identity_source.as_deref(),
            Some(&["Bearer REPLACE_WITH_TOKEN".to_owned()][..]),
            "{name}: identitySource is the Authorization header"
        );
    }
}

#[test]
fn every_fixture_is_a_route_an_authorizer_request_or_an_event_the_create_function_takes() {
    for (name, json, _) in read_events() {
        assert!(
            is_route_event(&json)
                || is_authorizer_request(&json)
                || classify(&json) != Kind::Unknown,
            "{name} is no event any function here takes"
        );
    }
}

/// A create request as a provisioning message carries it.
fn assert_is_a_create_request(name: &str, request: &serde_json::Value) {
    assert!(
        request.is_object() && request["organization_name"].is_string(),
        "{name}: not a create request: {request}"
    );
}

#[test]
fn the_provisioning_fixtures_parse_as_the_events_the_create_function_receives() {
    let t = template();
    let (_, rule) = create_event(&t, "EventBridgeRule");
    let matched = one_or_many(at(rule, &["Pattern", "detail-type"]));
    let (_, queue) = queue_mapping(&t);
    let batch_size = at(queue, &["BatchSize"]).as_u64().expect("BatchSize") as usize;
    let mut kinds = Vec::new();

    for (name, json, text) in read_events() {
        let kind = classify(&json);
        match kind {
            Kind::EventBridge => {
                let event: EventBridgeEvent = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{name} is not an EventBridge event: {e}"));
                assert!(
                    matched.contains(&Value::from(event.detail_type.as_str())),
                    "{name}: the provisioning rule does not match {}",
                    event.detail_type
                );
                assert_ne!(event.source, shared::events::SOURCE, "{name}");
                assert!(
                    event.id.is_some(),
                    "{name}: deliveries are told apart by id"
                );
                assert_is_a_create_request(&name, &event.detail);
            }
            Kind::Sqs => {
                let event: SqsEvent = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{name} is not an SQS event: {e}"));
                assert!(
                    (1..=batch_size).contains(&event.records.len()),
                    "{name}: a batch of 1 to {batch_size} messages"
                );
                let mut ids = BTreeSet::new();
                for record in &event.records {
                    let id = record.message_id.clone().unwrap_or_default();
                    assert!(ids.insert(id.clone()), "{name}: {id:?} twice");
                    assert_eq!(record.event_source.as_deref(), Some("aws:sqs"), "{name}");
                    assert!(record.event_source_arn.is_some(), "{name}: {id}");
                    let body: serde_json::Value =
                        serde_json::from_str(record.body.as_deref().unwrap_or_default())
                            .unwrap_or_else(|e| panic!("{name}: {id}: body is not JSON: {e}"));
                    if body.get("detail-type").is_some() {
                        // A rule targeting the queue: the whole event is the body.
                        let envelope: EventBridgeEvent = serde_json::from_value(body)
                            .unwrap_or_else(|e| panic!("{name}: {id}: not an envelope: {e}"));
                        assert_eq!(envelope.detail_type, DETAIL_TYPE, "{name}: {id}");
                        assert_is_a_create_request(&name, &envelope.detail);
                    } else {
                        assert_is_a_create_request(&name, &body);
                    }
                }
            }
            Kind::Schedule => {
                let event: EventBridgeEvent = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{name} is not a scheduled event: {e}"));
                assert_eq!(event.source, "aws.events", "{name}");
                assert_eq!(event.detail_type, "Scheduled Event", "{name}");
            }
            Kind::Http | Kind::Unknown => continue,
        }
        kinds.push(kind);
    }
    for kind in [Kind::EventBridge, Kind::Sqs, Kind::Schedule] {
        assert!(kinds.contains(&kind), "events/ has no {kind:?} fixture");
    }
}

#[test]
fn every_schedule_has_a_fixture_naming_its_rule() {
    let t = template();
    // SAM names the rule of a Schedule event <function logical id><event
    // name>; the deployed rule is <stack>-<that>-<suffix>.
    let mut rules = BTreeSet::new();
    for f in Function::ALL {
        for (name, _) in events_of_type(&t, f, "Schedule") {
            rules.insert(format!("{}{name}", logical_id(f)));
        }
    }
    assert!(!rules.is_empty(), "the template has schedules");

    let mut named = BTreeSet::new();
    for (file, json, _) in read_events() {
        if classify(&json) != Kind::Schedule {
            continue;
        }
        let resources = json["resources"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: no resources"));
        assert_eq!(resources.len(), 1, "{file}: the one rule that fired");
        let arn = resources[0].as_str().unwrap_or_default();
        let rule = rules
            .iter()
            .find(|rule| arn.contains(&format!("-{rule}-")))
            .unwrap_or_else(|| panic!("{file}: {arn} is none of the rules {rules:?}"));
        assert!(
            named.insert(rule.clone()),
            "{file}: {rule} has two fixtures"
        );
    }

    assert_eq!(named, rules, "a fixture for every schedule");
}

/// Fails if the template declares a resource of any of `types`.
fn assert_no_resources_of_types(t: &Value, types: &[&str]) {
    for other in types {
        assert!(resources_of_type(t, other).is_empty(), "unexpected {other}");
    }
}

/// How many IAM statements anywhere under `v` grant (allow) an action
/// `wanted` accepts.
fn statements_granting(v: &Value, wanted: impl Fn(&str) -> bool) -> usize {
    let mut found = Vec::new();
    statements(v, &mut found);
    found
        .iter()
        .filter(|s| at(s, &["Effect"]).as_str() == Some("Allow"))
        .filter(|s| {
            one_or_many(at(s, &["Action"]))
                .iter()
                .any(|a| a.as_str().is_some_and(&wanted))
        })
        .count()
}

/// The role SAM generates for function `f`, as `!GetAtt` names it.
fn role_arn(f: Function) -> String {
    format!("{}Role.Arn", logical_id(f))
}

/// The `!GetAtt` targets (and `!If` branches' `!Ref`s, as `If:X`) listed in
/// a statement's `ArnNotEquals: {aws:PrincipalArn: [...]}`.
fn exempt_principals(statement: &Value) -> BTreeSet<String> {
    one_or_many(at(
        statement,
        &["Condition", "ArnNotEquals", "aws:PrincipalArn"],
    ))
    .iter()
    .map(|v| {
        get_att(v).unwrap_or_else(|| match intrinsic(v) {
            Some((name, Value::Sequence(branches))) if name == "If" => {
                let chosen = ref_target(&branches[1]).unwrap_or_default();
                format!("If:{chosen}")
            }
            _ => panic!("a principal by !GetAtt or !If: {v:?}"),
        })
    })
    .collect()
}

/// The statement of the bus policy whose Condition has `key` equal to `value`.
fn bus_policy_with<'a>(t: &'a Value, key: &str, value: &str) -> &'a Value {
    let found: Vec<&Value> = resources_of_type(t, EVENT_BUS_POLICY)
        .into_iter()
        .map(|(_, p)| at(p, &["Properties", "Statement"]))
        .filter(|s| at(s, &["Condition", "StringEquals", key]).as_str() == Some(value))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one bus policy statement on {key} = {value}"
    );
    found[0]
}

#[test]
fn only_the_publishing_functions_may_speak_as_the_service_on_its_bus() {
    let t = template();
    let bus = format!("{}.Arn", the_bus(&t));

    // Each grant is for the service's own source only...
    let publishers = reading(Section::Events);
    for f in publishers.iter().copied() {
        for s in policy_statements(&t, f)
            .iter()
            .filter(|s| at(s, &["Action"]).as_str() == Some(PUT_EVENTS))
        {
            assert_eq!(
                at(s, &["Condition", "StringEquals", "events:source"]).as_str(),
                Some(shared::events::SOURCE),
                "{}: PutEvents only as the service's source: {s:?}",
                f.name()
            );
        }
    }
    // ...and the bus refuses that source from every other principal.
    let own = bus_policy_with(&t, "events:source", shared::events::SOURCE);
    assert_eq!(at(own, &["Effect"]).as_str(), Some("Deny"));
    assert_eq!(at(own, &["Principal"]).as_str(), Some("*"));
    assert_eq!(at(own, &["Action"]).as_str(), Some(PUT_EVENTS));
    assert_eq!(get_att(at(own, &["Resource"])), Some(bus));
    let publishers: BTreeSet<String> = publishers.iter().map(|f| role_arn(*f)).collect();
    assert_eq!(exempt_principals(own), publishers);
}

#[test]
fn only_the_listed_sources_provision_and_plaintext_only_where_allowed() {
    let t = template();
    let (_, rule) = create_event(&t, "EventBridgeRule");
    let sources = ref_target(at(rule, &["Pattern", "source"])).expect("source: !Ref a parameter");
    assert_eq!(
        at(&t, &["Parameters", sources, "Type"]).as_str(),
        Some("CommaDelimitedList"),
        "{sources}"
    );

    // The bus refuses a provisioning request from any other source.
    let provisioning = bus_policy_with(&t, "events:detail-type", DETAIL_TYPE);
    assert_eq!(at(provisioning, &["Effect"]).as_str(), Some("Deny"));
    assert_eq!(at(provisioning, &["Principal"]).as_str(), Some("*"));
    assert_eq!(
        ref_target(at(
            provisioning,
            &["Condition", "StringNotEquals", "events:source"]
        )),
        Some(sources)
    );

    // Plaintext: off by default, and then filtered out before the function.
    let flag = environment(&t, Function::Create)
        .get(PROVISIONING_ALLOW_PLAINTEXT)
        .and_then(ref_target)
        .map(str::to_owned)
        .expect("the create function reads the plaintext flag from a parameter");
    assert_eq!(
        at(&t, &["Parameters", &flag, "Default"]).as_str(),
        Some("false")
    );
    let Some((name, Value::Sequence(branches))) = intrinsic(at(rule, &["Pattern", "detail"]))
    else {
        panic!("the rule's detail pattern is an !If on the plaintext flag");
    };
    assert_eq!(name, "If");
    let condition = at(
        &t,
        &["Conditions", string(&branches[0], "a condition name")],
    );
    let Some((equals, Value::Sequence(operands))) = intrinsic(condition) else {
        panic!("the condition is !Equals");
    };
    assert_eq!(equals, "Equals");
    assert_eq!(ref_target(&operands[0]), Some(flag.as_str()));
    assert_eq!(operands[1].as_str(), Some("true"));
    assert_eq!(ref_target(&branches[1]), Some("AWS::NoValue"));
    assert_eq!(
        at(&branches[2], &["password"]),
        &serde_yaml::from_str::<Value>("[{exists: false}]").unwrap(),
        "without plaintext, an event with a password matches nothing"
    );
}

/// The statements of the signing key's resource policy (the
/// `AWS::SecretsManager::ResourcePolicy` whose `SecretId` is `!Ref JwtSigningKey`).
fn signing_key_policy(t: &Value) -> Vec<Value> {
    let policies = resources_of_type(t, "AWS::SecretsManager::ResourcePolicy");
    let (_, policy) = policies
        .iter()
        .find(|(_, p)| ref_target(at(p, &["Properties", "SecretId"])) == Some("JwtSigningKey"))
        .expect("the signing key has a resource policy");
    let mut found = Vec::new();
    statements(at(policy, &["Properties", "ResourcePolicy"]), &mut found);
    assert!(
        !found.is_empty(),
        "the signing key's resource policy has statements"
    );
    found
}

/// Every principal the signing key's resource policy exempts from its deny.
fn signing_key_exempt(t: &Value) -> BTreeSet<String> {
    signing_key_policy(t)
        .iter()
        .flat_map(exempt_principals)
        .collect()
}

#[test]
fn only_the_functions_that_sign_or_verify_tokens_may_read_the_signing_key() {
    let t = template();
    let found = signing_key_policy(&t);
    assert_eq!(found.len(), 1, "{found:?}");
    let deny = &found[0];

    assert_eq!(at(deny, &["Effect"]).as_str(), Some("Deny"));
    assert_eq!(at(deny, &["Principal"]).as_str(), Some("*"));
    assert_eq!(at(deny, &["Action"]).as_str(), Some(READ_SECRET));
    let mut readers: BTreeSet<String> = Function::ALL
        .into_iter()
        .filter(|f| environment(&t, *f).contains_key(JWT_SECRET_ARN))
        .map(role_arn)
        .collect();
    let signers_and_verifiers: BTreeSet<String> =
        reading(Section::Tokens).into_iter().map(role_arn).collect();
    assert_eq!(
        readers, signers_and_verifiers,
        "the functions given {JWT_SECRET_ARN} (left) vs those that sign or verify tokens (right)"
    );
    readers.insert("If:SigningKeyAdminRoleArn".to_owned());
    assert_eq!(exempt_principals(deny), readers);
    assert_eq!(
        at(&t, &["Parameters", "SigningKeyAdminRoleArn", "Default"]).as_str(),
        Some(""),
        "no administrator unless one is named"
    );
}

#[test]
fn neither_the_restore_nor_the_purge_function_may_read_the_signing_key() {
    let t = template();
    let exempt = signing_key_exempt(&t);

    for f in [Function::Restore, Function::Purge] {
        assert!(
            !exempt.contains(&role_arn(f)),
            "{}: the key's policy must not let {} read it",
            f.name(),
            role_arn(f)
        );
        let env = environment(&t, f);
        for var in [JWT_SECRET_ARN, JWT_SECRET] {
            assert!(!env.contains_key(var), "{}: {var}", f.name());
        }
        assert!(
            !grants(&t, f)
                .iter()
                .any(|(action, resource)| action == READ_SECRET && resource == "JwtSigningKey"),
            "{}: no grant on the signing key",
            f.name()
        );
    }
}

/// The secret a function's environment names for the MongoDB URI.
fn database_secret(env: &BTreeMap<String, Value>) -> &str {
    ref_target(&env[MONGODB_URI_SECRET_ARN])
        .expect("MONGODB_URI_SECRET_ARN is !Ref the secret's parameter")
}

/// Asserts that `f` is granted `granted` and nothing else (`what` says
/// what that is), one statement each, by the role SAM generates from its
/// `Policies`.
fn assert_granted_only(t: &Value, f: Function, granted: &[(&str, String)], what: &str) {
    let id = logical_id(f);
    let granted: BTreeSet<(String, String)> = granted
        .iter()
        .map(|(action, resource)| ((*action).to_owned(), resource.clone()))
        .collect();
    assert_eq!(grants(t, f), granted, "{id}: {what}, nothing else");
    let found = single_grant_statements(t, f);
    assert_eq!(
        found.len(),
        granted.len(),
        "{id}: a statement for each grant: {found:?}"
    );
    assert!(
        function_property(t, f, "Role").is_null(),
        "{id} gets its role from SAM, with these Policies alone"
    );
}

#[test]
fn the_purge_function_may_only_read_the_database_secret_and_publish_as_the_service() {
    let t = template();
    let env = environment(&t, Function::Purge);
    let database = database_secret(&env);
    assert_eq!(database, "MongoUriSecretArn");
    let bus = the_bus(&t);

    assert_granted_only(
        &t,
        Function::Purge,
        &[
            (READ_SECRET, database.to_owned()),
            (PUT_EVENTS, format!("{bus}.Arn")),
        ],
        "the MongoDB URI secret and the bus",
    );
    // Its PutEvents is held to the service's source with every publisher's.
    assert!(reading(Section::Events).contains(&Function::Purge));
}

#[test]
fn the_template_allows_no_bcrypt_cost_above_what_the_service_verifies() {
    let t = template();
    let env = environment(&t, Function::Login);
    let parameter = ref_target(&env["BCRYPT_COST"]).expect("BCRYPT_COST is a parameter");
    assert_eq!(
        at(&t, &["Parameters", parameter, "MaxValue"]).as_u64(),
        Some(u64::from(shared::config::MAX_BCRYPT_COST))
    );
}

/// A `Number` parameter's `MinValue` and `Default`, the default checked to
/// lie between its `MinValue` and its `MaxValue`.
fn number_range(t: &Value, parameter: &str) -> (u64, u64) {
    let p = at(t, &["Parameters", parameter]);
    assert_eq!(at(p, &["Type"]).as_str(), Some("Number"), "{parameter}");
    let bound = |key: &str| {
        at(p, &[key])
            .as_u64()
            .unwrap_or_else(|| panic!("{parameter}: a numeric {key}"))
    };
    let (min, default, max) = (bound("MinValue"), bound("Default"), bound("MaxValue"));
    assert!(
        min <= default && default <= max,
        "{parameter}: Default {default} outside MinValue {min} to MaxValue {max}"
    );
    (min, default)
}

/// `var` is `!Ref parameter` on each of `readers`, and on no other function.
fn assert_only_readers_take_it_from(t: &Value, var: &str, parameter: &str, readers: &[Function]) {
    for f in Function::ALL {
        let value = environment(t, f).get(var).cloned();
        if readers.contains(&f) {
            assert_eq!(
                value.as_ref().and_then(ref_target),
                Some(parameter),
                "{}: {var} is !Ref {parameter}",
                f.name()
            );
        } else {
            assert!(value.is_none(), "{}: reads no {var}", f.name());
        }
    }
}

#[test]
fn only_the_delete_function_reads_the_retention_and_from_its_parameter() {
    let t = template();

    assert_only_readers_take_it_from(
        &t,
        DELETED_RETENTION_DAYS,
        RETENTION_PARAMETER,
        &[Function::Delete],
    );

    let (min, default) = number_range(&t, RETENTION_PARAMETER);
    assert_eq!(min, 0, "0 keeps the immediate removal");
    assert!(default > 0, "soft delete unless the stack turns it off");
}

#[test]
fn exactly_the_functions_that_write_audit_entries_read_the_audit_retention_from_its_parameter() {
    let t = template();
    assert_only_readers_take_it_from(
        &t,
        AUDIT_RETENTION_DAYS,
        AUDIT_RETENTION_PARAMETER,
        &reading(Section::Audit),
    );

    let (min, default) = number_range(&t, AUDIT_RETENTION_PARAMETER);
    assert_eq!(
        default, DEFAULT_AUDIT_RETENTION_DAYS,
        "the stack keeps entries as long as the code does when unset"
    );
    assert_eq!(
        min, 1,
        "an entry is kept at least a day (the code refuses 0)"
    );
}

#[test]
fn the_audit_route_is_a_bearer_route_with_the_authorizer_named_on_it() {
    let t = template();
    let audit = Function::Audit
        .route()
        .expect("the audit function serves a route");
    assert!(
        audit.auth == Auth::Bearer,
        "an organization's trail is for its admin's token"
    );

    let authorizers = mapping(
        at(
            &t,
            &["Resources", HTTP_API, "Properties", "Auth", "Authorizers"],
        ),
        "HttpApi Auth.Authorizers",
    );
    let names: Vec<&str> = authorizers
        .keys()
        .map(|k| string(k, "an authorizer's name"))
        .collect();
    assert_eq!(names.len(), 1, "one authorizer: {names:?}");

    let declared = declared_route(&t, Function::Audit);
    // Named on the route, as on update and delete, rather than left to the
    // API's DefaultAuthorizer.
    assert_eq!(
        at(&declared.auth, &["Authorizer"]).as_str(),
        Some(names[0]),
        "{} {}: Auth.Authorizer",
        audit.method,
        audit.path
    );
}

#[test]
fn the_audit_function_may_only_read_the_database_secret_and_the_signing_key() {
    let t = template();
    let env = environment(&t, Function::Audit);
    let database = database_secret(&env);
    assert_eq!(database, "MongoUriSecretArn");
    let key = ref_target(&env[JWT_SECRET_ARN]).expect("JWT_SECRET_ARN is !Ref the signing key");
    assert_eq!(key, "JwtSigningKey");
    // It reads entries: it publishes nothing, deletes nothing, writes no entry.
    for var in [EVENT_BUS_NAME, DELETED_RETENTION_DAYS, AUDIT_RETENTION_DAYS] {
        assert!(!env.contains_key(var), "AuditFunction: {var}");
    }

    assert_granted_only(
        &t,
        Function::Audit,
        &[
            (READ_SECRET, database.to_owned()),
            (READ_SECRET, key.to_owned()),
        ],
        "the MongoDB URI secret and the signing key",
    );

    // The grant alone is not enough: the key's resource policy must exempt
    // the role too, or the function could not verify a single token.
    let exempt = signing_key_exempt(&t);
    assert!(
        exempt.contains(&role_arn(Function::Audit)),
        "the signing key's policy lets {} read it: {exempt:?}",
        role_arn(Function::Audit)
    );
}

#[test]
fn the_listing_is_signed_by_iam_and_its_function_may_only_read_the_database_secret() {
    let t = template();
    let list = Function::List
        .route()
        .expect("the list function serves a route");
    assert_eq!(list.auth, Auth::Iam, "operators, not an admin's token");

    let declared = declared_route(&t, Function::List);
    assert_eq!(
        at(&declared.auth, &["Authorizer"]).as_str(),
        Some("AWS_IAM"),
        "named on the route, never left to a default"
    );

    let env = environment(&t, Function::List);
    let database = database_secret(&env);
    // No signing key: it verifies no token; no bus: it changes nothing.
    for var in [
        JWT_SECRET_ARN,
        JWT_SECRET,
        EVENT_BUS_NAME,
        DELETED_RETENTION_DAYS,
    ] {
        assert!(!env.contains_key(var), "ListFunction: {var}");
    }
    assert_granted_only(
        &t,
        Function::List,
        &[(READ_SECRET, database.to_owned())],
        "the MongoDB URI secret",
    );
}

const LOG_GROUP: &str = "AWS::Logs::LogGroup";
const LOG_RETENTION_PARAMETER: &str = "LogRetentionDays";
/// The values CloudWatch Logs accepts for `RetentionInDays`.
const CLOUDWATCH_RETENTION_DAYS: [u64; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];
/// Lambda's application log levels, which `LoggingConfig.ApplicationLogLevel`
/// takes and Lambda passes on as `AWS_LAMBDA_LOG_LEVEL`.
const LAMBDA_LOG_LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// A numeric parameter's `Default`.
fn number_default(t: &Value, parameter: &str) -> u64 {
    at(t, &["Parameters", parameter, "Default"])
        .as_u64()
        .unwrap_or_else(|| panic!("parameter {parameter} has a numeric Default"))
}

/// Whether `value` names resource `id` (`!Ref`, `!GetAtt`, or `${id}` in a
/// `!Sub`) anywhere inside it.
fn refers_to(value: &Value, id: &str) -> bool {
    if let Some(target) = ref_target(value) {
        if target == id {
            return true;
        }
    }
    if let Some(att) = get_att(value) {
        if att.split('.').next() == Some(id) {
            return true;
        }
    }
    match value {
        Value::String(s) => s.contains(&format!("${{{id}}}")) || s.contains(&format!("${{{id}.")),
        Value::Sequence(s) => s.iter().any(|v| refers_to(v, id)),
        Value::Mapping(m) => m.values().any(|v| refers_to(v, id)),
        Value::Tagged(t) => refers_to(&t.value, id),
        _ => false,
    }
}

#[test]
fn each_function_logs_to_its_own_group_kept_log_retention_days() {
    let t = template();
    assert_eq!(
        at(&t, &["Globals", "Function", "LoggingConfig", "LogFormat"]).as_str(),
        Some("JSON")
    );

    let mut groups = BTreeSet::new();
    for f in Function::ALL {
        let id = logical_id(f);
        let group = ref_target(at(
            function_resource(&t, f),
            &["Properties", "LoggingConfig", "LogGroup"],
        ))
        .unwrap_or_else(|| panic!("{id}: LoggingConfig.LogGroup is !Ref a log group"))
        .to_owned();
        let resource = at(&t, &["Resources", &group]);
        assert_eq!(
            at(resource, &["Type"]).as_str(),
            Some(LOG_GROUP),
            "{id}: {group}"
        );
        assert_eq!(
            ref_target(at(resource, &["Properties", "RetentionInDays"])),
            Some(LOG_RETENTION_PARAMETER),
            "{group}: RetentionInDays"
        );
        // The function refers to its group: the group must not refer back.
        assert!(
            !refers_to(resource, &id),
            "{group} names {id}, which names {group}: a circular reference"
        );
        assert!(groups.insert(group.clone()), "{group} serves two functions");
    }
}

#[test]
fn the_access_log_is_kept_log_retention_days_and_the_retention_is_one_cloudwatch_accepts() {
    let t = template();
    let destination = get_att(at(
        &t,
        &[
            "Resources",
            HTTP_API,
            "Properties",
            "AccessLogSettings",
            "DestinationArn",
        ],
    ))
    .expect("the access log's DestinationArn is !GetAtt a log group's Arn");
    let group = destination.strip_suffix(".Arn").expect("a log group's Arn");
    assert_eq!(
        at(&t, &["Resources", group, "Type"]).as_str(),
        Some(LOG_GROUP)
    );
    assert_eq!(
        ref_target(at(
            &t,
            &["Resources", group, "Properties", "RetentionInDays"]
        )),
        Some(LOG_RETENTION_PARAMETER)
    );

    let parameter = at(&t, &["Parameters", LOG_RETENTION_PARAMETER]);
    assert_eq!(at(parameter, &["Type"]).as_str(), Some("Number"));
    let allowed: Vec<u64> = one_or_many(at(parameter, &["AllowedValues"]))
        .iter()
        .map(|v| v.as_u64().expect("a number of days"))
        .collect();
    assert_eq!(allowed, CLOUDWATCH_RETENTION_DAYS);
    assert_eq!(number_default(&t, LOG_RETENTION_PARAMETER), 30);
}

#[test]
fn the_log_level_is_lambdas_application_log_level_and_rust_log_is_left_to_local_runs() {
    let t = template();
    let level = ref_target(at(
        &t,
        &[
            "Globals",
            "Function",
            "LoggingConfig",
            "ApplicationLogLevel",
        ],
    ))
    .expect("ApplicationLogLevel is !Ref a parameter");
    let parameter = at(&t, &["Parameters", level]);
    let allowed: Vec<String> = one_or_many(at(parameter, &["AllowedValues"]))
        .iter()
        .map(|v| string(v, "a level").to_owned())
        .collect();
    assert_eq!(allowed, LAMBDA_LOG_LEVELS);
    assert_eq!(at(parameter, &["Default"]).as_str(), Some("INFO"));

    for f in Function::ALL {
        assert!(
            !environment(&t, f).contains_key("RUST_LOG"),
            "{}: Lambda sets AWS_LAMBDA_LOG_LEVEL from {level}; RUST_LOG is for local runs",
            f.name()
        );
        assert!(
            at(
                function_resource(&t, f),
                &["Properties", "LoggingConfig", "ApplicationLogLevel"]
            )
            .is_null(),
            "{}: the level is the stack's, from Globals",
            f.name()
        );
    }
}

/// Connections one execution environment holds to the primary: the pool
/// `Store::connect` builds (`maxPoolSize` 1 unless the URI says otherwise)
/// and the driver's one monitoring connection to each server, which polls
/// rather than streams inside Lambda (a streaming monitor would add a
/// second, for round-trip times).
const POOL_SIZE: u64 = 1;
const MONITORING_CONNECTIONS: u64 = 1;
/// Connections per node of MongoDB Atlas's smallest paid tier, M10, less
/// the 10 Atlas keeps for itself (the README's connection budget says where
/// the figures come from).
const ATLAS_M10_CONNECTIONS: u64 = 1_500 - 10;

/// The template parameter for a function's reserved concurrency:
/// `LoginFunction` → `LoginReservedConcurrency`.
fn concurrency_parameter(f: Function) -> String {
    let id = logical_id(f);
    format!(
        "{}ReservedConcurrency",
        id.strip_suffix("Function")
            .expect("a function's logical id")
    )
}

#[test]
fn each_function_reserves_its_concurrency_from_its_own_parameter() {
    let t = template();

    for f in Function::ALL {
        let id = logical_id(f);
        let parameter = concurrency_parameter(f);
        assert_eq!(
            ref_target(at(
                function_resource(&t, f),
                &["Properties", "ReservedConcurrentExecutions"]
            )),
            Some(parameter.as_str()),
            "{id}: ReservedConcurrentExecutions"
        );
        let p = at(&t, &["Parameters", &parameter]);
        assert_eq!(at(p, &["Type"]).as_str(), Some("Number"), "{parameter}");
        assert_eq!(at(p, &["MinValue"]).as_u64(), Some(1), "{parameter}");
        assert!(number_default(&t, &parameter) >= 1, "{parameter}");
    }
    // The queue's batches must leave the create route executions of its own.
    let (_, mapping) = queue_mapping(&t);
    let batches = at(mapping, &["ScalingConfig", "MaximumConcurrency"])
        .as_u64()
        .expect("MaximumConcurrency");
    let create = number_default(&t, &concurrency_parameter(Function::Create));
    assert!(
        create > batches,
        "CreateFunction's {create} executions, of which the queue takes up to {batches}"
    );
}

#[test]
fn the_default_concurrency_keeps_mongodb_connections_well_under_the_smallest_paid_atlas_tier() {
    let t = template();
    let environments: u64 = Function::ALL
        .into_iter()
        .map(|f| number_default(&t, &concurrency_parameter(f)))
        .sum();
    let connections = environments * (POOL_SIZE + MONITORING_CONNECTIONS);

    // Twice over: after a deploy, the previous version's execution
    // environments keep their connections until Lambda retires them.
    assert!(
        2 * connections < ATLAS_M10_CONNECTIONS,
        "{environments} environments x {} connections = {connections}; twice that must stay \
         under M10's {ATLAS_M10_CONNECTIONS}",
        POOL_SIZE + MONITORING_CONNECTIONS
    );
}

#[test]
fn the_readme_connection_budget_lists_each_functions_default_and_their_sum() {
    let t = template();
    let path = workspace_root().join("README.md");
    let readme = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Connection budget"))
        .expect("README.md has a \"Connection budget\" section");
    let rows: BTreeMap<String, Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells.len() >= 3)
        .map(|cells| (cells[0].clone(), cells))
        .collect();

    let mut sum = 0;
    for f in Function::ALL {
        let id = logical_id(f);
        let parameter = concurrency_parameter(f);
        let default = number_default(&t, &parameter);
        let row = rows
            .get(&id)
            .unwrap_or_else(|| panic!("the budget's table has no row for {id}"));
        assert_eq!(row[1], parameter, "{id}");
        assert_eq!(row[2], default.to_string(), "{id}: {parameter}'s default");
        sum += default;
    }
    let total = rows.get("total").expect("the table's total row");
    assert_eq!(total[2], sum.to_string(), "the total");
}

#[test]
fn the_access_log_joins_a_function_log_by_both_request_ids_and_logs_no_header() {
    let t = template();
    let format = string(
        at(
            &t,
            &[
                "Resources",
                HTTP_API,
                "Properties",
                "AccessLogSettings",
                "Format",
            ],
        ),
        "the access log Format",
    );
    let fields: BTreeMap<String, String> = serde_json::from_str(format)
        .unwrap_or_else(|e| panic!("the access log Format is a JSON object of strings: {e}"));

    let values: BTreeSet<&str> = fields.values().map(String::as_str).collect();
    for variable in [
        "$context.requestId",
        "$context.integration.requestId",
        "$context.integration.status",
    ] {
        assert!(values.contains(variable), "the access log has {variable}");
    }
    for (field, value) in &fields {
        let lowered = value.to_ascii_lowercase();
        assert!(
            !lowered.contains("header") && !lowered.contains("authorization"),
            "{field}: {value} would log a header"
        );
    }
}

const ALARM: &str = "AWS::CloudWatch::Alarm";
/// The topic the stack creates when `ALARM_TOPIC_PARAMETER` is empty.
const ALARM_TOPIC: &str = "AlarmTopic";
const ALARM_TOPIC_PARAMETER: &str = "AlarmTopicArn";
/// Where the functions' custom metrics go (CloudWatch Embedded Metric
/// Format), each with the one dimension `Service` = the stack's name: the
/// code's own names, so that the template and the code cannot drift apart.
const METRICS_NAMESPACE: &str = shared::telemetry::metric::NAMESPACE;
const SERVICE_DIMENSION: &str = shared::telemetry::metric::SERVICE_DIMENSION;
/// The custom metrics the functions emit: what the dashboard shows and the
/// outbox alarm reads.
fn custom_metrics() -> impl Iterator<Item = &'static str> {
    Metric::ALL.into_iter().map(|m| m.name())
}
const OUTBOX_AGE_PARAMETER: &str = "OutboxAgeAlarmSeconds";

/// The `Properties` of alarm `id`, which must be an alarm.
fn alarm<'a>(t: &'a Value, id: &str) -> &'a Value {
    let r = at(t, &["Resources", id]);
    assert_eq!(
        at(r, &["Type"]).as_str(),
        Some(ALARM),
        "{id} must be an {ALARM}"
    );
    at(r, &["Properties"])
}

/// The `Properties` of alarm `id`, which must be an alarm on the one
/// `metric` (namespace, name).
fn metric_alarm<'a>(t: &'a Value, id: &str, metric: (&str, &str)) -> &'a Value {
    let props = alarm(t, id);
    assert_eq!(watched_metric(props, id), metric, "{id}");
    props
}

/// A metric's `Dimensions` as name → value.
fn dimensions(value: &Value) -> BTreeMap<String, Value> {
    one_or_many(value)
        .iter()
        .map(|d| {
            (
                string(at(d, &["Name"]), "a dimension's Name").to_owned(),
                at(d, &["Value"]).clone(),
            )
        })
        .collect()
}

/// The `!Ref` target of each dimension, by name.
fn dimension_refs(value: &Value) -> BTreeMap<String, String> {
    dimensions(value)
        .into_iter()
        .map(|(name, v)| {
            let target = ref_target(&v)
                .unwrap_or_else(|| panic!("dimension {name} is not a !Ref: {v:?}"))
                .to_owned();
            (name, target)
        })
        .collect()
}

/// Asserts that the alarm fires when its statistic goes above its
/// threshold, whatever that is.
fn assert_fires_above_its_threshold(props: &Value, what: &str) {
    assert_eq!(
        at(props, &["ComparisonOperator"]).as_str(),
        Some("GreaterThanThreshold"),
        "{what}"
    );
}

/// Asserts that the alarm fires when its statistic goes above `threshold`.
fn assert_fires_above(props: &Value, threshold: f64, what: &str) {
    assert_fires_above_its_threshold(props, what);
    assert_eq!(
        at(props, &["Threshold"]).as_f64(),
        Some(threshold),
        "{what}: Threshold"
    );
}

/// The metric (namespace, name) an alarm on one metric watches.
fn watched_metric<'a>(props: &'a Value, what: &str) -> (&'a str, &'a str) {
    (
        string(at(props, &["Namespace"]), &format!("{what} Namespace")),
        string(at(props, &["MetricName"]), &format!("{what} MetricName")),
    )
}

/// The seconds between two runs of `rate(N unit)`.
fn rate_seconds(rate: &str) -> u64 {
    let inner = rate
        .strip_prefix("rate(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{rate} is not rate(...)"));
    let (n, unit) = inner.split_once(' ').expect("rate(N unit)");
    let n: u64 = n.parse().expect("a whole number");
    let unit = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        other => panic!("unit {other}"),
    };
    n * unit
}

#[test]
fn the_dead_letter_queue_alarm_fires_on_any_visible_message() {
    let t = template();
    let props = metric_alarm(
        &t,
        "ProvisioningDeadLetterAlarm",
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    );

    let dims = dimensions(at(props, &["Dimensions"]));
    assert_eq!(dims.len(), 1, "{dims:?}");
    assert_eq!(
        get_att(&dims["QueueName"]),
        Some(format!("{DEAD_LETTER_QUEUE}.QueueName")),
        "QueueName is the dead-letter queue's"
    );
    assert_fires_above(props, 0.0, "ProvisioningDeadLetterAlarm");
}

#[test]
fn every_function_has_an_errors_and_a_throttles_alarm_on_its_own_name() {
    let t = template();

    for f in Function::ALL {
        let id = logical_id(f);
        for metric in ["Errors", "Throttles"] {
            let what = format!("{id}{metric}Alarm");
            let props = metric_alarm(&t, &what, ("AWS/Lambda", metric));
            assert_eq!(
                dimension_refs(at(props, &["Dimensions"])),
                BTreeMap::from([("FunctionName".to_owned(), id.clone())]),
                "{what}: FunctionName is !Ref {id}"
            );
            assert_eq!(at(props, &["Statistic"]).as_str(), Some("Sum"), "{what}");
            let period = at(props, &["Period"]).as_u64().unwrap_or_default();
            assert!(
                (60..=900).contains(&period),
                "{what}: a period of 1 to 15 minutes, not {period} s"
            );
            assert_fires_above(props, 0.0, &what);
        }
    }
}

#[test]
fn no_alarm_names_a_function_that_does_not_exist() {
    let t = template();
    let functions: BTreeSet<&str> = resources_of_type(&t, SERVERLESS_FUNCTION)
        .into_iter()
        .map(|(id, _)| id)
        .collect();

    for (id, r) in resources_of_type(&t, ALARM) {
        let props = at(r, &["Properties"]);
        let mut named = Vec::new();
        named.extend(dimensions(at(props, &["Dimensions"])).remove("FunctionName"));
        for m in one_or_many(at(props, &["Metrics"])) {
            named.extend(
                dimensions(at(&m, &["MetricStat", "Metric", "Dimensions"])).remove("FunctionName"),
            );
        }
        for v in named {
            let target = ref_target(&v).unwrap_or_else(|| panic!("{id}: FunctionName {v:?}"));
            assert!(
                functions.contains(target),
                "{id} watches {target}, which is no function of this template"
            );
        }
        for suffix in ["ErrorsAlarm", "ThrottlesAlarm"] {
            if let Some(function) = id.strip_suffix(suffix) {
                assert!(
                    functions.contains(function),
                    "{id} is named for {function}, which is no function of this template"
                );
            }
        }
    }
}

#[test]
fn the_http_api_alarm_counts_the_5xx_of_its_default_stage() {
    let t = template();
    let props = metric_alarm(&t, "HttpApi5xxAlarm", ("AWS/ApiGateway", "5xx"));

    let dims = dimensions(at(props, &["Dimensions"]));
    assert_eq!(dims.len(), 2, "{dims:?}");
    assert_eq!(ref_target(&dims["ApiId"]), Some(HTTP_API));
    assert_eq!(dims["Stage"].as_str(), Some("$default"));
    assert_eq!(at(props, &["Statistic"]).as_str(), Some("Sum"));
    assert_fires_above_its_threshold(props, "HttpApi5xxAlarm");
    let threshold = match ref_target(at(props, &["Threshold"])) {
        Some(parameter) => number_default(&t, parameter),
        None => at(props, &["Threshold"])
            .as_u64()
            .expect("a whole-number Threshold"),
    };
    assert!(
        (1..=100).contains(&threshold),
        "a few 5xx in 5 minutes, not {threshold}"
    );
}

#[test]
fn the_authorizer_error_rate_alarm_divides_its_errors_by_its_invocations() {
    let t = template();
    let props = alarm(&t, "AuthorizerErrorRateAlarm");
    let metrics = one_or_many(at(props, &["Metrics"]));

    for (id, name) in [("errors", "Errors"), ("invocations", "Invocations")] {
        let s = metrics
            .iter()
            .find(|m| at(m, &["Id"]).as_str() == Some(id))
            .map(|m| at(m, &["MetricStat"]))
            .unwrap_or_else(|| panic!("a metric with Id {id}: {metrics:?}"));
        assert_eq!(watched_metric(at(s, &["Metric"]), id), ("AWS/Lambda", name));
        assert_eq!(
            dimension_refs(at(s, &["Metric", "Dimensions"])),
            BTreeMap::from([("FunctionName".to_owned(), AUTHORIZER_FUNCTION.to_owned())]),
            "{id}"
        );
        assert_eq!(at(s, &["Stat"]).as_str(), Some("Sum"), "{id}");
    }
    let returned: Vec<&Value> = metrics
        .iter()
        .filter(|m| at(m, &["ReturnData"]).as_bool() != Some(false))
        .collect();
    assert_eq!(
        returned.len(),
        1,
        "one expression is the alarm's: {metrics:?}"
    );
    let expression = string(at(returned[0], &["Expression"]), "the rate's Expression");
    assert!(
        expression.contains("errors / invocations"),
        "{expression}: Errors over Invocations"
    );
    assert!(
        expression.contains("invocations > 0"),
        "{expression}: a period without invocations is no failure"
    );
    assert!(
        expression.contains("100 *"),
        "{expression}: a percentage, as the threshold"
    );
    assert_fires_above(props, 5.0, "AuthorizerErrorRateAlarm");
    assert_eq!(
        at(props, &["TreatMissingData"]).as_str(),
        Some("notBreaching")
    );
}

#[test]
fn the_outbox_alarm_reads_the_oldest_pending_age_under_the_service_dimension_alone() {
    let t = template();
    let props = metric_alarm(
        &t,
        "OutboxBacklogAlarm",
        (METRICS_NAMESPACE, Metric::OutboxOldestPendingAge.name()),
    );

    assert_eq!(
        dimension_refs(at(props, &["Dimensions"])),
        BTreeMap::from([(SERVICE_DIMENSION.to_owned(), "AWS::StackName".to_owned())]),
        "exactly the dimension the functions emit"
    );
    assert_eq!(at(props, &["Statistic"]).as_str(), Some("Maximum"));
    assert_fires_above_its_threshold(props, "OutboxBacklogAlarm");
    assert_eq!(
        ref_target(at(props, &["Threshold"])),
        Some(OUTBOX_AGE_PARAMETER)
    );
    // Every flush reports it, the scheduled one included: silence means
    // nothing drains the outbox.
    assert_eq!(at(props, &["TreatMissingData"]).as_str(), Some("breaching"));
}

#[test]
fn the_outbox_alarm_waits_out_a_flush_interval_and_the_publishers_longest_back_off() {
    let t = template();
    let classic = events_of_type(&t, Function::Create, "Schedule");
    assert_eq!(classic.len(), 1, "the outbox flush schedule");
    let interval = rate_seconds(string(
        at(classic[0].1, &["Schedule"]),
        "the flush's Schedule",
    ));
    let longest_back_off = shared::events::backoff(i32::MAX).as_secs();

    let parameter = at(&t, &["Parameters", OUTBOX_AGE_PARAMETER]);
    let default = number_default(&t, OUTBOX_AGE_PARAMETER);
    assert!(
        default >= longest_back_off + interval,
        "{OUTBOX_AGE_PARAMETER} {default} s: an entry at its {longest_back_off} s back-off \
         waits up to one more flush ({interval} s) before it is retried"
    );
    let min = at(parameter, &["MinValue"])
        .as_u64()
        .expect("a numeric MinValue");
    assert!(
        min >= interval,
        "{OUTBOX_AGE_PARAMETER} MinValue {min} s: below one flush interval ({interval} s), \
         every failed publish would page"
    );
}

#[test]
fn every_alarm_notifies_the_given_topic_or_the_one_the_stack_creates() {
    let t = template();
    let alarms = resources_of_type(&t, ALARM);
    assert!(
        alarms.len() >= 2 * Function::ALL.len() + 4,
        "{} alarms",
        alarms.len()
    );

    let mut conditions = BTreeSet::new();
    for (id, r) in &alarms {
        for key in ["AlarmActions", "OKActions"] {
            let actions = one_or_many(at(r, &["Properties", key]));
            assert_eq!(actions.len(), 1, "{id}: {key} is one topic");
            let Some((name, Value::Sequence(branches))) = intrinsic(&actions[0]) else {
                panic!("{id}: {key} is an !If on whether the stack creates the topic");
            };
            assert_eq!(name, "If", "{id}: {key}");
            conditions.insert(string(&branches[0], "a condition name").to_owned());
            assert_eq!(ref_target(&branches[1]), Some(ALARM_TOPIC), "{id}: {key}");
            assert_eq!(
                ref_target(&branches[2]),
                Some(ALARM_TOPIC_PARAMETER),
                "{id}: {key}"
            );
        }
    }
    assert_eq!(conditions.len(), 1, "one condition: {conditions:?}");
    let create = conditions.pop_first().unwrap();
    let Some((equals, Value::Sequence(operands))) = intrinsic(at(&t, &["Conditions", &create]))
    else {
        panic!("{create} is !Equals");
    };
    assert_eq!(equals, "Equals");
    assert_eq!(ref_target(&operands[0]), Some(ALARM_TOPIC_PARAMETER));
    assert_eq!(operands[1].as_str(), Some(""));
    assert_eq!(
        at(&t, &["Parameters", ALARM_TOPIC_PARAMETER, "Default"]).as_str(),
        Some(""),
        "the stack creates its topic unless given one"
    );
    assert_eq!(
        at(&t, &["Resources", ALARM_TOPIC, "Type"]).as_str(),
        Some("AWS::SNS::Topic")
    );
    assert_eq!(
        at(&t, &["Resources", ALARM_TOPIC, "Condition"]).as_str(),
        Some(create.as_str()),
        "{ALARM_TOPIC} exists exactly when the alarms notify it"
    );
}

#[test]
fn an_email_subscribes_to_the_created_topic_only_when_one_is_given() {
    let t = template();
    let subscriptions = resources_of_type(&t, "AWS::SNS::Subscription");
    assert_eq!(subscriptions.len(), 1, "one subscription");
    let (id, subscription) = subscriptions[0];
    let props = at(subscription, &["Properties"]);
    assert_eq!(ref_target(at(props, &["TopicArn"])), Some(ALARM_TOPIC));
    assert_eq!(at(props, &["Protocol"]).as_str(), Some("email"));
    let email = ref_target(at(props, &["Endpoint"])).expect("Endpoint: !Ref a parameter");
    assert_eq!(
        at(&t, &["Parameters", email, "Default"]).as_str(),
        Some(""),
        "no address unless one is given"
    );

    let condition = string(at(subscription, &["Condition"]), &format!("{id} Condition"));
    let Some((and, Value::Sequence(parts))) = intrinsic(at(&t, &["Conditions", condition])) else {
        panic!("{condition} is !And");
    };
    assert_eq!(and, "And");
    assert_eq!(parts.len(), 2, "{parts:?}");
    // The topic's own condition: no subscription to a topic not created.
    let topic_condition = at(&t, &["Resources", ALARM_TOPIC, "Condition"]);
    assert_eq!(
        intrinsic(&parts[0]).map(|(name, arg)| (name, arg.clone())),
        Some(("Condition".to_owned(), topic_condition.clone()))
    );
    let Some((not, Value::Sequence(negated))) = intrinsic(&parts[1]) else {
        panic!("{condition}: !Not [!Equals [!Ref {email}, \"\"]]");
    };
    assert_eq!(not, "Not");
    let Some((equals, Value::Sequence(operands))) = intrinsic(&negated[0]) else {
        panic!("{condition}: !Not [!Equals ...]");
    };
    assert_eq!(equals, "Equals");
    assert_eq!(ref_target(&operands[0]), Some(email));
    assert_eq!(operands[1].as_str(), Some(""));
}

#[test]
fn every_alarm_treats_missing_data_as_no_failure_except_the_scheduled_outbox_report() {
    let t = template();

    for (id, r) in resources_of_type(&t, ALARM) {
        // Errors, throttles, 5xx and the error rate are reported only when
        // something is invoked; an empty dead-letter queue goes quiet. The
        // outbox age is reported by every scheduled flush.
        let expected = if id == "OutboxBacklogAlarm" {
            "breaching"
        } else {
            "notBreaching"
        };
        assert_eq!(
            at(r, &["Properties", "TreatMissingData"]).as_str(),
            Some(expected),
            "{id}: TreatMissingData"
        );
    }
}

#[test]
fn the_dashboard_shows_every_alarm_each_routes_duration_and_every_custom_metric() {
    let t = template();
    let dashboards = resources_of_type(&t, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let (id, dashboard) = dashboards[0];
    let Some((sub, Value::String(body))) =
        intrinsic(at(dashboard, &["Properties", "DashboardBody"]))
    else {
        panic!("{id}: DashboardBody is !Sub of a JSON string");
    };
    assert_eq!(sub, "Sub");

    // Each ${X} must be a parameter, a resource (or its attribute) or a
    // pseudo parameter; as plain text in its place the body must be JSON.
    let mut text = String::new();
    let mut rest = body.as_str();
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').expect("a closed ${") + start;
        let name = &rest[start + 2..end];
        let logical = name.split('.').next().unwrap_or_default();
        let is_parameter = !at(&t, &["Parameters", name]).is_null();
        assert!(
            is_parameter || name.starts_with("AWS::") || !at(&t, &["Resources", logical]).is_null(),
            "{id}: ${{{name}}} names nothing in the template"
        );
        text.push_str(&rest[..start]);
        if is_parameter && at(&t, &["Parameters", name, "Type"]).as_str() == Some("Number") {
            text.push_str(&number_default(&t, name).to_string());
        } else {
            text.push_str(name);
        }
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{id}: the body is not JSON once substituted: {e}"));

    let widgets = json["widgets"].as_array().expect("widgets");
    let listed: BTreeSet<&str> = widgets
        .iter()
        .filter(|w| w["type"] == "alarm")
        .filter_map(|w| w["properties"]["alarms"].as_array())
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
    for (alarm, _) in resources_of_type(&t, ALARM) {
        assert!(
            listed.contains(format!("{alarm}.Arn").as_str()),
            "{id} lists {alarm}"
        );
    }

    // Each metric line as (namespace, name, dimensions, stat).
    let mut lines = Vec::new();
    for w in widgets.iter().filter(|w| w["type"] == "metric") {
        for line in w["properties"]["metrics"].as_array().expect("metrics") {
            let items = line.as_array().expect("a metric line");
            let strings: Vec<&str> = items.iter().filter_map(|v| v.as_str()).collect();
            if strings.len() < 2 {
                continue;
            }
            let stat = items
                .last()
                .and_then(|o| o["stat"].as_str())
                .unwrap_or_default()
                .to_owned();
            let dims: Vec<(String, String)> = strings[2..]
                .chunks(2)
                .map(|d| {
                    (
                        d[0].to_owned(),
                        d.get(1).copied().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            lines.push((strings[0].to_owned(), strings[1].to_owned(), dims, stat));
        }
    }
    let shows = |namespace: &str, name: &str, dims: &[(&str, &str)], stat: &str| {
        lines.iter().any(|(ns, n, d, s)| {
            ns == namespace
                && n == name
                && s == stat
                && d.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .eq(dims.iter().copied())
        })
    };
    for f in Function::ALL {
        let function = logical_id(f);
        for stat in ["p50", "p99"] {
            assert!(
                shows(
                    "AWS/Lambda",
                    "Duration",
                    &[("FunctionName", function.as_str())],
                    stat
                ),
                "{id}: {function}'s Duration {stat}"
            );
        }
    }
    for metric in custom_metrics() {
        assert!(
            lines.iter().any(|(ns, n, d, _)| ns == METRICS_NAMESPACE
                && n == metric
                && *d == [(SERVICE_DIMENSION.to_owned(), "AWS::StackName".to_owned())]),
            "{id}: {metric} in {METRICS_NAMESPACE} by {SERVICE_DIMENSION} alone"
        );
    }
}

/// Every `!GetAtt X.Y` anywhere in `value`, as `X.Y`.
fn get_atts(value: &Value, out: &mut Vec<String>) {
    if let Some(att) = get_att(value) {
        out.push(att);
    }
    match value {
        Value::Sequence(s) => s.iter().for_each(|v| get_atts(v, out)),
        Value::Mapping(m) => m.values().for_each(|v| get_atts(v, out)),
        Value::Tagged(t) => get_atts(&t.value, out),
        _ => {}
    }
}

#[test]
fn every_event_source_invokes_the_live_alias_and_a_canary_rolls_back_on_the_functions_errors() {
    let t = template();
    let globals = at(&t, &["Globals", "Function"]);
    assert_eq!(
        at(globals, &["AutoPublishAlias"]).as_str(),
        Some(ALIAS),
        "Globals: AutoPublishAlias"
    );
    assert!(
        at(globals, &["DeploymentPreference", "Type"])
            .as_str()
            .is_some(),
        "Globals: a DeploymentPreference Type"
    );

    for f in Function::ALL {
        let id = logical_id(f);
        let props = at(function_resource(&t, f), &["Properties"]);
        assert!(
            at(props, &["AutoPublishAlias"])
                .as_str()
                .is_none_or(|a| a == ALIAS),
            "{id}: every function publishes the same alias"
        );
        assert!(
            at(props, &["DeploymentPreference", "Enabled"]).as_bool() != Some(false),
            "{id}: deployed through the alias"
        );
        let rollback = one_or_many(at(props, &["DeploymentPreference", "Alarms"]));
        let alarms: Vec<Option<&str>> = rollback.iter().map(ref_target).collect();
        assert!(
            alarms.contains(&Some(format!("{id}ErrorsAlarm").as_str())),
            "{id}: its Errors alarm rolls a deployment back: {alarms:?}"
        );
    }

    // SAM points the routes, the rule and the schedules at the alias; what
    // is written out here must too. A function's own ARN would invoke
    // $LATEST, which no deployment shifts.
    let (_, mapping) = queue_mapping(&t);
    assert_eq!(
        alias_of(at(mapping, &["FunctionName"])),
        Some(logical_id(Function::Create).as_str())
    );
    for (name, authorizer) in http_api_authorizers(&t) {
        assert_eq!(
            alias_of(at(authorizer, &["FunctionArn"])),
            Some(AUTHORIZER_FUNCTION),
            "{name}"
        );
    }
    // Named by its ARN, the alias must exist before the API and the invoke
    // permission SAM derives from the authorizer.
    let alias_id = format!("{AUTHORIZER_FUNCTION}Alias{ALIAS}");
    assert!(
        one_or_many(at(&t, &["Resources", HTTP_API, "DependsOn"]))
            .contains(&Value::from(alias_id.as_str())),
        "{HTTP_API} DependsOn {alias_id}"
    );

    let mut atts = Vec::new();
    get_atts(&t, &mut atts);
    let mut subs = Vec::new();
    sub_strings(&t, &mut subs);
    for f in Function::ALL {
        let arn = format!("{}.Arn", logical_id(f));
        assert!(!atts.contains(&arn), "!GetAtt {arn} bypasses the alias");
        let in_sub = format!("${{{arn}}}");
        for s in &subs {
            assert!(
                s.match_indices(&in_sub)
                    .all(|(i, _)| s[i + in_sub.len()..].starts_with(&format!(":{ALIAS}"))),
                "{in_sub} without :{ALIAS} bypasses the alias: {s}"
            );
        }
    }
}

/// The template string of every `!Sub` anywhere in `value`.
fn sub_strings(value: &Value, out: &mut Vec<String>) {
    if let Some((name, arg)) = intrinsic(value) {
        if name == "Sub" {
            match arg {
                Value::String(s) => out.push(s.clone()),
                Value::Sequence(parts) => {
                    out.extend(parts.first().and_then(Value::as_str).map(str::to_owned))
                }
                _ => {}
            }
        }
    }
    match value {
        Value::Sequence(s) => s.iter().for_each(|v| sub_strings(v, out)),
        Value::Mapping(m) => m.values().for_each(|v| sub_strings(v, out)),
        Value::Tagged(t) => sub_strings(&t.value, out),
        _ => {}
    }
}

/// The HTTP API's authorizers by name.
fn http_api_authorizers(t: &Value) -> Vec<(&str, &Value)> {
    mapping(
        at(
            t,
            &["Resources", HTTP_API, "Properties", "Auth", "Authorizers"],
        ),
        "HttpApi Auth.Authorizers",
    )
    .iter()
    .map(|(k, v)| (string(k, "an authorizer's name"), v))
    .collect()
}
