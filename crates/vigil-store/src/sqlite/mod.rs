//! The embedded SQLite backend: one file in WAL mode, one writer thread that group-commits
//! batches in transactions, and a small pool of read-only connections.
//!
//! Durability: with `Durability::Full` (the default) every commit's WAL frames are synced before
//! the write returns (by the writer's sync thread, see `writer.rs`), so a write that returned is on
//! disk even after power loss. `Durability::Normal` syncs only at checkpoints: a
//! crash of the process loses nothing, but a power cut or OS crash may roll back the last commits.

mod gateway;
mod governance;
mod migrations;
mod passes;
mod projects;
mod quality;
mod read;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;
use vigil_model::{LogEvent, ProjectId, Span, TraceId};

use crate::quality::IngestVerdicts;
use crate::query::*;
use crate::traces::TraceStore;
use crate::{Error, Result};

pub use writer::WriterHandle;

pub const DB_FILE: &str = "vigil.db";

/// Longest a single read may run before it is interrupted.
const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Stored blobs: a format byte, then either a zstd frame preceded by its uncompressed length (u32,
/// little-endian), or, for values under `COMPRESS_FROM` bytes, the encoding itself. New blobs are
/// MessagePack with named fields (binary: no string escaping, ids as bytes, times as integers, and
/// about twice as cheap to write as JSON); blobs of JSON written by earlier versions still read.
/// zstd at level 1 compresses a chunk of a trace's spans about three times smaller than LZ4 did per
/// span, at a speed that keeps it off the critical path (it runs on the request's thread); below a
/// few hundred bytes its fixed cost (building entropy tables) buys almost nothing.
pub(crate) mod body {
    use std::cell::RefCell;

    use crate::{Error, Result};

    const ZSTD_JSON: u8 = 2;
    const RAW_JSON: u8 = 3;
    const ZSTD_MSGPACK: u8 = 4;
    const RAW_MSGPACK: u8 = 5;
    const LEVEL: i32 = 1;
    const FAST_LEVEL: i32 = -1;
    const COMPRESS_FROM: usize = 512;
    /// A corrupt length prefix must not make a reader allocate gigabytes.
    const MAX_DECODED: usize = 512 * 1024 * 1024;

    thread_local! {
        // Compression contexts are costly to set up; each thread keeps one of each. (A new
        // decompression context per read was a quarter of the CPU of reading traces back.)
        static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    }

    #[cfg(test)]
    pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
        encode_sized(value, 1024)
    }

    /// `encode` with a guess of the encoded size, to spare the buffer's regrowth.
    pub fn encode_sized<T: serde::Serialize + ?Sized>(value: &T, guess: usize) -> Result<Vec<u8>> {
        encode_at(value, guess, LEVEL)
    }

    /// `encode` at zstd's fastest useful level (-1, no entropy coding of literals): for small
    /// blobs of short field names and repeated values (span facts), it compresses as well as
    /// level 1 at under half the CPU.
    pub fn encode_small<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
        encode_at(value, 1024, FAST_LEVEL)
    }

    fn encode_at<T: serde::Serialize + ?Sized>(
        value: &T,
        guess: usize,
        level: i32,
    ) -> Result<Vec<u8>> {
        // Encoded after a one-byte header so a small value needs no second buffer.
        let mut plain = Vec::with_capacity(guess + 1);
        plain.push(RAW_MSGPACK);
        rmp_serde::encode::write_named(&mut plain, value)
            .map_err(|e| Error::Corrupt(e.to_string()))?;
        if plain.len() - 1 < COMPRESS_FROM {
            return Ok(plain);
        }
        let plain = &plain[1..];
        let len = u32::try_from(plain.len())
            .map_err(|_| Error::Corrupt("a stored value is larger than 4 GiB".into()))?;
        let frame = COMPRESSOR.with(|cell| -> std::io::Result<Vec<u8>> {
            let mut slot = cell.borrow_mut();
            let compressor = match slot.as_mut() {
                Some(c) => c,
                None => slot.insert(zstd::bulk::Compressor::new(level)?),
            };
            compressor.set_compression_level(level)?;
            compressor.compress(plain)
        });
        let frame = frame.map_err(|e| Error::Corrupt(format!("compression failed: {e}")))?;
        let mut out = Vec::with_capacity(5 + frame.len());
        out.push(ZSTD_MSGPACK);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&frame);
        Ok(out)
    }

    pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        let corrupt = |what: &str| Error::Corrupt(format!("stored value: {what}"));
        let (&format, rest) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
        let from_json = |b: &[u8]| serde_json::from_slice(b).map_err(|e| corrupt(&e.to_string()));
        let from_msgpack = |b: &[u8]| rmp_serde::from_slice(b).map_err(|e| corrupt(&e.to_string()));
        match format {
            RAW_MSGPACK => return from_msgpack(rest),
            RAW_JSON => return from_json(rest),
            ZSTD_MSGPACK | ZSTD_JSON if rest.len() >= 4 => {}
            _ => return Err(corrupt("unknown format")),
        }
        let (len, frame) = rest.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_DECODED {
            return Err(corrupt("declared size is too large"));
        }
        let plain = DECOMPRESSOR
            .with(|cell| -> std::io::Result<Vec<u8>> {
                let mut slot = cell.borrow_mut();
                let decompressor = match slot.as_mut() {
                    Some(d) => d,
                    None => slot.insert(zstd::bulk::Decompressor::new()?),
                };
                decompressor.decompress(frame, len)
            })
            .map_err(|e| corrupt(&e.to_string()))?;
        if format == ZSTD_MSGPACK {
            from_msgpack(&plain)
        } else {
            from_json(&plain)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips_and_rejects_garbage() {
            let v = vec!["a".repeat(1000), "b".into()];
            let enc = encode(&v).unwrap();
            assert!(enc.len() < 100, "compressed: {}", enc.len());
            assert_eq!(decode::<Vec<String>>(&enc).unwrap(), v);
            assert!(decode::<Vec<String>>(&[]).is_err());
            assert!(decode::<Vec<String>>(&[2, 255, 255, 255, 255, 0]).is_err());
            assert!(decode::<Vec<String>>(&enc[..enc.len() - 3]).is_err());
            // Small values are stored as they are: a one-element array holding "x".
            let small = vec!["x".to_string()];
            let enc = encode(&small).unwrap();
            assert_eq!(enc, b"\x05\x91\xa1x");
            assert_eq!(decode::<Vec<String>>(&enc).unwrap(), small);
            assert!(decode::<Vec<String>>(&enc[..enc.len() - 1]).is_err());
            // The fast level reads back the same way.
            let v = vec!["c".repeat(2000)];
            assert_eq!(
                decode::<Vec<String>>(&encode_small(&v).unwrap()).unwrap(),
                v
            );
        }

        #[test]
        fn blobs_of_json_written_by_earlier_versions_still_read() {
            assert_eq!(
                decode::<Vec<String>>(b"\x03[\"x\"]").unwrap(),
                vec!["x".to_string()]
            );
            let json = serde_json::to_vec(&vec!["a".repeat(1000)]).unwrap();
            let mut blob = vec![ZSTD_JSON];
            blob.extend_from_slice(&(json.len() as u32).to_le_bytes());
            blob.extend_from_slice(&zstd::bulk::compress(&json, 1).unwrap());
            assert_eq!(
                decode::<Vec<String>>(&blob).unwrap(),
                vec!["a".repeat(1000)]
            );
        }

        /// Every span the fixtures normalise to comes back from its stored form unchanged: ids,
        /// times, optional fields, attribute values of every JSON type, events and links.
        #[test]
        fn fixture_spans_round_trip_exactly() {
            use std::sync::Arc;
            use vigil_ingest::otlp::{decode_traces, Encoding};
            use vigil_model::{PriceTable, ProjectId, Span};

            let normalizer =
                vigil_ingest::Normalizer::new(Arc::new(PriceTable::builtin().unwrap()));
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/otlp");
            let mut seen = 0;
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let encoding = match path.extension().and_then(|e| e.to_str()) {
                    Some("pb") => Encoding::Protobuf,
                    Some("json") => Encoding::Json,
                    _ => continue,
                };
                let req = decode_traces(&std::fs::read(&path).unwrap(), encoding).unwrap();
                let spans = normalizer.traces(&ProjectId::new("p"), &req).spans;
                assert!(!spans.is_empty(), "{}", path.display());
                let back: Vec<Span> = decode(&encode(&spans).unwrap()).unwrap();
                assert_eq!(back, spans, "{}", path.display());
                seen += spans.len();
            }
            assert!(seen > 20, "only {seen} fixture spans");
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    #[default]
    Full,
    Normal,
}

#[derive(Clone, Debug)]
pub struct SqliteSettings {
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Spans accepted but not yet committed; beyond this, writes fail with `Error::Overloaded`.
    pub max_pending_spans: usize,
    pub read_connections: usize,
    /// SQLite page cache per connection, in KiB.
    pub cache_kib: i64,
}

impl SqliteSettings {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            durability: Durability::Full,
            max_pending_spans: 200_000,
            read_connections: 4,
            cache_kib: 32 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: WriterHandle,
    readers: Mutex<Vec<Connection>>,
    reader_permits: Semaphore,
    /// Per project, each service version's first trace start, reused for a minute
    /// (`quality::deployments`).
    deployments: Arc<Mutex<std::collections::HashMap<ProjectId, quality::Deployments>>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `settings.data_dir` and applies migrations.
    pub fn open(settings: &SqliteSettings) -> Result<Self> {
        std::fs::create_dir_all(&settings.data_dir).map_err(|source| Error::DataDir {
            path: settings.data_dir.clone(),
            source,
        })?;
        let path = settings.data_dir.join(DB_FILE);
        let mut conn = Connection::open(&path)?;
        // Both must precede the first table: deleted pages can be returned to the OS after `gc`, and
        // 8 KiB pages suit rows of a few KiB and halve the per-frame overhead of the WAL.
        // The order matters too: on a new file, setting `auto_vacuum` first fixes the page size
        // at the 4 KiB default.
        conn.pragma_update(None, "page_size", 8192)?;
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        configure(&conn, settings, false)?;
        migrations::apply(&mut conn)?;
        let readers = (0..settings.read_connections.max(1))
            .map(|_| {
                let c = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&c, settings, true)?;
                Ok(c)
            })
            .collect::<Result<Vec<_>>>()?;
        let checkpointer = Connection::open(&path)?;
        checkpointer.busy_timeout(std::time::Duration::from_secs(10))?;
        let writer = writer::spawn(
            conn,
            checkpointer,
            path.clone(),
            settings.max_pending_spans,
            settings.durability == Durability::Full,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer,
                reader_permits: Semaphore::new(readers.len()),
                readers: Mutex::new(readers),
                deployments: Arc::default(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Copies the WAL into the database file and empties it; `vigil serve` calls this on a clean stop.
    pub async fn checkpoint(&self) -> Result<()> {
        self.inner
            .writer
            .exec(|conn| Ok(conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?))
            .await
    }

    /// Adds waiting traces to the deferred indexes now instead of when the writer gets to it.
    #[cfg(test)]
    async fn index_waiting_traces(&self) -> Result<usize> {
        self.inner.writer.exec(writer::index_waiting_traces).await
    }

    pub fn pending_spans(&self) -> usize {
        self.inner.writer.pending()
    }

    /// Runs a read on a pooled read-only connection, off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .inner
            .reader_permits
            .acquire()
            .await
            .map_err(|_| Error::ShuttingDown)?;
        let conn = self
            .inner
            .readers
            .lock()
            .map_err(|_| Error::Task("reader pool poisoned".into()))?
            .pop()
            .ok_or(Error::ShuttingDown)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // Every read is bounded in time: SQLite calls the handler every few thousand VM steps
            // and aborts the query once the deadline passed.
            let deadline = std::time::Instant::now() + QUERY_TIMEOUT;
            conn.progress_handler(10_000, Some(move || std::time::Instant::now() > deadline));
            let result = f(&conn).map_err(|e| match e {
                Error::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::OperationInterrupted =>
                {
                    Error::QueryTimeout {
                        seconds: QUERY_TIMEOUT.as_secs(),
                    }
                }
                other => other,
            });
            conn.progress_handler(0, None::<fn() -> bool>);
            if let Ok(mut pool) = inner.readers.lock() {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }
}

fn configure(conn: &Connection, settings: &SqliteSettings, read_only: bool) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "cache_size", -settings.cache_kib)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match settings.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
    }
    Ok(())
}

#[async_trait]
impl TraceStore for SqliteStore {
    async fn write_spans(&self, spans: Vec<Span>) -> Result<WriteReceipt> {
        self.write_spans_judged(spans, IngestVerdicts::default())
            .await
    }

    async fn write_spans_judged(
        &self,
        spans: Vec<Span>,
        verdicts: IngestVerdicts,
    ) -> Result<WriteReceipt> {
        if spans.is_empty() {
            return Ok(WriteReceipt::default());
        }
        self.inner.writer.write_spans(spans, verdicts).await
    }

    async fn write_spans_waiting(
        &self,
        spans: Vec<Span>,
        verdicts: IngestVerdicts,
    ) -> Result<WriteReceipt> {
        if spans.is_empty() {
            return Ok(WriteReceipt::default());
        }
        self.inner.writer.write_spans_waiting(spans, verdicts).await
    }

    async fn write_log_events(&self, project: &ProjectId, events: Vec<LogEvent>) -> Result<usize> {
        if events.is_empty() {
            return Ok(0);
        }
        self.inner.writer.write_logs(project.clone(), events).await
    }

    async fn find_traces(&self, query: &TraceQuery) -> Result<TracePage> {
        let q = query.clone();
        self.read(move |c| read::find_traces(c, &q)).await
    }

    async fn get_trace(
        &self,
        project: &ProjectId,
        trace_id: TraceId,
    ) -> Result<Option<TraceDetail>> {
        let p = project.clone();
        self.read(move |c| read::get_trace(c, &p, trace_id)).await
    }

    async fn get_trace_spans_lean(
        &self,
        project: &ProjectId,
        trace_id: TraceId,
    ) -> Result<Option<Vec<Span>>> {
        let p = project.clone();
        self.read(move |c| {
            vigil_model::lean::decoding_lean(|| read::get_trace_spans(c, &p, trace_id))
        })
        .await
    }

    async fn find_sessions(&self, query: &SessionQuery) -> Result<SessionPage> {
        let q = query.clone();
        self.read(move |c| read::find_sessions(c, &q)).await
    }

    async fn get_session(
        &self,
        project: &ProjectId,
        session_id: &str,
    ) -> Result<Option<SessionDetail>> {
        let (p, s) = (project.clone(), session_id.to_string());
        self.read(move |c| read::get_session(c, &p, &s)).await
    }

    async fn metrics(&self, query: &MetricsQuery) -> Result<MetricsResult> {
        let q = query.clone();
        self.read(move |c| read::metrics(c, &q)).await
    }

    async fn model_usage(
        &self,
        project: Option<&ProjectId>,
        since: i64,
    ) -> Result<Vec<ModelUsageRow>> {
        let p = project.cloned();
        self.read(move |c| read::model_usage(c, p.as_ref(), since))
            .await
    }

    async fn facets(&self, project: &ProjectId, since: i64) -> Result<Facets> {
        let p = project.clone();
        self.read(move |c| read::facets(c, &p, since)).await
    }

    async fn session_length_breakdown(
        &self,
        project: &ProjectId,
        since: i64,
    ) -> Result<Vec<SessionLengthBucket>> {
        let p = project.clone();
        self.read(move |c| read::session_length_breakdown(c, &p, since))
            .await
    }

    async fn gc(&self, retention: &Retention) -> Result<GcReport> {
        self.inner.writer.gc(*retention).await
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.read(read::stats).await
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn new_databases_get_8k_pages_and_incremental_vacuum() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteSettings::new(dir.path())).unwrap();
        let conn = Connection::open(store.inner.path.clone()).unwrap();
        let page: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        let vacuum: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!((page, vacuum), (8192, 2));
    }

    fn sort_test_span(project: &ProjectId, i: u32, span: u8, cost: Option<f64>) -> Span {
        use vigil_model::{SpanId, SpanKind};
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&(i + 1).to_be_bytes());
        let duration_ns = i64::from((i * 104_729) % 5000) * 10i64.pow(i % 6);
        Span {
            trace_id: TraceId(id),
            span_id: SpanId([1, 2, 3, 4, 5, 6, span, (i % 250) as u8 + 1]),
            project_id: project.clone(),
            kind: SpanKind::Llm,
            name: "call".into(),
            cost_usd: cost,
            session_id: Some(format!("s{}", i % 5)),
            user_id: Some(format!("u{}", i % 3)),
            start_time: 1_000_000_000 + i64::from(i),
            end_time: 1_000_000_000 + i64::from(i) + duration_ns,
            ..Default::default()
        }
    }

    /// Paging through cost and duration sorts with cursors gives exactly the full sort, both ways,
    /// with ties and unpriced traces among the values, alone and filtered by session or user, over
    /// traces on both sides of the deferred indexes (migration 0011), some of which changed after
    /// they were indexed.
    #[tokio::test]
    async fn sorts_and_filters_page_exactly_across_indexed_and_waiting_traces() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteSettings::new(dir.path())).unwrap();
        let project = ProjectId::new("p");
        let cost = |i: u32| match i % 7 {
            0 => None,
            1 => Some(0.0),
            _ => Some(f64::from((i * 7919) % 1000) * 10f64.powi((i % 9) as i32 - 8)),
        };
        let first: Vec<Span> = (0..150)
            .map(|i| sort_test_span(&project, i, 1, cost(i)))
            .collect();
        store.write_spans(first).await.unwrap();
        assert_eq!(store.index_waiting_traces().await.unwrap(), 150);
        let mut rest: Vec<Span> = (150..300)
            .map(|i| sort_test_span(&project, i, 1, cost(i)))
            .collect();
        // Late spans: to indexed traces (their cost and duration index entries move) and to waiting ones.
        for i in [3, 40, 149, 200, 299] {
            let mut late = sort_test_span(&project, i, 2, Some(5.0));
            late.end_time += 10_000_000_000;
            rest.push(late);
        }
        store.write_spans(rest).await.unwrap();
        let waiting: i64 = {
            let conn = Connection::open(store.inner.path.clone()).unwrap();
            conn.query_row("SELECT count(*) FROM traces WHERE indexed = 0", [], |r| {
                r.get(0)
            })
            .unwrap()
        };
        assert_eq!(waiting, 150);

        for (session, user) in [(None, None), (Some("s2"), None), (None, Some("u1"))] {
            let expected_len = (0..300u32)
                .filter(|i| session.is_none_or(|s| s == format!("s{}", i % 5)))
                .filter(|i| user.is_none_or(|u| u == format!("u{}", i % 3)))
                .count();
            for (sort, descending) in [
                (TraceSortField::Cost, true),
                (TraceSortField::Cost, false),
                (TraceSortField::Duration, true),
                (TraceSortField::Duration, false),
                (TraceSortField::StartTime, true),
                (TraceSortField::Spans, false),
            ] {
                let mut q = TraceQuery::new(project.clone());
                q.sort = sort;
                q.descending = descending;
                q.limit = 7;
                q.session_id = session.map(str::to_string);
                q.user_id = user.map(str::to_string);
                let mut paged = Vec::new();
                loop {
                    let page = store.find_traces(&q).await.unwrap();
                    paged.extend(page.traces);
                    match page.next_cursor {
                        Some(c) => q.cursor = Some(Cursor::decode(&c).unwrap()),
                        None => break,
                    }
                }
                let what =
                    format!("{sort:?} descending={descending} session={session:?} user={user:?}");
                let mut expected = paged.clone();
                expected.sort_by(|a, b| read::sort_order(sort, a, b));
                if descending {
                    expected.reverse();
                }
                let ids = |v: &[TraceRow]| v.iter().map(|t| t.trace_id).collect::<Vec<_>>();
                assert_eq!(ids(&paged), ids(&expected), "{what}");
                let distinct: std::collections::HashSet<_> = ids(&paged).into_iter().collect();
                assert_eq!(
                    (paged.len(), distinct.len()),
                    (expected_len, expected_len),
                    "{what}"
                );
                // The late spans' cost shows whichever side their trace was on.
                for t in &paged {
                    let i = u32::from_be_bytes(t.trace_id.0[..4].try_into().unwrap()) - 1;
                    if [3, 40, 149, 200, 299].contains(&i) {
                        assert_eq!(t.span_count, 2, "{what}");
                        assert!(t.cost_usd.unwrap() >= 5.0, "{what}");
                    }
                }
            }
        }
        // Sessions and their traces, and the erasure of a user, see both sides too.
        let session = store.get_session(&project, "s2").await.unwrap().unwrap();
        assert_eq!(session.traces.len(), 60);
        assert_eq!(session.session.turns, 60);
        use crate::governance::GovernanceStore;
        assert_eq!(store.erase_user_traces(&project, "u1").await.unwrap(), 100);
        let mut q = TraceQuery::new(project.clone());
        q.limit = MAX_PAGE_SIZE;
        q.user_id = Some("u1".into());
        assert!(store.find_traces(&q).await.unwrap().traces.is_empty());
    }

    /// The indexed side of each deferred filter or sort is answered from its partial index, and the
    /// recent side from `traces_unindexed`; scores are found by their trace's key. A full scan here
    /// would grow with the whole store.
    #[test]
    fn deferred_indexes_serve_their_queries() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteSettings::new(dir.path())).unwrap();
        let conn = Connection::open(store.inner.path.clone()).unwrap();
        let plan = |sql: &str| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            // Parameters left unbound are NULL, which is all a plan needs.
            let mut rows = stmt.raw_query();
            let mut steps = Vec::new();
            while let Some(r) = rows.next().unwrap() {
                steps.push(r.get::<_, String>(3).unwrap());
            }
            steps.join("; ")
        };
        let cols = "SELECT t.id, t.trace_id";
        let cost = plan(&format!("{cols} FROM traces t WHERE t.project_id = 'p' AND t.indexed = 1 ORDER BY COALESCE(t.cost_usd, -1.0) DESC, t.trace_id DESC LIMIT 8"));
        assert!(cost.contains("traces_by_cost"), "{cost}");
        let duration = plan(&format!("{cols} FROM traces t WHERE t.project_id = 'p' AND t.indexed = 1 ORDER BY t.duration_ms LIMIT 8"));
        assert!(duration.contains("traces_by_duration"), "{duration}");
        let user = plan(&format!("{cols} FROM traces t WHERE t.project_id = 'p' AND t.indexed = 1 AND t.user_id = 'u' ORDER BY t.start_ns LIMIT 8"));
        assert!(user.contains("traces_by_user"), "{user}");
        let recent = plan(&format!("{cols} FROM traces t INDEXED BY traces_unindexed WHERE t.project_id = 'p' AND t.indexed = 0 ORDER BY t.duration_ms LIMIT 8"));
        assert!(recent.contains("traces_unindexed"), "{recent}");
        let both = plan(&format!(
            "{cols} FROM {} t ORDER BY t.start_ns",
            read::traces_where("project_id = 'p' AND session_id = 's'")
        ));
        assert!(
            both.contains("traces_by_session") && both.contains("traces_unindexed"),
            "{both}"
        );
        let scores = plan("SELECT count(*) FROM traces t JOIN scores s ON s.trace_ref = t.id WHERE t.project_id = 'p' AND t.start_ns > 5");
        assert!(scores.contains("scores_by_trace_ref"), "{scores}");
        let unlinked = plan("UPDATE scores SET trace_ref = 9 WHERE trace_ref IS NULL AND project_id = 'p' AND trace_id = x'01'");
        assert!(unlinked.contains("scores_unlinked"), "{unlinked}");
        // Passing verdicts stored with spans (migration 0014): rates read the traces of their
        // window, the latest ones are read in arrival order without sorting.
        let rate = plan(quality::RATE_SQL);
        assert!(rate.contains("traces_by_time"), "{rate}");
        assert!(rate.contains("created_ns>?"), "{rate}");
        for lease in [quality::LEASE_DUE_SQL, quality::LEASE_EXPIRED_SQL] {
            let lease = plan(lease);
            assert!(lease.contains("eval_jobs_ready"), "{lease}");
            assert!(!lease.contains("TEMP B-TREE"), "{lease}");
        }
        let stats =
            plan("SELECT state, count(*) FROM eval_jobs WHERE project_id = 'p' GROUP BY state");
        assert!(
            stats.contains("COVERING INDEX eval_jobs_by_project"),
            "{stats}"
        );
        let queue = plan(quality::NEW_TRACES_SQL);
        assert!(queue.contains("INTEGER PRIMARY KEY"), "{queue}");
        assert!(!queue.contains("TEMP B-TREE"), "{queue}");
        let latest = plan(quality::LATEST_PASSES_SQL);
        assert!(latest.contains("traces_by_time"), "{latest}");
        assert!(!latest.contains("TEMP B-TREE"), "{latest}");
        assert!(latest.contains("span_chunks_by_trace"), "{latest}");
        let index =
            plan("UPDATE traces INDEXED BY traces_unindexed SET indexed = 1 WHERE indexed = 0");
        assert!(index.contains("traces_unindexed"), "{index}");
    }

    /// Traces left waiting by a stopped writer are still found after a restart, and indexed.
    #[tokio::test]
    async fn unindexed_traces_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let project = ProjectId::new("p");
        {
            let store = SqliteStore::open(&SqliteSettings::new(dir.path())).unwrap();
            let spans = (0..20)
                .map(|i| sort_test_span(&project, i, 1, Some(1.0)))
                .collect();
            store.write_spans(spans).await.unwrap();
        }
        let store = SqliteStore::open(&SqliteSettings::new(dir.path())).unwrap();
        let mut q = TraceQuery::new(project.clone());
        q.sort = TraceSortField::Cost;
        q.user_id = Some("u0".into());
        assert_eq!(store.find_traces(&q).await.unwrap().traces.len(), 7);
        assert_eq!(store.index_waiting_traces().await.unwrap(), 20);
        assert_eq!(store.find_traces(&q).await.unwrap().traces.len(), 7);
    }

    /// Scores are found through their trace's row key (migration 0012): a score given before its
    /// trace arrived is found by trace id, linked when the trace arrives, counted once, and deleted
    /// with the trace; an evaluator still scores a target once.
    #[tokio::test]
    async fn scores_follow_their_trace_whenever_it_arrives() {
        use crate::quality::{QualityStore, ScoreRow, ScoreSource};
        use crate::GovernanceStore;

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteSettings::new(dir.path())).unwrap();
        let project = ProjectId::new("p");
        let span = sort_test_span(&project, 7, 1, Some(1.0));
        let trace = span.trace_id;
        let score = |source: ScoreSource, name: &str, span_id| ScoreRow {
            id: 0,
            project_id: project.clone(),
            trace_id: Some(trace),
            span_id,
            session_id: None,
            name: name.into(),
            value: None,
            passed: Some(false),
            label: None,
            reason: None,
            source,
            source_id: Some("e1".into()),
            created_ns: 5,
            cost_usd: None,
        };
        let linked = |store: &SqliteStore| {
            let conn = Connection::open(store.inner.path.clone()).unwrap();
            conn.query_row("SELECT count(*), count(trace_ref) FROM scores", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .unwrap()
        };
        let scores_of = |store: &SqliteStore, trace: Option<TraceId>| {
            let (store, project) = (store.clone(), project.clone());
            async move {
                let rows = store.list_scores(&project, trace, None, 10).await;
                rows.unwrap().len()
            }
        };
        // End-user feedback before the spans: stored unlinked, found by trace id.
        store
            .insert_score(score(ScoreSource::Feedback, "thumbs", None))
            .await
            .unwrap();
        assert_eq!(linked(&store), (1, 0));
        assert_eq!(scores_of(&store, Some(trace)).await, 1);
        // The trace arrives: the score is linked and counted once.
        store.write_spans(vec![span.clone()]).await.unwrap();
        assert_eq!(linked(&store), (1, 1));
        assert_eq!(scores_of(&store, Some(trace)).await, 1);
        let candidates = store.annotation_candidates(&project, 0, 10).await.unwrap();
        assert_eq!(candidates.len(), 1);
        assert_eq!(candidates[0].negative_feedback, 1);
        // An evaluator's verdict on a span is stored once, however often it is given.
        for _ in 0..2 {
            store
                .insert_score(score(ScoreSource::Evaluator, "rule", Some(span.span_id)))
                .await
                .unwrap();
        }
        assert_eq!(linked(&store), (2, 2));
        let candidates = store.annotation_candidates(&project, 0, 10).await.unwrap();
        assert_eq!(candidates[0].failing_evaluators, vec!["rule".to_string()]);
        // Scores of other traces stay out of this trace's list.
        let other = sort_test_span(&project, 8, 1, Some(1.0));
        store.write_spans(vec![other]).await.unwrap();
        assert_eq!(scores_of(&store, Some(trace)).await, 2);
        assert_eq!(scores_of(&store, None).await, 2);
        // Deleting the trace deletes its scores.
        assert_eq!(store.erase_user_traces(&project, "u1").await.unwrap(), 1);
        assert_eq!(linked(&store), (0, 0));
    }

    /// An evaluator of a quiet project moves its cursor past the other projects' new traces once
    /// it has looked at them, instead of reading them again every round.
    #[tokio::test]
    async fn a_quiet_projects_queue_cursor_moves_past_other_projects_traces() {
        use crate::quality::QualityStore;

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteSettings::new(dir.path())).unwrap();
        let (quiet, busy) = (ProjectId::new("quiet"), ProjectId::new("busy"));
        let e = store
            .put_evaluator(
                &quiet,
                "rule",
                serde_json::json!({"rule": {"type": "refusal"}}),
                true,
            )
            .await
            .unwrap();
        let spans = (0..30).map(|i| sort_test_span(&busy, i, 1, None)).collect();
        store.write_spans(spans).await.unwrap();
        let upto = store.max_trace_ref().await.unwrap();
        assert_eq!(
            store.eval_enqueue_new(&e.id, 100, 0, upto).await.unwrap(),
            0
        );
        let cursor = |store: &SqliteStore| {
            let conn = Connection::open(store.inner.path.clone()).unwrap();
            conn.query_row("SELECT cursor FROM evaluators", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        assert_eq!(cursor(&store), upto);
        // Its own traces are still found, past the others'.
        store
            .write_spans(vec![sort_test_span(&quiet, 40, 1, None)])
            .await
            .unwrap();
        let upto = store.max_trace_ref().await.unwrap();
        assert_eq!(
            store.eval_enqueue_new(&e.id, 100, 0, upto).await.unwrap(),
            1
        );
        assert_eq!(cursor(&store), upto);
    }

    /// Deployments (each version's first trace) are reused for a minute, then read again: a new
    /// version appears, and an earlier trace of a known version moves its first start back.
    #[tokio::test]
    async fn deployments_follow_new_traces() {
        use crate::quality::QualityStore;

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteSettings::new(dir.path())).unwrap();
        let project = ProjectId::new("p");
        let versioned = |i: u32, version: &str, start: i64| {
            let mut s = sort_test_span(&project, i, 1, None);
            s.service_version = Some(version.into());
            s.start_time = start;
            s.end_time = start + 10;
            s
        };
        store
            .write_spans(vec![versioned(0, "1.0", 100), versioned(1, "1.0", 50)])
            .await
            .unwrap();
        assert_eq!(
            store.deployments(&project).await.unwrap(),
            vec![("1.0".to_string(), 50)]
        );
        store
            .write_spans(vec![versioned(2, "1.1", 200), versioned(3, "1.0", 20)])
            .await
            .unwrap();
        assert_eq!(
            store.deployments(&project).await.unwrap(),
            vec![("1.0".to_string(), 50)],
            "reused within the minute"
        );
        store.inner.deployments.lock().unwrap().clear();
        assert_eq!(
            store.deployments(&project).await.unwrap(),
            vec![("1.0".to_string(), 20), ("1.1".to_string(), 200)]
        );
        assert!(store
            .deployments(&ProjectId::new("other"))
            .await
            .unwrap()
            .is_empty());
    }

    /// Passing span verdicts given at ingest are stored with their chunk, not as rows (migration
    /// 0014), and read back everywhere a row would be: a trace's scores, the latest scores by name
    /// and the denominators of failure rates; a late chunk's evaluators join the trace's, and a
    /// verdict the queue gives again is listed once. Failing verdicts stay rows.
    #[tokio::test]
    async fn passing_verdicts_given_at_ingest_are_stored_with_their_spans() {
        use crate::quality::{IngestVerdicts, QualityStore, ScoreRow, ScoreSource};

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteSettings::new(dir.path())).unwrap();
        let project = ProjectId::new("p");
        let verdict = |span: &Span, name: &str, passed: bool| ScoreRow {
            id: 0,
            project_id: project.clone(),
            trace_id: Some(span.trace_id),
            span_id: Some(span.span_id),
            session_id: span.session_id.clone(),
            name: name.into(),
            value: Some(if passed { 1.0 } else { 0.0 }),
            passed: Some(passed),
            label: Some(if passed { "pass" } else { "fail" }.into()),
            reason: Some(format!("{name} on {}", span.span_id)),
            source: ScoreSource::Evaluator,
            source_id: Some(format!("id-{name}")),
            created_ns: 10,
            cost_usd: None,
        };
        // Trace 0 (session s0): two spans, one failing `pii`; trace 1 (session s1) passes all.
        let (a, b) = (
            sort_test_span(&project, 0, 1, None),
            sort_test_span(&project, 0, 2, None),
        );
        let c = sort_test_span(&project, 1, 1, None);
        let given = vec![
            verdict(&a, "pii", true),
            verdict(&b, "pii", false),
            verdict(&a, "json", true),
            verdict(&b, "json", true),
            verdict(&c, "pii", true),
        ];
        let verdicts = IngestVerdicts {
            scores: given.clone(),
            ..Default::default()
        };
        store
            .write_spans_judged(vec![a.clone(), b.clone(), c.clone()], verdicts)
            .await
            .unwrap();
        let conn = Connection::open(store.inner.path.clone()).unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM scores", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1, "only the failing verdict is a row");
        let names = |trace: TraceId| -> Option<String> {
            conn.query_row(
                "SELECT passed_by FROM traces WHERE trace_id = ?1",
                [trace.as_bytes()],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(names(a.trace_id).as_deref(), Some("json\npii"));
        let sorted = |mut v: Vec<ScoreRow>| {
            v.iter_mut().for_each(|s| s.id = 0);
            v.sort_by_key(|s| (s.trace_id, s.name.clone(), s.span_id));
            v
        };
        let of_trace = store
            .list_scores(&project, Some(a.trace_id), None, 10)
            .await
            .unwrap();
        assert_eq!(sorted(of_trace), sorted(given[..4].to_vec()));
        let pii = store
            .list_scores(&project, None, Some("pii"), 10)
            .await
            .unwrap();
        assert_eq!(
            sorted(pii),
            sorted(vec![given[0].clone(), given[1].clone(), given[4].clone()])
        );
        assert_eq!(
            store
                .list_scores(&project, None, None, 2)
                .await
                .unwrap()
                .len(),
            2
        );
        let rate = store
            .failure_rate(&project, "pii", 0, i64::MAX, None, None)
            .await
            .unwrap();
        assert_eq!((rate.failing, rate.sessions), (1, 2));
        let json = store
            .failure_rate(&project, "json", 0, i64::MAX, None, None)
            .await
            .unwrap();
        assert_eq!((json.failing, json.sessions), (0, 1));
        let days = store
            .failure_rate_by_day(&project, "pii", 0, i64::MAX)
            .await
            .unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!((days[0].1.failing, days[0].1.sessions), (1, 2));
        // A late chunk of trace 1, judged by another evaluator: its name joins the trace's.
        let d = sort_test_span(&project, 1, 2, None);
        let late = IngestVerdicts {
            scores: vec![verdict(&d, "tone", true)],
            ..Default::default()
        };
        store
            .write_spans_judged(vec![d.clone()], late)
            .await
            .unwrap();
        assert_eq!(names(c.trace_id).as_deref(), Some("pii\ntone"));
        // The queue judges the trace again: its row and the stored verdict are one score.
        store.insert_score(verdict(&c, "pii", true)).await.unwrap();
        let of_c = store
            .list_scores(&project, Some(c.trace_id), None, 10)
            .await
            .unwrap();
        assert_eq!(of_c.len(), 2, "{of_c:?}");
        assert_eq!(
            of_c.iter().filter(|s| s.id != 0).count(),
            1,
            "the row is the one listed"
        );
    }

    /// Verdicts on a whole trace given at ingest: a pass is stored with the chunk and still pairs
    /// with a human label (alignment); an export judged whole that turns out not to be the trace's
    /// first loses its trace marks and verdicts (the queue judges the trace again); the queue's
    /// verdict replaces a failing one from ingest in place.
    #[tokio::test]
    async fn whole_trace_verdicts_at_ingest() {
        use crate::quality::{IngestVerdicts, QualityStore, ScoreRow, ScoreSource};
        use vigil_model::SpanId;

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteSettings::new(dir.path())).unwrap();
        let project = ProjectId::new("p");
        let verdict = |span: &Span, passed: bool| ScoreRow {
            id: 0,
            project_id: project.clone(),
            trace_id: Some(span.trace_id),
            span_id: None,
            session_id: None,
            name: "whole".into(),
            value: Some(if passed { 1.0 } else { 0.0 }),
            passed: Some(passed),
            label: Some(if passed { "pass" } else { "fail" }.into()),
            reason: Some("judged whole".into()),
            source: ScoreSource::Evaluator,
            source_id: Some("ev_whole".into()),
            created_ns: 10,
            cost_usd: None,
        };
        let judged = |span: &Span, passed: bool| IngestVerdicts {
            scores: vec![verdict(span, passed)],
            judged_by: [(project.clone(), vec!["ev_span@1".to_string()])].into(),
            judged_whole: [(
                (project.clone(), span.trace_id),
                vec!["ev_whole@1".to_string()],
            )]
            .into(),
        };
        let (a, b) = (
            sort_test_span(&project, 0, 1, None),
            sort_test_span(&project, 1, 1, None),
        );
        store
            .write_spans_judged(vec![a.clone()], judged(&a, true))
            .await
            .unwrap();
        store
            .write_spans_judged(vec![b.clone()], judged(&b, false))
            .await
            .unwrap();
        let conn = Connection::open(store.inner.path.clone()).unwrap();
        let rows = |trace: TraceId| -> Vec<(i64, i64)> {
            let mut stmt = conn
                .prepare(
                    "SELECT id, passed FROM scores WHERE trace_id = ?1 AND source = 'evaluator'",
                )
                .unwrap();
            stmt.query_map([trace.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert!(
            rows(a.trace_id).is_empty(),
            "the pass is stored with the spans"
        );
        assert_eq!(rows(b.trace_id).len(), 1, "the failure is a row");
        // Humans label both traces bad: the evaluator agrees on b, not on a.
        for t in [a.trace_id, b.trace_id] {
            store
                .insert_score(ScoreRow {
                    source: ScoreSource::Human,
                    name: "annotation".into(),
                    source_id: Some("alice".into()),
                    passed: Some(false),
                    value: Some(0.0),
                    label: Some("bad".into()),
                    trace_id: Some(t),
                    created_ns: 20 + i64::from(t.as_bytes()[0]),
                    ..verdict(&a, false)
                })
                .await
                .unwrap();
        }
        let mut pairs = store
            .score_pairs(&project, "whole", "annotation")
            .await
            .unwrap();
        pairs.sort();
        assert_eq!(pairs, vec![(false, false), (true, false)]);
        // A second export of trace a that looks whole on its own (another parentless span): its
        // failing verdict judged part of the trace and is dropped, and it carries only its span
        // marks, so the queue will judge the trace.
        let a2 = sort_test_span(&project, 0, 2, None);
        store
            .write_spans_judged(vec![a2.clone()], judged(&a2, false))
            .await
            .unwrap();
        assert!(rows(a.trace_id).is_empty());
        // A column of a trace's chunks, in the order they were written.
        fn chunks_of<T: rusqlite::types::FromSql>(
            conn: &Connection,
            column: &str,
            trace: TraceId,
        ) -> Vec<T> {
            conn.prepare(&format!(
                "SELECT c.{column} FROM span_chunks c JOIN traces t ON t.id = c.trace_ref WHERE t.trace_id = ?1 ORDER BY c.id"
            ))
            .unwrap()
            .query_map([trace.as_bytes()], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
        }
        let marks: Vec<Option<String>> = chunks_of(&conn, "judged_by", a.trace_id);
        assert_eq!(
            marks,
            vec![
                Some("ev_span@1,ev_whole@1".into()),
                Some("ev_span@1".into())
            ]
        );
        // Another such export whose verdicts pass: its span's verdict is kept, its verdict on
        // the whole is not (the trace's one stored pass stays the first export's).
        let a3 = sort_test_span(&project, 0, 3, None);
        let mut both = judged(&a3, true);
        both.scores.push(ScoreRow {
            span_id: Some(a3.span_id),
            name: "span-rule".into(),
            source_id: Some("ev_span".into()),
            ..verdict(&a3, true)
        });
        store
            .write_spans_judged(vec![a3.clone()], both)
            .await
            .unwrap();
        let listed = store
            .list_scores(&project, Some(a.trace_id), None, 10)
            .await
            .unwrap();
        let mut listed: Vec<(String, Option<SpanId>)> = listed
            .into_iter()
            .filter(|v| v.source == ScoreSource::Evaluator)
            .map(|v| (v.name, v.span_id))
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            vec![
                ("span-rule".to_string(), Some(a3.span_id)),
                ("whole".to_string(), None)
            ]
        );
        let mut stored = Vec::new();
        let blobs: Vec<Option<Vec<u8>>> = chunks_of(&conn, "passes", a.trace_id);
        for blob in blobs.iter().flatten() {
            passes::expand(blob, &project, a.trace_id, None, &mut stored).unwrap();
        }
        assert_eq!(
            stored.iter().filter(|v| v.span_id.is_none()).count(),
            1,
            "only the first export's verdict on the whole is stored"
        );
        // The queue's verdict on b replaces ingest's failing row in place.
        let before = rows(b.trace_id);
        let b_trace = b.trace_id;
        store
            .inner
            .writer
            .exec(move |conn| {
                conn.execute(
                    "INSERT INTO eval_jobs (project_id, evaluator_id, trace_id, state, not_before_ns) VALUES ('p', 'ev_whole', ?1, 'running', 0)",
                    [b_trace.as_bytes()],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let job_id: i64 = conn
            .query_row("SELECT id FROM eval_jobs", [], |r| r.get(0))
            .unwrap();
        store
            .eval_finish(vec![(job_id, vec![verdict(&b, true)])])
            .await
            .unwrap();
        assert_eq!(rows(b.trace_id), vec![(before[0].0, 1)]);
    }
}
