//! Vigil's canonical data model: what a trace and a span are, whatever instrumentation produced them.
//!
//! Architecture invariant: this crate does no IO (reading the clock, in `now_unix_nanos`, aside). Everything here is plain data and pure functions,
//! so the ingest, store, API and later the gateway and evaluators can share it without cycles.

mod ids;
pub mod keys;
pub mod lean;
mod price;
mod span;
mod time_fmt;

pub use ids::{parse_traceparent, IdError, ProjectId, SpanId, TraceId};
pub use price::{ModelPrice, PriceTable, PriceTableError};
pub use span::{
    Flag, FlagKind, LogEvent, Message, Span, SpanEvent, SpanKind, SpanLink, SpanStatus, ToolCall,
    Usage,
};
pub use time_fmt::{
    format_rfc3339_nanos, now_unix_nanos, parse_duration_secs, parse_rfc3339_nanos, rfc3339,
    rfc3339_opt,
};
