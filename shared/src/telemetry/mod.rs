//! Logs and metrics, both on standard output, where Lambda sends them to
//! CloudWatch.
//!
//! Logs are one JSON object per line, in the shape Lambda's JSON log format
//! filters by (`level`, `message`): the event's own fields and, flattened
//! beside them, the fields of every span it happened in, so that each line of
//! an invocation carries the runtime's `requestId` and `xrayTraceId` and the
//! gateway's `gatewayRequestId` however deep the span it was logged in. The
//! level comes from Lambda's `AWS_LAMBDA_LOG_LEVEL` (set from the function's
//! `ApplicationLogLevel`), else from `RUST_LOG` (local runs), else `info`.
//! No timestamps of our own (the platform adds them) and no ANSI colours.
//!
//! Metrics ([`metric`]) are CloudWatch Embedded Metric Format documents,
//! written by `metrics_cloudwatch_embedded` after each invocation.

pub mod metric;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

pub use metric::{add, count, Metric, Metrics};

/// The variable Lambda sets from the function's `ApplicationLogLevel`.
pub const AWS_LAMBDA_LOG_LEVEL: &str = "AWS_LAMBDA_LOG_LEVEL";
/// The filter for local runs, where Lambda sets no level.
pub const RUST_LOG: &str = "RUST_LOG";

/// Installs the global log subscriber; a second call (tests) is a no-op.
pub fn init() {
    let filter = log_filter(
        std::env::var(AWS_LAMBDA_LOG_LEVEL).ok().as_deref(),
        std::env::var(RUST_LOG).ok().as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .try_init();
}

/// Lambda's level when it gives one it knows, else `RUST_LOG`'s directives,
/// else `info`.
fn log_filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> EnvFilter {
    let lambda = lambda_level.and_then(|level| match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Some("trace"),
        "DEBUG" => Some("debug"),
        "INFO" => Some("info"),
        "WARN" => Some("warn"),
        // Nothing here logs above error: FATAL keeps the errors.
        "ERROR" | "FATAL" => Some("error"),
        _ => None,
    });
    if let Some(level) = lambda {
        return EnvFilter::new(level);
    }
    rust_log
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// One JSON object per event: `level`, the fields of the spans it happened
/// in (outermost first, so an inner span's field wins over an outer one's of
/// the same name), the innermost span's name as `span`, then the event's own
/// fields (`message` among them), which win over any span's.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = Map::new();
        line.insert("level".into(), event.metadata().level().as_str().into());
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(map)) = serde_json::from_str(fields.fields.as_str()) {
                        line.extend(map);
                    }
                }
                innermost = Some(span.name());
            }
            if let Some(name) = innermost {
                line.insert("span".into(), name.into());
            }
        }
        event.record(&mut EventFields(&mut line));
        let text = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Records an event's fields as JSON values.
struct EventFields<'a>(&'a mut Map<String, Value>);

impl Visit for EventFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines_of(work: impl FnOnce()) -> Vec<Value> {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("info"))
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, work);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_line_logged_in_a_nested_span_carries_every_enclosing_span_s_ids() {
        let lines = lines_of(|| {
            let invoke = tracing::info_span!(
                "Lambda runtime invoke",
                requestId = "lambda-1",
                xrayTraceId = "Root=1-abc"
            );
            let _i = invoke.enter();
            let request = tracing::info_span!(
                "request",
                gatewayRequestId = "gw-1",
                organization_id = tracing::field::Empty
            );
            let _r = request.enter();
            request.record("organization_id", "org-9");
            let store = tracing::info_span!("update_org", new_name = "acme");
            let _s = store.enter();
            tracing::warn!(attempt = 2, "retrying");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "retrying");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["requestId"], "lambda-1");
        assert_eq!(line["xrayTraceId"], "Root=1-abc");
        assert_eq!(line["gatewayRequestId"], "gw-1");
        assert_eq!(line["organization_id"], "org-9");
        assert_eq!(line["new_name"], "acme");
        assert_eq!(line["span"], "update_org");
    }

    #[test]
    fn a_line_outside_any_span_has_only_its_own_fields() {
        let lines = lines_of(|| tracing::info!(status = 200, "served"));
        assert_eq!(
            lines,
            vec![serde_json::json!({"level": "INFO", "message": "served", "status": 200})]
        );
    }

    #[test]
    fn lambda_s_level_wins_over_rust_log_and_an_unknown_one_is_ignored() {
        let level = |lambda, rust| log_filter(lambda, rust).max_level_hint();
        use tracing::level_filters::LevelFilter;
        assert_eq!(
            level(Some("DEBUG"), Some("error")),
            Some(LevelFilter::DEBUG)
        );
        assert_eq!(level(Some("FATAL"), None), Some(LevelFilter::ERROR));
        assert_eq!(level(Some("warn"), None), Some(LevelFilter::WARN));
        assert_eq!(level(Some("LOUD"), Some("trace")), Some(LevelFilter::TRACE));
        assert_eq!(level(None, None), Some(LevelFilter::INFO));
        assert_eq!(level(None, Some("")), Some(LevelFilter::INFO));
    }
}
