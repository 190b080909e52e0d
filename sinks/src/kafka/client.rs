//! The producer's client context: delivery reports and client errors are
//! collected here and handled by the sink on its own thread after `poll`.

use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError as ClientError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use super::spool::Ticket;
use super::wire::Envelope;

/// Where a message in flight came from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Origin {
    Live,
    Spool(Ticket),
}

/// A message the client holds; comes back in its delivery report.
#[derive(Debug)]
pub(super) struct Inflight {
    pub(super) env: Arc<Envelope>,
    pub(super) origin: Origin,
}

#[derive(Debug)]
pub(super) enum Outcome {
    Delivered(Box<Inflight>),
    Failed(Box<Inflight>, Option<RDKafkaErrorCode>),
    AllBrokersDown,
}

/// Collects delivery reports and client errors; the sink handles them on its own thread after `poll`.
#[derive(Debug, Default)]
pub(super) struct Reports {
    outcomes: Mutex<Vec<Outcome>>,
}

impl Reports {
    pub(super) fn push(&self, o: Outcome) {
        if let Ok(mut v) = self.outcomes.lock() {
            v.push(o);
        }
    }

    pub(super) fn take(&self) -> Vec<Outcome> {
        self.outcomes.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

/// librdkafka's own log lines, through tracing.
pub(super) fn log_client(level: RDKafkaLogLevel, fac: &str, msg: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(fac, "librdkafka: {msg}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(fac, "librdkafka: {msg}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(fac, "librdkafka: {msg}"),
        RDKafkaLogLevel::Debug => tracing::debug!(fac, "librdkafka: {msg}"),
    }
}

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        log_client(level, fac, msg);
    }

    fn error(&self, error: ClientError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.push(Outcome::AllBrokersDown);
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Inflight>;

    fn delivery(&self, result: &DeliveryResult<'_>, inflight: Box<Inflight>) {
        match result {
            Ok(_) => self.push(Outcome::Delivered(inflight)),
            Err((e, _)) => self.push(Outcome::Failed(inflight, e.rdkafka_error_code())),
        }
    }
}

/// Errors no retry can fix: the message is rejected, counted and logged, never spooled.
pub(super) fn permanent(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}
