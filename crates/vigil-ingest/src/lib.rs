//! Ingest: turn OTLP export bodies into canonical spans.
//!
//! Flow: `otlp::decode_*` (bytes → OTLP messages, protobuf or JSON, gzip capped) →
//! `normalize::Normalizer` (OTLP span → canonical `Span`, convention by convention) → flags.
//! Architecture invariant: no IO here; the transport and the store live elsewhere.

pub mod normalize;
pub mod otlp;

pub use normalize::{LogEvent, NormalizeOutcome, Normalizer, RejectedSpan};
pub use otlp::{DecodeError, Encoding};
