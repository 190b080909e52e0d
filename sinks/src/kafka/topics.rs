//! Keeps the topics there: created at start, and again when a broker comes
//! back without them (an in-memory broker after a restart).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaConfig, KafkaError};

/// How often the topics are checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A background thread that creates missing topics; stopped on drop.
#[derive(Debug)]
pub struct TopicKeeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TopicKeeper {
    /// Creates the tables' topics (`super::TABLES`) once (errors are returned), then keeps checking in the background.
    pub fn start(cfg: &KafkaConfig, client_id: &str) -> Result<TopicKeeper, KafkaError> {
        let admin: AdminClient<DefaultClientContext> =
            cfg.client_properties(&format!("{client_id}-admin"))?.create().map_err(KafkaError::Client)?;
        let topics: Vec<String> = super::TABLES.iter().map(|t| cfg.topic(*t)).collect();
        let (partitions, replication, max_bytes) =
            (cfg.partitions, cfg.replication_factor, cfg.message_max_bytes.to_string());
        let first = ensure(&admin, &topics, partitions, replication, &max_bytes);
        if let Err(e) = &first {
            tracing::warn!(error = %e, "kafka: cannot create topics yet; will retry");
        }
        let (tx, rx) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("tl-kafka-topics".into())
            .spawn(move || {
                loop {
                    match rx.recv_timeout(CHECK_EVERY) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    if let Err(e) = ensure(&admin, &topics, partitions, replication, &max_bytes) {
                        tracing::debug!(error = %e, "kafka: topic check failed");
                    }
                }
            })
            .map_err(|e| KafkaError::Config(format!("cannot start the topic thread: {e}")))?;
        Ok(TopicKeeper { stop: Some(tx), thread: Some(thread) })
    }
}

impl Drop for TopicKeeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Creates those of `topics` the broker does not list.
fn ensure(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[String],
    partitions: i32,
    replication: i32,
    max_bytes: &str,
) -> Result<(), KafkaError> {
    let md = admin.inner().fetch_metadata(None, REQUEST_TIMEOUT).map_err(KafkaError::Client)?;
    let missing: Vec<&String> = topics
        .iter()
        .filter(|t| {
            !md.topics().iter().any(|m| m.name() == t.as_str() && m.error().is_none() && !m.partitions().is_empty())
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)).set("max.message.bytes", max_bytes))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = block_on(admin.create_topics(new.iter(), &opts)).map_err(KafkaError::Client)?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = name, partitions, "kafka: topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(KafkaError::Topic { topic: name, code }),
        }
    }
    Ok(())
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future on this thread (the admin client's futures complete from its own polling thread).
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park_timeout(Duration::from_millis(100));
    }
}
