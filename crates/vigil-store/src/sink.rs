//! A background writer of spans produced inside Vigil (gateway calls, guardrail decisions): they
//! are written in batches so the request that produced them never waits on the disk.
//!
//! The sink runs on a thread of its own, not on the async runtime: preparing a batch for the store
//! (summaries, serialisation, compression) is CPU work, and on the runtime's few worker threads it
//! would hold up the very requests whose latency the gateway promises to keep low.
//!
//! Recording a span is a push onto a locked vector. Only the span that finds the queue empty wakes
//! the sink, which then lingers to gather more: a busy gateway wakes it once per batch, not once
//! per call (a cross-thread wake-up costs the calling thread a system call and can land the sink on
//! the core that is about to serve the next request).
//!
//! Two threads drain the queue. The sink's own thread runs at the lowest CPU priority there is
//! (Linux `SCHED_IDLE`): it only gets a core nothing else wants, so tracing a call never delays
//! the next call. That priority is for good (an unprivileged thread cannot raise it again), so a
//! second thread at normal priority stands by and drains the queue whenever the backlog passes a
//! high-water mark, as it does when the machine is saturated: spans are then written at the
//! expense of some throughput rather than dropped. It also writes spans that have waited longer
//! than `MAX_DELAY`, so a span is queryable within about a second even on a busy machine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use vigil_model::Span;

use crate::{IngestVerdicts, Store};

/// Spans waiting to be written; when full, new spans are dropped and counted (a call is never
/// slowed down to trace it).
const SINK_CAPACITY: usize = 20_000;
/// A batch this large is written without waiting out the linger.
const BATCH: usize = 1000;
/// A backlog this large wakes the normal-priority fallback thread.
const HIGH_WATER: usize = 4 * BATCH;
/// Spans older than this are written by the fallback thread if the background one has not.
const MAX_DELAY: Duration = Duration::from_secs(1);
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

/// What the recording side and the sink's thread share.
struct Queue {
    pending: Mutex<Pending>,
    /// Wakes the idle-priority thread (a batch began, a batch is full, or the sink closed).
    wake: Notify,
    /// Wakes the normal-priority thread (the backlog passed `HIGH_WATER`, or the sink closed).
    pressure: Notify,
    /// Set when the last `SpanSink` is dropped: the threads write what is left and end.
    closed: AtomicBool,
}

#[derive(Default)]
struct Pending {
    spans: Vec<Span>,
    /// When the oldest waiting span was recorded (about: after a partial take, when it was taken).
    since: Option<Instant>,
}

impl Queue {
    /// How many spans wait, and for how long the oldest has.
    fn backlog(&self) -> (usize, Duration) {
        match self.pending.lock() {
            Ok(p) => (
                p.spans.len(),
                p.since.map_or(Duration::ZERO, |t| t.elapsed()),
            ),
            Err(_) => (0, Duration::ZERO),
        }
    }

    /// Takes up to a batch of spans.
    fn take(&self) -> Vec<Span> {
        let Ok(mut p) = self.pending.lock() else {
            return Vec::new();
        };
        if p.spans.len() <= BATCH {
            p.since = None;
            std::mem::take(&mut p.spans)
        } else {
            p.since = Some(Instant::now());
            p.spans.drain(..BATCH).collect()
        }
    }
}

/// Closes the queue when the last handle goes.
struct Closer(Arc<Queue>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake.notify_one();
        self.0.pressure.notify_one();
    }
}

#[derive(Clone)]
pub struct SpanSink {
    queue: Arc<Closer>,
    /// Set once, at start or later (by a part built after the sink's owner).
    filter: Arc<OnceLock<Arc<dyn SpanFilter>>>,
    pub dropped: Arc<AtomicU64>,
}

impl SpanSink {
    pub fn start(store: Arc<dyn Store>, filter: Option<Arc<dyn SpanFilter>>) -> Self {
        let queue = Arc::new(Queue {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            pressure: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let cell = Arc::new(OnceLock::new());
        if let Some(f) = filter {
            let _ = cell.set(f);
        }
        for role in [Role::Background, Role::Fallback] {
            let (store, filter, queue) = (store.clone(), cell.clone(), queue.clone());
            // The store's write path is async (it waits for the writer's acknowledgement), so
            // each thread drives it with a small runtime of its own.
            let spawned = std::thread::Builder::new()
                .name(role.thread_name().into())
                .spawn(move || match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt.block_on(drain(role, store, filter, queue)),
                    Err(e) => tracing::error!(error = %e, "the span sink cannot start; internal spans are not stored"),
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "the span sink thread cannot start; internal spans are not stored");
            }
        }
        Self {
            queue: Arc::new(Closer(queue)),
            filter: cell,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sets the filter of a sink started without one; a sink keeps the first filter it gets.
    pub fn set_filter(&self, filter: Arc<dyn SpanFilter>) {
        let _ = self.filter.set(filter);
    }

    pub fn record(&self, span: Span) {
        let queue = &self.queue.0;
        let waiting = {
            let Ok(mut p) = queue.pending.lock() else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            };
            if p.spans.len() >= SINK_CAPACITY {
                drop(p);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if p.spans.is_empty() {
                p.since = Some(Instant::now());
            }
            p.spans.push(span);
            p.spans.len()
        };
        // The first span of a batch starts the sink's linger; a full batch cuts it short.
        if waiting == 1 || waiting == BATCH {
            queue.wake.notify_one();
        }
        if waiting == HIGH_WATER {
            queue.pressure.notify_one();
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// Writes every batch, on a core nothing else wants.
    Background,
    /// Writes while the backlog is above `HIGH_WATER`.
    Fallback,
}

impl Role {
    fn thread_name(self) -> &'static str {
        match self {
            Role::Background => "vigil-sink-idle",
            Role::Fallback => "vigil-sink-busy",
        }
    }
}

async fn drain(
    role: Role,
    store: Arc<dyn Store>,
    filter: Arc<OnceLock<Arc<dyn SpanFilter>>>,
    queue: Arc<Queue>,
) {
    if role == Role::Background {
        lower_priority_for_good();
    }
    // Whether the fallback thread is working off a backlog (until it is below a batch).
    let mut catching_up = false;
    loop {
        let closed = queue.closed.load(Ordering::Acquire);
        let (waiting, age) = queue.backlog();
        match role {
            Role::Background if waiting == 0 => {
                if closed {
                    return;
                }
                queue.wake.notified().await;
                continue;
            }
            Role::Background if waiting < BATCH && !closed => {
                // Gather more; a full batch or the close wakes the sink early.
                let _ = tokio::time::timeout(LINGER, queue.wake.notified()).await;
            }
            Role::Background => {}
            // At the close both threads write what is left: a stop is not left to the thread
            // that runs only on an otherwise idle core.
            Role::Fallback if closed && waiting == 0 => return,
            Role::Fallback if closed => {}
            Role::Fallback => {
                catching_up = waiting >= HIGH_WATER || (catching_up && waiting >= BATCH);
                if !catching_up && (waiting == 0 || age < MAX_DELAY) {
                    // The background thread keeps up. Look again when the backlog grows, or in a
                    // while in case the machine is too busy for the background thread to run.
                    let _ = tokio::time::timeout(MAX_DELAY / 2, queue.pressure.notified()).await;
                    continue;
                }
            }
        }
        let mut spans = queue.take();
        if spans.is_empty() {
            continue;
        }
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

/// Moves the calling thread to `SCHED_IDLE`: it runs only on a core no other thread wants. Best
/// effort (a sandbox may refuse it; the thread then keeps its priority). One way: going back needs
/// `CAP_SYS_NICE`, which is why only a thread that never needs to hurry calls this.
#[cfg(target_os = "linux")]
fn lower_priority_for_good() {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
        ThreadPriority, ThreadPriorityOsValue, ThreadSchedulePolicy,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    let nice_zero = ThreadPriority::Os(ThreadPriorityOsValue::default());
    if let Err(e) = set_thread_priority_and_policy(thread_native_id(), nice_zero, idle) {
        tracing::debug!(error = ?e, "the span sink keeps its CPU priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority_for_good() {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SqliteSettings, SqliteStore};
    use vigil_model::{SpanId, TraceId};

    fn span(project: &vigil_model::ProjectId, i: i64) -> Span {
        Span {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            project_id: project.clone(),
            name: format!("call {i}"),
            start_time: 1_700_000_000_000_000_000 + i,
            end_time: 1_700_000_000_000_000_000 + i + 1_000,
            ..Span::default()
        }
    }

    async fn stored(store: &dyn Store, want: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = store.stats().await.unwrap().spans;
            if n >= want || Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A burst past the high-water mark (the fallback thread joins in) and a close right after a
    /// few more spans: every span is written once, none is dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_recorded_span_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&SqliteSettings::new(dir.path())).unwrap());
        let project = store.create_project("sink").await.unwrap().id;
        let sink = SpanSink::start(store.clone(), None);
        let burst = (HIGH_WATER + BATCH) as i64;
        for i in 0..burst {
            sink.record(span(&project, i));
        }
        assert_eq!(stored(&*store, burst as u64).await, burst as u64);
        for i in 0..7 {
            sink.record(span(&project, burst + i));
        }
        let dropped = sink.dropped.clone();
        drop(sink);
        assert_eq!(stored(&*store, burst as u64 + 7).await, burst as u64 + 7);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.stats().await.unwrap().spans, burst as u64 + 7);
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }
}
