//! The service's metrics, in CloudWatch Embedded Metric Format: namespace
//! [`NAMESPACE`], one dimension [`SERVICE_DIMENSION`] whose value is the
//! stack's name (`SERVICE_NAME`), so that the template's alarms and
//! dashboard name each metric exactly. Recorded through the `metrics`
//! facade anywhere in the crate ([`count`], [`Metric::observe`]) and
//! written by [`Metrics::after_invocation`], once per invocation, as one
//! JSON line beside the logs; CloudWatch turns the line into metrics.

use std::sync::Once;

use metrics::Unit;
use metrics_cloudwatch_embedded::{Builder, Collector};

/// The CloudWatch namespace of every metric here.
pub const NAMESPACE: &str = "OrganizationService";
/// The one dimension every metric carries.
pub const SERVICE_DIMENSION: &str = "Service";
/// The dimension's value where `SERVICE_NAME` is not set (local runs).
pub const LOCAL_SERVICE: &str = "org-service-local";

/// Every metric the service emits. The names are the contract with
/// template.yaml's alarms and dashboard (a test holds them equal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    OrganizationsCreated,
    OrganizationsRenamed,
    OrganizationsDeleted,
    OrganizationsRestored,
    OrganizationsPurged,
    LoginSucceeded,
    LoginFailed,
    LoginThrottled,
    /// A provisioning request that created its organization, or found it
    /// created by an earlier delivery of itself.
    ProvisioningSucceeded,
    /// A provisioning request discarded as one that can never succeed.
    ProvisioningRejected,
    /// A provisioning request that failed and goes back for a retry (and,
    /// after the last, to the dead-letter queue).
    ProvisioningFailed,
    /// Lifecycle events accepted by EventBridge.
    OutboxPublished,
    /// Unpublished lifecycle events, after a scheduled flush.
    OutboxPending,
    /// Seconds since the oldest unpublished lifecycle event was written,
    /// after a scheduled flush (0 when none is pending).
    OutboxOldestPendingAge,
    /// 1 on an execution environment's first invocation.
    ColdStart,
}

impl Metric {
    pub const ALL: [Metric; 15] = [
        Metric::OrganizationsCreated,
        Metric::OrganizationsRenamed,
        Metric::OrganizationsDeleted,
        Metric::OrganizationsRestored,
        Metric::OrganizationsPurged,
        Metric::LoginSucceeded,
        Metric::LoginFailed,
        Metric::LoginThrottled,
        Metric::ProvisioningSucceeded,
        Metric::ProvisioningRejected,
        Metric::ProvisioningFailed,
        Metric::OutboxPublished,
        Metric::OutboxPending,
        Metric::OutboxOldestPendingAge,
        Metric::ColdStart,
    ];

    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::OrganizationsCreated => "OrganizationsCreated",
            Metric::OrganizationsRenamed => "OrganizationsRenamed",
            Metric::OrganizationsDeleted => "OrganizationsDeleted",
            Metric::OrganizationsRestored => "OrganizationsRestored",
            Metric::OrganizationsPurged => "OrganizationsPurged",
            Metric::LoginSucceeded => "LoginSucceeded",
            Metric::LoginFailed => "LoginFailed",
            Metric::LoginThrottled => "LoginThrottled",
            Metric::ProvisioningSucceeded => "ProvisioningSucceeded",
            Metric::ProvisioningRejected => "ProvisioningRejected",
            Metric::ProvisioningFailed => "ProvisioningFailed",
            Metric::OutboxPublished => "OutboxPublished",
            Metric::OutboxPending => "OutboxPending",
            Metric::OutboxOldestPendingAge => "OutboxOldestPendingAge",
            Metric::ColdStart => "ColdStart",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Metric::OutboxOldestPendingAge => Unit::Seconds,
            _ => Unit::Count,
        }
    }

    /// Whether the metric is a reading of a state (written as the values
    /// observed during the invocation) rather than a count of events.
    fn is_reading(self) -> bool {
        matches!(self, Metric::OutboxPending | Metric::OutboxOldestPendingAge)
    }

    /// Records one reading of a state metric. A reading is written once,
    /// with the invocation that took it: a gauge would repeat its last value
    /// on every later invocation of the environment, and an alarm on the
    /// outbox's age would see an hours-old reading as current.
    pub fn observe(self, value: f64) {
        debug_assert!(self.is_reading(), "{self:?} is a count");
        metrics::histogram!(self.name()).record(value);
    }
}

/// Adds one to a count metric.
pub fn count(metric: Metric) {
    add(metric, 1);
}

/// Adds `n` to a count metric.
pub fn add(metric: Metric, n: u64) {
    debug_assert!(!metric.is_reading(), "{metric:?} is a reading");
    if n > 0 {
        metrics::counter!(metric.name()).increment(n);
    }
}

/// The process's recorder, installed once; it writes what the invocation
/// recorded after each invocation.
#[derive(Clone, Copy)]
pub struct Metrics(&'static Collector);

impl Metrics {
    /// Installs the recorder for the process, with `service` as the value
    /// of [`SERVICE_DIMENSION`]. Fails if a recorder is installed already.
    pub fn install(service: &str) -> Result<Self, String> {
        let collector = Builder::new()
            .cloudwatch_namespace(NAMESPACE)
            .with_dimension(SERVICE_DIMENSION, service.to_owned())
            .init()
            .map_err(|e| format!("installing the metrics recorder: {e}"))?;
        for metric in Metric::ALL {
            if metric.is_reading() {
                metrics::describe_histogram!(metric.name(), metric.unit(), "");
            } else {
                metrics::describe_counter!(metric.name(), metric.unit(), "");
            }
        }
        Ok(Self(collector))
    }

    /// Tags what this invocation records with its Lambda request id and
    /// X-Ray trace id (properties of the document, searchable in the logs,
    /// not dimensions), and counts the environment's first invocation.
    pub fn before_invocation(self, request_id: &str, trace_id: Option<&str>) {
        self.0.set_property("requestId", request_id.to_owned());
        match trace_id {
            Some(trace) => self.0.set_property("xrayTraceId", trace.to_owned()),
            None => self.0.remove_property("xrayTraceId"),
        };
        static FIRST: Once = Once::new();
        FIRST.call_once(|| count(Metric::ColdStart));
    }

    /// Writes what the invocation recorded to standard output, one document
    /// per line, under the lock so that no log line interleaves.
    pub fn after_invocation(self) {
        self.write_to(std::io::stdout().lock());
    }

    /// [`Metrics::after_invocation`] into any writer (tests).
    pub fn write_to(self, writer: impl std::io::Write) {
        if let Err(e) = self.0.flush(writer) {
            tracing::warn!(error = %e, "writing metrics failed");
        }
    }
}
