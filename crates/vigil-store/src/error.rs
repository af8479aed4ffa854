use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The write pipeline is full; the caller should retry later (HTTP 503/429, gRPC UNAVAILABLE).
    #[error("write pipeline is full ({pending} spans pending)")]
    Overloaded { pending: usize },
    #[error("store is shutting down")]
    ShuttingDown,
    #[error(
        "query took longer than {seconds} s and was stopped; narrow the time range or the filters"
    )]
    QueryTimeout { seconds: u64 },
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("`{0}` not found")]
    NotFound(String),
    /// Another writer took the same position first (e.g. of an audit chain); re-read and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("`{name}` already exists")]
    AlreadyExists { name: String },
    #[error("cannot open data directory `{path}`: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database migration {version} failed: {source}")]
    Migration {
        version: u32,
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    #[error("background task failed: {0}")]
    Task(String),
}

impl Error {
    /// Whether a client may retry the same request and expect it to work (OTLP "retryable").
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Overloaded { .. } | Error::ShuttingDown | Error::Task(_) => true,
            // Disk full, busy database, I/O errors: transient from the client's point of view.
            Error::Sqlite(_) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
