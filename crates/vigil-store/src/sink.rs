//! A background writer of spans produced inside Vigil (gateway calls, guardrail decisions): they
//! are written in batches so the request that produced them never waits on the disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use vigil_model::Span;

use crate::Store;

/// Spans waiting to be written; when full, new spans are dropped and counted (a call is never
/// slowed down to trace it).
const SINK_CAPACITY: usize = 20_000;
const BATCH: usize = 1000;

#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<Span>,
    pub dropped: Arc<AtomicU64>,
}

impl SpanSink {
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Span>(SINK_CAPACITY);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let spans = std::mem::take(&mut batch);
                let n = spans.len();
                // A full write pipeline answers Overloaded: wait and retry rather than lose spans.
                let mut pending = Some(spans);
                for attempt in 0..20u32 {
                    let Some(spans) = pending.take() else { break };
                    match store.write_spans(spans.clone()).await {
                        Ok(_) => break,
                        Err(e) if e.is_retryable() && attempt < 19 => {
                            pending = Some(spans);
                            tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, spans = n, "gateway spans could not be stored")
                        }
                    }
                }
            }
        });
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn record(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
