//! A background writer of spans produced inside Vigil (gateway calls, guardrail decisions): they
//! are written in batches so the request that produced them never waits on the disk.
//!
//! The sink runs on a thread of its own, not on the async runtime: preparing a batch for the store
//! (summaries, serialisation, compression) is CPU work, and on the runtime's few worker threads it
//! would hold up the very requests whose latency the gateway promises to keep low.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vigil_model::Span;

use crate::{IngestVerdicts, Store};

/// Spans waiting to be written; when full, new spans are dropped and counted (a call is never
/// slowed down to trace it).
const SINK_CAPACITY: usize = 20_000;
const BATCH: usize = 1000;
/// How long the sink waits for more spans before writing a batch that is not full: a busy gateway
/// then writes hundreds of spans per commit rather than a few, and each commit has a fixed cost
/// (index pages, a search segment, a WAL sync).
const LINGER: Duration = Duration::from_millis(20);

/// Work done on a batch on the sink's thread before it is written: redaction, so nothing reaches
/// the store unredacted and the request that produced a span does not pay for scanning it, then
/// the verdicts of ingest-time evaluators, written with the spans.
#[async_trait::async_trait]
pub trait SpanFilter: Send + Sync {
    async fn filter(&self, spans: &mut [Span]) -> IngestVerdicts;
}

#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<Span>,
    /// Set once, at start or later (by a part built after the sink's owner).
    filter: Arc<OnceLock<Arc<dyn SpanFilter>>>,
    pub dropped: Arc<AtomicU64>,
}

impl SpanSink {
    pub fn start(store: Arc<dyn Store>, filter: Option<Arc<dyn SpanFilter>>) -> Self {
        let (tx, rx) = mpsc::channel::<Span>(SINK_CAPACITY);
        let cell = Arc::new(OnceLock::new());
        if let Some(f) = filter {
            let _ = cell.set(f);
        }
        let filter = cell.clone();
        // The store's write path is async (it waits for the writer's acknowledgement), so the
        // thread drives it with a small runtime of its own. The thread ends when every sender is gone.
        let spawned = std::thread::Builder::new()
            .name("vigil-span-sink".into())
            .spawn(move || match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt.block_on(drain(store, filter, rx)),
                Err(e) => tracing::error!(error = %e, "the span sink cannot start; internal spans are not stored"),
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "the span sink thread cannot start; internal spans are not stored");
        }
        Self {
            tx,
            filter: cell,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sets the filter of a sink started without one; a sink keeps the first filter it gets.
    pub fn set_filter(&self, filter: Arc<dyn SpanFilter>) {
        let _ = self.filter.set(filter);
    }

    pub fn record(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn drain(
    store: Arc<dyn Store>,
    filter: Arc<OnceLock<Arc<dyn SpanFilter>>>,
    mut rx: mpsc::Receiver<Span>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let deadline = Instant::now() + LINGER;
        while batch.len() < BATCH {
            let room = BATCH - batch.len();
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv_many(&mut batch, room)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let mut spans = std::mem::take(&mut batch);
        let n = spans.len();
        let verdicts = match filter.get() {
            Some(f) => f.filter(&mut spans).await,
            None => IngestVerdicts::default(),
        };
        // Waits for room when the write pipeline is full rather than losing the spans.
        if let Err(e) = store.write_spans_waiting(spans, verdicts).await {
            tracing::warn!(error = %e, spans = n, "internal spans could not be stored");
        }
    }
}
