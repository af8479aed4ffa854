//! The single writer. Callers hand it batches through a bounded queue and wait for the commit;
//! it drains whatever is queued into one transaction (group commit), so many small OTLP exports
//! share one WAL sync. Acknowledgements go out only after `COMMIT` returned and, with full
//! durability, after the WAL is synced to disk.
//!
//! Syncing is pipelined: the connection runs with `synchronous=NORMAL` (a commit writes its WAL
//! frames but does not wait for the disk) and a sync thread `fdatasync`s the WAL file after each
//! commit, then sends that commit's acknowledgements, while the writer already runs the next
//! transaction. This is as durable as `synchronous=FULL`: an acknowledged commit's frames were
//! synced, and SQLite only reuses WAL space after a checkpoint that synced those frames into the
//! database file. It just stops the writer from idling through every disk flush.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use vigil_model::{LogEvent, ProjectId, Span, SpanId, SpanKind, SpanStatus, TraceId};

use crate::quality::{IngestVerdicts, ScoreRow, ScoreSource};
use crate::query::{GcReport, Retention, TraceRow, WriteReceipt};
use crate::rollup::RollupTotals;
use crate::summary::{summarize, SpanFacts};
use crate::{Error, Result};

use super::body;
use super::passes::{self, ChunkPasses};
use super::read::{
    apply_session_delta, get_trace_with_ref, insert_new_trace_row, load_facts, refresh_session,
    rollup_from_row, update_trace_row,
};

/// Jobs drained into one transaction stop growing past this many spans.
const GROUP_COMMIT_SPANS: usize = 20_000;
const QUEUE_JOBS: usize = 4096;
/// Full-text indexing keeps the first 64 KiB of a span's text.
const FTS_TEXT_LIMIT: usize = 64 * 1024;
/// A trace's spans from one request are split into chunks of at most this many spans, so that
/// reading one chunk back stays cheap however large a trace grows.
const CHUNK_SPANS: usize = 1000;

/// New traces wait for their entries in the deferred indexes (migration 0011) until this many are
/// waiting or the oldest has waited `INDEX_AFTER`. A larger batch writes fewer index pages per
/// trace; a smaller one keeps each indexing transaction short and the waiting side that readers
/// scan small.
const INDEX_BATCH_TRACES: usize = 40_000;
const INDEX_AFTER: Duration = Duration::from_secs(5);

type Exec = Box<dyn FnOnce(&mut Connection) + Send>;

/// The spans of one trace from one request, in their stored forms. Grouping, summarising,
/// serialising, compressing and building the search text run on the request's thread, in
/// parallel with other requests; the single writer only runs SQL.
struct PreparedChunk {
    project: ProjectId,
    trace_id: TraceId,
    facts: Vec<SpanFacts>,
    facts_blob: Vec<u8>,
    body: Vec<u8>,
    text: String,
    /// The trace's summary from these spans alone: its row if the trace turns out to be new.
    summary: Option<TraceRow>,
    /// Evaluators that judged every span of the chunk at ingest (comma-separated ids).
    judged_by: Option<String>,
    /// The passing verdicts given to its spans at ingest (`passes.rs`).
    passes: Option<ChunkPasses>,
    /// When its export was judged a whole trace: the marks to store instead if the trace turns out
    /// to be stored already (then the export was not all of it, its verdicts on the whole are
    /// dropped, and the queue judges the trace again).
    if_known: Option<Option<String>>,
}

/// Groups spans by trace (keeping first-seen order), drops repeated span ids within the request,
/// and prepares one chunk per trace. The verdicts that can be stored with their spans go into
/// their chunks; the others are returned, to be written as rows.
fn prepare_chunks(
    spans: Vec<Span>,
    verdicts: IngestVerdicts,
) -> Result<(Vec<PreparedChunk>, Vec<ScoreRow>)> {
    let IngestVerdicts {
        scores,
        judged_by,
        judged_whole,
    } = verdicts;
    let mut passing: HashMap<TraceId, Vec<ScoreRow>> = HashMap::new();
    let mut rows = Vec::new();
    for score in scores {
        match score.trace_id {
            Some(trace) if passes::compact(&score) => passing.entry(trace).or_default().push(score),
            _ => rows.push(score),
        }
    }
    let mut groups: Vec<(ProjectId, TraceId, HashSet<SpanId>, Vec<Span>)> = Vec::new();
    let mut index: HashMap<(ProjectId, TraceId), usize> = HashMap::new();
    for span in spans {
        let key = (span.project_id.clone(), span.trace_id);
        let at = *index.entry(key).or_insert_with(|| {
            groups.push((
                span.project_id.clone(),
                span.trace_id,
                HashSet::new(),
                Vec::new(),
            ));
            groups.len() - 1
        });
        let group = &mut groups[at];
        if group.2.insert(span.span_id) {
            group.3.push(span);
        }
    }
    let mut chunks = Vec::with_capacity(groups.len());
    for (project, trace_id, _, spans) in groups {
        let mut trace_passes = passing.remove(&trace_id).unwrap_or_default();
        let split = spans.len() > CHUNK_SPANS;
        let whole = judged_whole.get(&(project.clone(), trace_id));
        let mut spans = spans.into_iter();
        while spans.len() > 0 {
            let part: Vec<Span> = spans.by_ref().take(CHUNK_SPANS).collect();
            // A chunk takes its project's verdicts on its spans (a trace of more than one chunk
            // splits them by span); those of the same trace id in another project of the batch
            // stay rows (below).
            let ids: Option<HashSet<SpanId>> =
                split.then(|| part.iter().map(|s| s.span_id).collect());
            let (mine, rest): (Vec<ScoreRow>, Vec<ScoreRow>) =
                trace_passes.into_iter().partition(|v| {
                    v.project_id == project
                        && ids
                            .as_ref()
                            .is_none_or(|ids| v.span_id.is_some_and(|id| ids.contains(&id)))
                });
            trace_passes = rest;
            // Each distinct piece once: the history and system prompt an agent resends in every
            // LLM call of a turn would otherwise be tokenised again for each call.
            let mut text = String::new();
            let mut seen: HashSet<u64> = HashSet::new();
            // Seeded per chunk: crafted text cannot make two pieces collide on purpose.
            let hasher = foldhash::fast::RandomState::default();
            for s in &part {
                let start = text.len();
                s.for_each_search_text(|piece| {
                    if text.len() - start < FTS_TEXT_LIMIT && seen.insert(hasher.hash_one(piece)) {
                        text.push_str(piece);
                        text.push('\n');
                    }
                });
                if text.len() - start > FTS_TEXT_LIMIT {
                    let mut cut = start + FTS_TEXT_LIMIT;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                }
            }
            let body = body::encode_sized(&part, part.len() * 4096)?;
            // Last, from the spans themselves: their strings move into the facts, uncopied.
            let facts: Vec<SpanFacts> = part.into_iter().map(SpanFacts::from).collect();
            let if_known = whole.map(|_| judged_mark(judged_by.get(&project), None));
            chunks.push(PreparedChunk {
                summary: summarize(&project, trace_id, &facts),
                facts_blob: body::encode_small(&facts)?,
                body,
                passes: passes::encode(mine)?,
                judged_by: judged_mark(judged_by.get(&project), whole),
                if_known,
                project: project.clone(),
                trace_id,
                facts,
                text,
            });
        }
        // Verdicts of another project, or on spans this request did not carry, stay rows.
        rows.extend(trace_passes);
    }
    rows.extend(passing.into_values().flatten());
    Ok((chunks, rows))
}

/// A chunk's `judged_by`: its project's span-scoped evaluators and those that judged its trace whole.
fn judged_mark(project: Option<&Vec<String>>, whole: Option<&Vec<String>>) -> Option<String> {
    let marks: Vec<&str> = project
        .into_iter()
        .chain(whole)
        .flatten()
        .map(String::as_str)
        .collect();
    (!marks.is_empty()).then(|| marks.join(","))
}

enum Job {
    Spans {
        chunks: Vec<PreparedChunk>,
        /// Scores given to these spans at ingest, committed with them.
        scores: Vec<ScoreRow>,
        ack: oneshot::Sender<Result<WriteReceipt>>,
    },
    Logs {
        project: ProjectId,
        events: Vec<LogEvent>,
        ack: oneshot::Sender<Result<usize>>,
    },
    Exec(Exec),
}

impl Job {
    fn span_count(&self) -> usize {
        match self {
            Job::Spans { chunks, .. } => chunks.iter().map(|c| c.facts.len()).sum(),
            Job::Logs { events, .. } => events.len(),
            Job::Exec(_) => 0,
        }
    }
}

#[derive(Clone)]
pub struct WriterHandle {
    tx: SyncSender<Job>,
    pending: Arc<AtomicUsize>,
    max_pending: usize,
}

/// The WAL is checkpointed in the background, but under constant writes that never empties it, so
/// it would grow forever. Once the frames waiting in it pass this, the writer restarts it between
/// two transactions (`RESTART`: the rest is copied back, then the next commit writes from the start
/// of the file again). Writing over blocks already allocated and cached is much cheaper than
/// growing the file, so the WAL is kept small and reused rather than truncated.
const WAL_RESTART_BYTES: i64 = 64 * 1024 * 1024;
/// Hard bound on the WAL file on disk, should restarts keep failing (e.g. a reader pinned a snapshot).
const WAL_LIMIT_BYTES: u64 = 1024 * 1024 * 1024;

/// While the writer keeps up (fewer spans than this wait for it), it gives way to other threads
/// that want its core every `GIVE_WAY_EVERY` of running. Traced gateway calls reach it a few dozen
/// at a time; OTLP exports bring hundreds per request, and with 2,000 here ingest with evaluation
/// on (both cores busy) lost about 6 %.
const GIVE_WAY_BELOW_PENDING: usize = 500;
const GIVE_WAY_EVERY: Duration = Duration::from_micros(100);

/// Acknowledgements of one commit, sent once it is durable.
type Acks = Vec<Box<dyn FnOnce(Option<&str>) + Send>>;

pub fn spawn(
    conn: Connection,
    checkpointer: Connection,
    db_path: PathBuf,
    max_pending: usize,
    sync_commits: bool,
) -> Result<WriterHandle> {
    let (tx, rx) = sync_channel(QUEUE_JOBS);
    let pending = Arc::new(AtomicUsize::new(0));
    // Bytes of frames in the WAL as of the last background checkpoint, shared with the writer.
    let wal_bytes = Arc::new(AtomicI64::new(0));
    let published = wal_bytes.clone();
    let p = pending.clone();
    // Checkpoints copy WAL pages into the database file; doing them on another thread keeps that
    // work off the write path. The channel closes when the writer stops, which stops the checkpointer.
    let (alive_tx, alive_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("vigil-sqlite-checkpoint".into())
        .spawn(move || checkpoint_loop(checkpointer, alive_rx, published))
        .map_err(|e| Error::Task(format!("cannot start the checkpoint thread: {e}")))?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let wal_path = PathBuf::from(format!("{}-wal", db_path.display()));
    let syncer = if sync_commits {
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let (sync_tx, sync_rx) = sync_channel::<Acks>(1024);
        let path = wal_path.clone();
        std::thread::Builder::new()
            .name("vigil-sqlite-sync".into())
            .spawn(move || sync_loop(&path, sync_rx))
            .map_err(|e| Error::Task(format!("cannot start the sync thread: {e}")))?;
        Some(sync_tx)
    } else {
        None
    };
    std::thread::Builder::new()
        .name("vigil-sqlite-writer".into())
        .spawn(move || {
            let _alive = alive_tx;
            give_way_while_keeping_up(&conn, p.clone());
            run(conn, rx, p, &wal_path, &wal_bytes, syncer)
        })
        .map_err(|e| Error::Task(format!("cannot start the writer thread: {e}")))?;
    Ok(WriterHandle {
        tx,
        pending,
        max_pending,
    })
}

/// Syncs the WAL after commits and then acknowledges them; commits that queued up meanwhile share
/// one sync.
fn sync_loop(wal_path: &Path, rx: Receiver<Acks>) {
    while let Ok(first) = rx.recv() {
        let mut acks = first;
        while let Ok(more) = rx.try_recv() {
            acks.extend(more);
        }
        // Opened per sync: SQLite may truncate the file, and a fresh handle always names it.
        let synced = std::fs::OpenOptions::new()
            .write(true)
            .open(wal_path)
            .and_then(|f| f.sync_data());
        let error = match &synced {
            // A checkpoint may have emptied and removed nothing we need: no WAL file, nothing to sync.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(error = %e, "syncing the WAL failed; the last writes are not acknowledged");
                Some(format!("write could not be made durable: {e}"))
            }
            Ok(()) => None,
        };
        for ack in acks {
            ack(error.as_deref());
        }
    }
}

fn checkpoint_loop(conn: Connection, alive: mpsc::Receiver<()>, wal_bytes: Arc<AtomicI64>) {
    // The page size is fixed once the database exists: read it once, not per checkpoint.
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap_or(8192);
    while let Err(mpsc::RecvTimeoutError::Timeout) = alive.recv_timeout(Duration::from_millis(200))
    {
        // Returns (busy, frames in the WAL, frames checkpointed).
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(frames) => wal_bytes.store(frames * page_size, Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "background checkpoint skipped"),
        }
    }
    // Leave a small WAL behind on a clean stop.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

fn bound_wal(conn: &Connection, wal_path: &Path, wal_bytes: &AtomicI64) {
    if wal_bytes.load(Ordering::Relaxed) > WAL_RESTART_BYTES {
        match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0)) {
            Ok(0) => wal_bytes.store(0, Ordering::Relaxed),
            Ok(_) => tracing::debug!("WAL restart postponed: a reader still uses an old snapshot"),
            Err(e) => tracing::debug!(error = %e, "WAL restart failed"),
        }
    }
    let size = std::fs::metadata(wal_path).map(|m| m.len()).unwrap_or(0);
    if size > WAL_LIMIT_BYTES {
        // TRUNCATE waits for readers of old snapshots, copies every frame back and empties the WAL file.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, wal_bytes = size, "could not checkpoint an oversized WAL");
        }
    }
}

impl WriterHandle {
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Reserves room for `n` items or refuses: the queue is bounded by items, not requests. With
    /// a deadline, waits for room until then instead of refusing at once.
    async fn reserve(&self, n: usize, deadline: Option<Instant>) -> Result<()> {
        let mut delay = Duration::from_millis(5);
        loop {
            let before = self.pending.fetch_add(n, Ordering::AcqRel);
            // A single batch larger than the whole budget is still accepted when nothing is queued.
            if before == 0 || before + n <= self.max_pending {
                return Ok(());
            }
            self.pending.fetch_sub(n, Ordering::AcqRel);
            if deadline.is_none_or(|d| Instant::now() >= d) {
                return Err(Error::Overloaded { pending: before });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }

    /// Queues a job whose items are reserved; on failure gives the reservation back. With a
    /// deadline, a full job queue (many small jobs) is waited on like a full item budget.
    async fn submit(&self, mut job: Job, deadline: Option<Instant>) -> Result<()> {
        let n = job.span_count();
        loop {
            match self.tx.try_send(job) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) if deadline.is_some_and(|d| Instant::now() < d) => {
                    job = back;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(TrySendError::Full(_)) => {
                    self.pending.fetch_sub(n, Ordering::AcqRel);
                    return Err(Error::Overloaded {
                        pending: self.pending(),
                    });
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.pending.fetch_sub(n, Ordering::AcqRel);
                    return Err(Error::ShuttingDown);
                }
            }
        }
    }

    /// Writes spans and waits for their commit. Without a deadline a full pipeline is refused at
    /// once (`Overloaded`: a client retries); with one, the write waits for room until then.
    async fn write_spans_by(
        &self,
        spans: Vec<Span>,
        verdicts: IngestVerdicts,
        deadline: Option<Instant>,
    ) -> Result<WriteReceipt> {
        let (chunks, scores) = prepare_chunks(spans, verdicts)?;
        let n = chunks.iter().map(|c| c.facts.len()).sum();
        self.reserve(n, deadline).await?;
        let (ack, rx) = oneshot::channel();
        let job = Job::Spans {
            chunks,
            scores,
            ack,
        };
        self.submit(job, deadline).await?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    pub async fn write_spans(
        &self,
        spans: Vec<Span>,
        verdicts: IngestVerdicts,
    ) -> Result<WriteReceipt> {
        self.write_spans_by(spans, verdicts, None).await
    }

    /// Like `write_spans`, but waits (up to a minute) for room in the queue instead of failing.
    pub async fn write_spans_waiting(
        &self,
        spans: Vec<Span>,
        verdicts: IngestVerdicts,
    ) -> Result<WriteReceipt> {
        let deadline = Instant::now() + Duration::from_secs(60);
        self.write_spans_by(spans, verdicts, Some(deadline)).await
    }

    pub async fn write_logs(&self, project: ProjectId, events: Vec<LogEvent>) -> Result<usize> {
        self.reserve(events.len(), None).await?;
        let (ack, rx) = oneshot::channel();
        self.submit(
            Job::Logs {
                project,
                events,
                ack,
            },
            None,
        )
        .await?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Runs `f` on the writer's connection, serialised with all other writes.
    pub async fn exec<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (ack, rx) = oneshot::channel();
        let job: Exec = Box::new(move |conn| {
            let _ = ack.send(f(conn));
        });
        // Administrative writes wait for room instead of failing: they are rare and small.
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || tx.send(Job::Exec(job)))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    pub async fn gc(&self, retention: Retention) -> Result<GcReport> {
        self.exec(move |conn| gc(conn, &retention)).await
    }
}

fn run(
    mut conn: Connection,
    rx: Receiver<Job>,
    pending: Arc<AtomicUsize>,
    wal_path: &Path,
    wal_bytes: &AtomicI64,
    syncer: Option<SyncSender<Acks>>,
) {
    let mut deferred = DeferredIndexes::load(&conn);
    loop {
        let first = match deferred.due_in() {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(wait) => rx.recv_timeout(wait),
        };
        let first = match first {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                deferred.index_waiting(&mut conn);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        bound_wal(&conn, wal_path, wal_bytes);
        let mut batch = Vec::new();
        let mut size = 0;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Exec(f) => {
                    // Flush what was gathered so far, then run the exec alone.
                    let added = flush(
                        &mut conn,
                        std::mem::take(&mut batch),
                        &pending,
                        syncer.as_ref(),
                    );
                    deferred.added(added);
                    size = 0;
                    // Administrative writes acknowledge inside `f`, so they commit fully synced.
                    if syncer.is_some() {
                        let _ = conn.pragma_update(None, "synchronous", "FULL");
                    }
                    f(&mut conn);
                    if syncer.is_some() {
                        let _ = conn.pragma_update(None, "synchronous", "NORMAL");
                    }
                }
                other => {
                    size += other.span_count();
                    batch.push(other);
                }
            }
            if size < GROUP_COMMIT_SPANS {
                next = rx.try_recv().ok();
            }
        }
        let added = flush(&mut conn, batch, &pending, syncer.as_ref());
        deferred.added(added);
        if deferred.due_in() == Some(Duration::ZERO) {
            deferred.index_waiting(&mut conn);
        }
    }
    tracing::debug!("sqlite writer stopped");
}

/// New trace rows waiting to be added to the deferred indexes (migration 0011), and when the
/// oldest of them was written.
struct DeferredIndexes {
    waiting: usize,
    since: Option<Instant>,
}

impl DeferredIndexes {
    /// Rows left waiting by the last run (it stopped or crashed before indexing them).
    fn load(conn: &Connection) -> Self {
        let waiting: i64 = conn
            .query_row(
                "SELECT count(*) FROM traces INDEXED BY traces_unindexed WHERE indexed = 0",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        DeferredIndexes {
            waiting: waiting as usize,
            since: (waiting > 0).then(Instant::now),
        }
    }

    fn added(&mut self, traces: usize) {
        if traces > 0 && self.waiting == 0 {
            self.since = Some(Instant::now());
        }
        self.waiting += traces;
    }

    /// How long until the waiting rows are due to be indexed; `None` when none are waiting.
    fn due_in(&self) -> Option<Duration> {
        let since = self.since.filter(|_| self.waiting > 0)?;
        if self.waiting >= INDEX_BATCH_TRACES {
            return Some(Duration::ZERO);
        }
        Some(INDEX_AFTER.saturating_sub(since.elapsed()))
    }

    /// Adds every waiting row to the deferred indexes in one transaction. Nothing waits on it: a
    /// failure (or a crash before its commit is synced) leaves the rows waiting, still found by
    /// readers, and they are indexed next time.
    fn index_waiting(&mut self, conn: &mut Connection) {
        let started = Instant::now();
        match index_waiting_traces(conn) {
            Ok(n) => {
                tracing::trace!(
                    traces = n,
                    micros = started.elapsed().as_micros() as u64,
                    "indexed waiting traces"
                );
                self.waiting = 0;
                self.since = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not add new traces to their deferred indexes; will retry");
                self.since = Some(Instant::now());
            }
        }
    }
}

pub(crate) fn index_waiting_traces(conn: &mut Connection) -> Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE traces INDEXED BY traces_unindexed SET indexed = 1 WHERE indexed = 0",
        [],
    )?;
    tx.commit()?;
    Ok(n)
}

/// Commits a batch and hands its acknowledgements on; returns how many new traces it added.
fn flush(
    conn: &mut Connection,
    batch: Vec<Job>,
    pending: &Arc<AtomicUsize>,
    syncer: Option<&SyncSender<Acks>>,
) -> usize {
    if batch.is_empty() {
        return 0;
    }
    let total: usize = batch.iter().map(Job::span_count).sum();
    let started = Instant::now();
    let result = write_batch(conn, &batch);
    tracing::trace!(
        jobs = batch.len(),
        spans = total,
        micros = started.elapsed().as_micros() as u64,
        "commit"
    );
    match result {
        Ok((outcomes, new_traces)) => {
            // Each acknowledgement reports the commit's outcome, or the sync's failure. A job stays
            // counted as pending until it is acknowledged, so back-pressure covers the disk sync too.
            let mut acks: Acks = Vec::with_capacity(batch.len());
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                let sync_failed = |e: &str| Error::Task(e.to_string());
                let (n, pending) = (job.span_count(), pending.clone());
                let release = move || {
                    pending.fetch_sub(n, Ordering::AcqRel);
                };
                match job {
                    // The written chunks go along and are freed by whoever acknowledges (the sync
                    // thread): freeing thousands of spans' allocations was work of this one thread
                    // that every write waits on.
                    Job::Spans {
                        ack,
                        chunks,
                        scores,
                    } => acks.push(Box::new(move |err: Option<&str>| {
                        release();
                        let _ = ack.send(match err {
                            None => Ok(outcome),
                            Some(e) => Err(sync_failed(e)),
                        });
                        drop((chunks, scores));
                    })),
                    Job::Logs { ack, .. } => acks.push(Box::new(move |err: Option<&str>| {
                        release();
                        let _ = ack.send(match err {
                            None => Ok(outcome.inserted),
                            Some(e) => Err(sync_failed(e)),
                        });
                    })),
                    Job::Exec(_) => release(),
                }
            }
            match syncer {
                Some(tx) => {
                    if let Err(mpsc::SendError(acks)) = tx.send(acks) {
                        for ack in acks {
                            ack(Some("the sync thread stopped"));
                        }
                    }
                }
                None => {
                    for ack in acks {
                        ack(None);
                    }
                }
            }
            new_traces
        }
        Err(e) => {
            pending.fetch_sub(total, Ordering::AcqRel);
            tracing::error!(error = %e, spans = total, "write batch failed, nothing of it was committed");
            let msg = e.to_string();
            for job in batch {
                let err = || Error::Task(format!("write failed: {msg}"));
                match job {
                    Job::Spans { ack, .. } => {
                        let _ = ack.send(Err(err()));
                    }
                    Job::Logs { ack, .. } => {
                        let _ = ack.send(Err(err()));
                    }
                    Job::Exec(_) => {}
                }
            }
            0
        }
    }
}

/// A rollup row's key, borrowing its strings from the batch being written.
#[derive(Hash, PartialEq, Eq, Clone)]
struct RollupKey<'a> {
    project: &'a str,
    minute: i64,
    kind: &'static str,
    model: &'a str,
    provider: &'a str,
    agent: &'a str,
    environment: &'a str,
    service: &'a str,
    tool: &'a str,
}

/// Writes a batch in one transaction; returns each job's receipt and how many new traces it added.
fn write_batch(conn: &mut Connection, batch: &[Job]) -> Result<(Vec<WriteReceipt>, usize)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut new_traces = 0;
    let mut rollups: HashMap<RollupKey<'_>, RollupTotals> = HashMap::new();
    let mut search: Vec<(i64, &str)> = Vec::new();
    for job in batch {
        let mut receipt = WriteReceipt::default();
        match job {
            Job::Spans { chunks, scores, .. } => {
                let mut trace_refs: HashMap<(&str, TraceId), i64> = HashMap::new();
                let mut created: HashSet<(&str, TraceId)> = HashSet::new();
                for chunk in chunks {
                    let stored = write_chunk(&tx, chunk, &mut receipt, &mut rollups, &mut search)?;
                    if let Some((trace_ref, new)) = stored {
                        let key = (chunk.project.as_str(), chunk.trace_id);
                        trace_refs.insert(key, trace_ref);
                        if new {
                            created.insert(key);
                            new_traces += 1;
                        }
                    }
                }
                // Idempotent like the spans: a redelivered span's scores are already there.
                let mut insert = tx.prepare_cached(super::quality::INSERT_SCORE)?;
                for score in scores {
                    let key = score.trace_id.map(|t| (score.project_id.as_str(), t));
                    let trace_ref = key.and_then(|k| trace_refs.get(&k).copied());
                    // A verdict on a whole trace from an export that turned out not to be the
                    // trace's first judged only part of it (see `if_known`).
                    let partial = score.span_id.is_none()
                        && score.source == ScoreSource::Evaluator
                        && trace_ref.is_some()
                        && key.is_some_and(|k| !created.contains(&k));
                    if !partial {
                        super::quality::insert_score_with(&mut insert, score, trace_ref)?;
                    }
                }
            }
            Job::Logs {
                project, events, ..
            } => write_logs(&tx, project, events, &mut receipt)?,
            Job::Exec(_) => {}
        }
        outcomes.push(receipt);
    }
    merge_rollups(&tx, rollups)?;
    // Indexed last: FTS5 writes the terms pending in a transaction out as a new segment whenever a
    // statement opens a savepoint (an UPDATE does), so interleaved with the other writes the batch's
    // text would become many small segments, each to be merged again.
    let mut index = tx.prepare_cached("INSERT INTO chunk_text (rowid, text) VALUES (?1, ?2)")?;
    for (chunk_id, text) in search {
        index.execute(params![chunk_id, text])?;
    }
    drop(index);
    tx.commit()?;
    Ok((outcomes, new_traces))
}

/// Stores one chunk and brings its trace's row, its session's row and the rollups up to date; its
/// search text is left in `search` for the batch to index. Returns the trace's row key when it is
/// stored, and whether this chunk started it.
fn write_chunk<'a>(
    tx: &rusqlite::Transaction,
    chunk: &'a PreparedChunk,
    receipt: &mut WriteReceipt,
    rollups: &mut HashMap<RollupKey<'a>, RollupTotals>,
    search: &mut Vec<(i64, &'a str)>,
) -> Result<Option<(i64, bool)>> {
    let Some(summary) = &chunk.summary else {
        return Ok(None);
    };
    // A new trace (the common case): its summary was computed by the caller.
    let passed_by = chunk.passes.as_ref().map(|p| p.names.as_str());
    let inserted = insert_new_trace_row(tx, summary, chunk.judged_by.as_deref(), passed_by)?;
    // A chunk judged as a whole trace that is not the trace's first keeps only its span marks and
    // verdicts: the trace as a whole is the queue's to judge.
    let span_passes;
    let (judged_by, passes) = match (&inserted, &chunk.if_known) {
        (None, Some(judged_by)) => {
            span_passes = match &chunk.passes {
                Some(p) => passes::without_trace_verdicts(p)?,
                None => None,
            };
            (judged_by.as_deref(), span_passes.as_ref())
        }
        _ => (chunk.judged_by.as_deref(), chunk.passes.as_ref()),
    };
    let passed_by = passes.map(|p| p.names.as_str());
    let existing = match inserted {
        Some(_) => None,
        None => get_trace_with_ref(tx, &chunk.project, chunk.trace_id)?,
    };
    // `known`: span ids the trace already had (`None` for a new trace).
    type Outcome<'f> = (
        i64,
        Cow<'f, [SpanFacts]>,
        Option<TraceRow>,
        TraceRow,
        Option<HashSet<SpanId>>,
    );
    if let Some(trace_ref) = inserted {
        // Scores given before the trace arrived (end-user feedback) now find it by its key.
        tx.prepare_cached(
            "UPDATE scores SET trace_ref = ?1 WHERE trace_ref IS NULL AND project_id = ?2 AND trace_id = ?3",
        )?
        .execute(params![
            trace_ref,
            chunk.project.as_str(),
            chunk.trace_id.as_bytes()
        ])?;
    }
    let (trace_ref, fresh, old, row, known): Outcome<'_> = match (inserted, existing) {
        (Some(trace_ref), _) => (
            trace_ref,
            Cow::Borrowed(&chunk.facts[..]),
            None,
            summary.clone(),
            None,
        ),
        (None, None) => return Ok(None),
        // More spans of a known trace: skip the ones already stored (redelivery) and
        // re-summarise from the facts of all its chunks.
        (None, Some((trace_ref, old))) => {
            let mut all = load_facts(tx, trace_ref)?;
            let known: HashSet<SpanId> = all.iter().map(|f| f.span_id).collect();
            let fresh: Vec<SpanFacts> = chunk
                .facts
                .iter()
                .filter(|f| !known.contains(&f.span_id))
                .cloned()
                .collect();
            receipt.duplicates += chunk.facts.len() - fresh.len();
            if fresh.is_empty() {
                return Ok(Some((trace_ref, false)));
            }
            all.extend(fresh.iter().cloned());
            let Some(row) = summarize(&chunk.project, chunk.trace_id, &all) else {
                return Ok(Some((trace_ref, false)));
            };
            // The names of evaluators that passed spans of this chunk join the trace's.
            let passed_by = match passed_by {
                Some(names) => {
                    let old: Option<String> = tx
                        .prepare_cached("SELECT passed_by FROM traces WHERE id = ?1")?
                        .query_row([trace_ref], |r| r.get(0))?;
                    Some(passes::union_names(old.as_deref(), names))
                }
                None => None,
            };
            update_trace_row(tx, trace_ref, &row, judged_by, passed_by.as_deref())?;
            (trace_ref, Cow::Owned(fresh), Some(old), row, Some(known))
        }
    };
    // The body keeps every span the client sent; when some were redelivered, the stored facts
    // list only the new ones and readers keep the first copy of a span.
    let facts_blob = if fresh.len() == chunk.facts.len() {
        Cow::Borrowed(&chunk.facts_blob[..])
    } else {
        Cow::Owned(body::encode_small(&fresh[..])?)
    };
    tx.prepare_cached(
        "INSERT INTO span_chunks (trace_ref, span_count, facts, body, judged_by, passes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        trace_ref,
        fresh.len() as i64,
        facts_blob,
        chunk.body,
        judged_by,
        passes.map(|p| &p.blob[..])
    ])?;
    search.push((tx.last_insert_rowid(), &chunk.text));
    // Sessions are updated by difference, so a session of thousands of turns costs the same per
    // write as a session of one.
    if let Some(old) = &old {
        apply_session_delta(tx, old, -1)?;
    }
    apply_session_delta(tx, &row, 1)?;
    // Rollup keys borrow from the chunk, which outlives the batch's rollup map.
    for f in chunk
        .facts
        .iter()
        .filter(|f| known.as_ref().is_none_or(|k| !k.contains(&f.span_id)))
    {
        add_rollup(rollups, &chunk.project, f);
    }
    receipt.inserted += fresh.len();
    Ok(Some((trace_ref, inserted.is_some())))
}

fn write_logs(
    tx: &rusqlite::Transaction,
    project: &ProjectId,
    events: &[LogEvent],
    receipt: &mut WriteReceipt,
) -> Result<()> {
    let mut log = tx.prepare_cached(
        "INSERT INTO log_records (project_id, trace_id, span_id, time_ns, digest, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (project_id, digest) DO NOTHING",
    )?;
    for e in events {
        let body = serde_json::to_vec(e).map_err(|e| Error::Corrupt(e.to_string()))?;
        let digest = Sha256::digest(&body).to_vec();
        let changed = log.execute(params![
            project.as_str(),
            e.trace_id.as_ref().map(|t| t.as_bytes()),
            e.span_id.as_ref().map(|s| s.as_bytes()),
            e.time,
            digest,
            body
        ])?;
        if changed == 0 {
            receipt.duplicates += 1;
        } else {
            receipt.inserted += 1;
        }
    }
    Ok(())
}

fn add_rollup<'a>(
    rollups: &mut HashMap<RollupKey<'a>, RollupTotals>,
    project: &'a ProjectId,
    s: &'a SpanFacts,
) {
    let key = RollupKey {
        project: project.as_str(),
        minute: s.start_ns.div_euclid(60_000_000_000),
        kind: s.kind.as_str(),
        model: s.model.as_deref().unwrap_or_default(),
        provider: s.provider.as_deref().unwrap_or_default(),
        agent: s.agent_name.as_deref().unwrap_or_default(),
        environment: s.environment.as_deref().unwrap_or_default(),
        service: s.service_name.as_deref().unwrap_or_default(),
        tool: s.tool_name.as_deref().unwrap_or_default(),
    };
    let acc = rollups.entry(key).or_default();
    acc.count += 1;
    acc.errors += i64::from(s.status == SpanStatus::Error);
    acc.flagged += i64::from(s.flags != 0);
    acc.input += s.input_tokens.unwrap_or(0);
    acc.output += s.output_tokens.unwrap_or(0);
    match s.cost_usd {
        Some(c) => {
            acc.cost += c;
            acc.priced += 1;
        }
        None if matches!(s.kind, SpanKind::Llm | SpanKind::Embedding) && s.model.is_some() => {
            acc.unpriced += 1
        }
        None => {}
    }
    acc.hist
        .record(s.end_ns.saturating_sub(s.start_ns).max(0) as f64 / 1e6);
}

fn merge_rollups(
    tx: &rusqlite::Transaction,
    rollups: HashMap<RollupKey<'_>, RollupTotals>,
) -> Result<()> {
    let mut get = tx.prepare_cached(
        "SELECT count, error_count, flagged_count, input_tokens, output_tokens, cost_usd, priced_count, unpriced_count, latency_hist
         FROM span_rollups WHERE project_id = ?1 AND minute = ?2 AND kind = ?3 AND model = ?4 AND provider = ?5
           AND agent_name = ?6 AND environment = ?7 AND service_name = ?8 AND tool_name = ?9",
    )?;
    let mut put = tx.prepare_cached(
        "INSERT OR REPLACE INTO span_rollups (project_id, minute, kind, model, provider, agent_name, environment, service_name,
            tool_name, count, error_count, flagged_count, input_tokens, output_tokens, cost_usd, priced_count, unpriced_count,
            latency_hist)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    )?;
    for (k, mut acc) in rollups {
        let key = params![
            k.project,
            k.minute,
            k.kind,
            k.model,
            k.provider,
            k.agent,
            k.environment,
            k.service,
            k.tool
        ];
        let existing = get.query_row(key, |r| rollup_from_row(r, 0)).optional()?;
        if let Some(e) = existing {
            acc.add(&e);
        }
        put.execute(params![
            k.project,
            k.minute,
            k.kind,
            k.model,
            k.provider,
            k.agent,
            k.environment,
            k.service,
            k.tool,
            acc.count,
            acc.errors,
            acc.flagged,
            acc.input,
            acc.output,
            acc.cost,
            acc.priced,
            acc.unpriced,
            acc.hist.encode()
        ])?;
    }
    Ok(())
}

const GC_CHUNK: usize = 1000;

/// Every project with stored data: the registered ones and any other that traces, log records or
/// rollups name (spans written by tools for a project id alone), found by hopping from one project
/// to the next in each table's index that leads with the project, instead of reading the table.
fn project_ids(conn: &Connection) -> Result<Vec<String>> {
    let mut ids: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut stmt = conn.prepare_cached("SELECT id FROM projects")?;
    for id in stmt.query_map([], |r| r.get(0))? {
        ids.insert(id?);
    }
    for table in ["traces", "log_records", "span_rollups"] {
        let mut stmt = conn.prepare_cached(&format!(
            "WITH RECURSIVE p(id) AS ( \
               SELECT (SELECT min(project_id) FROM {table}) \
               UNION ALL SELECT (SELECT min(project_id) FROM {table} WHERE project_id > p.id) FROM p WHERE p.id IS NOT NULL) \
             SELECT id FROM p WHERE id IS NOT NULL"
        ))?;
        for id in stmt.query_map([], |r| r.get(0))? {
            ids.insert(id?);
        }
    }
    Ok(ids.into_iter().collect())
}

fn gc(conn: &mut Connection, retention: &Retention) -> Result<GcReport> {
    let mut report = GcReport {
        bytes_before: used_bytes(conn)?,
        ..GcReport::default()
    };
    if let Some(age) = retention.max_age_seconds {
        let now = time_now_ns();
        let cutoff = now.saturating_sub(
            i64::try_from(age)
                .unwrap_or(i64::MAX / 1_000_000_000)
                .saturating_mul(1_000_000_000),
        );
        // Project by project, so that each statement is a range of an index that leads with the
        // project: without it, each pass (and the last, empty one) read the whole trace table on
        // the writer, holding up ingest.
        for project in project_ids(conn)? {
            loop {
                let n = delete_traces(
                    conn,
                    "SELECT id, project_id, trace_id, session_id, span_count FROM traces \
                     WHERE project_id = ?3 AND start_ns < ?1 ORDER BY start_ns LIMIT ?2",
                    &[&cutoff, &(GC_CHUNK as i64), &project],
                    &mut report,
                )?;
                if n == 0 {
                    break;
                }
            }
            conn.execute(
                "DELETE FROM log_records WHERE project_id = ?1 AND time_ns < ?2",
                params![project, cutoff],
            )?;
            conn.execute(
                "DELETE FROM span_rollups WHERE project_id = ?1 AND minute < ?2",
                params![project, cutoff.div_euclid(60_000_000_000)],
            )?;
        }
    }
    if let Some(max) = retention.max_size_bytes {
        while used_bytes(conn)? > max {
            // The oldest traces of the store: each project's oldest, in the order of its time
            // index, then the oldest of those (a sort of the whole table per pass, before).
            let mut oldest: Vec<(i64, i64)> = Vec::new();
            for project in project_ids(conn)? {
                let mut stmt = conn.prepare_cached(
                    "SELECT start_ns, id FROM traces WHERE project_id = ?1 ORDER BY start_ns LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![project, GC_CHUNK as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
                for row in rows {
                    oldest.push(row?);
                }
            }
            oldest.sort_unstable();
            oldest.truncate(GC_CHUNK);
            let ids = serde_json::to_string(&oldest.iter().map(|(_, id)| id).collect::<Vec<_>>())
                .map_err(|e| Error::Corrupt(e.to_string()))?;
            let n = delete_traces(
                conn,
                "SELECT id, project_id, trace_id, session_id, span_count FROM traces \
                 WHERE id IN (SELECT value FROM json_each(?1))",
                &[&ids],
                &mut report,
            )?;
            if n == 0 {
                break;
            }
        }
    }
    if report.traces_deleted > 0 {
        conn.pragma_update(None, "incremental_vacuum", 0)?;
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
    report.bytes_after = used_bytes(conn)?;
    Ok(report)
}

/// Deletes one batch of whole traces selected by `select` with `params` (selecting
/// `id, project_id, trace_id, session_id, span_count`).
pub(crate) fn delete_traces(
    conn: &mut Connection,
    select: &str,
    params: &[&dyn rusqlite::ToSql],
    report: &mut GcReport,
) -> Result<usize> {
    type Victim = (i64, String, Vec<u8>, Option<String>, i64);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let victims: Vec<Victim> = {
        let mut stmt = tx.prepare(select)?;
        let rows = stmt.query_map(params, |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut sessions: HashSet<(String, String)> = HashSet::new();
    for (trace_ref, project, trace, session, span_count) in &victims {
        let chunk_ids: Vec<i64> = {
            let mut stmt = tx.prepare_cached("SELECT id FROM span_chunks WHERE trace_ref = ?1")?;
            let rows = stmt.query_map([trace_ref], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for id in &chunk_ids {
            tx.prepare_cached("DELETE FROM chunk_text WHERE rowid = ?1")?
                .execute([id])?;
        }
        tx.prepare_cached("DELETE FROM span_chunks WHERE trace_ref = ?1")?
            .execute([trace_ref])?;
        tx.prepare_cached("DELETE FROM log_records WHERE project_id = ?1 AND trace_id = ?2")?
            .execute(params![project, trace])?;
        // What the quality loop derived from the trace goes with it.
        tx.prepare_cached("DELETE FROM scores WHERE trace_ref = ?1")?
            .execute([trace_ref])?;
        tx.prepare_cached(
            "DELETE FROM scores WHERE trace_ref IS NULL AND project_id = ?1 AND trace_id = ?2",
        )?
        .execute(params![project, trace])?;
        // Through the (evaluator, trace) key: no index leads with the trace id alone.
        tx.prepare_cached(
            "DELETE FROM eval_jobs WHERE evaluator_id IN (SELECT id FROM evaluators WHERE project_id = ?1) AND trace_id = ?2",
        )?
        .execute(params![project, trace])?;
        tx.prepare_cached(
            "DELETE FROM failure_mode_examples WHERE trace_id = ?2 AND failure_mode_id IN (SELECT id FROM failure_modes WHERE project_id = ?1)",
        )?
        .execute(params![project, trace])?;
        tx.prepare_cached(
            "DELETE FROM dataset_items WHERE source_trace = ?2 AND dataset_id IN (SELECT id FROM datasets WHERE project_id = ?1)",
        )?
        .execute(params![project, trace])?;
        tx.prepare_cached("DELETE FROM traces WHERE id = ?1")?
            .execute([trace_ref])?;
        if let Some(session) = session {
            sessions.insert((project.clone(), session.clone()));
        }
        report.spans_deleted += *span_count as u64;
        report.traces_deleted += 1;
    }
    for (project, session) in &sessions {
        refresh_session(&tx, project, session)?;
    }
    tx.commit()?;
    Ok(victims.len())
}

pub(crate) fn used_bytes(conn: &Connection) -> Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

pub(crate) use vigil_model::now_unix_nanos as time_now_ns;

/// Makes the writer give way to other threads every `GIVE_WAY_EVERY` inside its statements while it
/// keeps up with its queue.
///
/// Why: the writer's work comes in runs of one to several milliseconds (a commit every 20 ms of
/// traced gateway calls, a batch of deferred index entries every few seconds), and the scheduler
/// lets a running thread finish its time slice before a woken one gets the core, so a request's
/// thread that wakes next to it waits out the run. Yielding (SQLite calls the handler every few
/// hundred VM steps) lets a waiting thread run first; when nothing waits it returns at once.
/// While the writer is behind it does not give way: then it is the bottleneck, and yielding
/// whatever the backlog cost ingest about 7 % in a saturating run.
fn give_way_while_keeping_up(conn: &Connection, pending: Arc<AtomicUsize>) {
    let mut since = Instant::now();
    conn.progress_handler(
        500,
        Some(move || {
            if pending.load(Ordering::Relaxed) < GIVE_WAY_BELOW_PENDING
                && since.elapsed() >= GIVE_WAY_EVERY
            {
                std::thread::yield_now();
                since = Instant::now();
            }
            false // never interrupts the statement
        }),
    );
}
