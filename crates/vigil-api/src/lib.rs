//! The network edge: OTLP/HTTP and OTLP/gRPC receivers and the JSON query API.
//!
//! Architecture invariant: only this crate knows HTTP status codes and gRPC codes; everything
//! below it returns typed errors that `error::ApiError` maps once.

pub mod auth;
pub mod error;
pub mod governance_api;
pub mod otlp;
pub mod params;
pub mod quality_api;
pub mod query_api;
pub mod router;
pub mod state;

pub use auth::{Authenticator, Caller};
pub use error::{ApiError, ErrorCode};
pub use router::{api_router, edge, otlp_router};
pub use state::{AppState, EdgeLimits};
