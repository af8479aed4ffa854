//! OTLP/HTTP: `POST /v1/traces` and `POST /v1/logs`, protobuf or JSON, optionally gzip.
//!
//! Order of checks: content type (415) → auth (401) → declared size (413, before reading) →
//! bounded read and decompression (413) → decode (400) → store (503 when full). Errors carry a
//! `google.rpc.Status` in the request's encoding, as the OTLP specification asks.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use vigil_ingest::otlp::{
    decode_logs, decode_traces, encode_response, gunzip_capped, DecompressError, Encoding,
};
use vigil_store::Scope;

use crate::auth::Authenticator;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// `google.rpc.Status`, the body of OTLP error responses.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

fn otlp_error(err: ApiError, encoding: Option<Encoding>) -> Response {
    let status = RpcStatus {
        code: err.code.grpc_code() as i32,
        message: err.message.clone(),
    };
    let encoding = encoding.unwrap_or(Encoding::Json);
    let body = encode_response(&status, encoding);
    let mut resp = (err.code.http_status(), body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    if let Some(secs) = err.retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

fn ok_response(body: Vec<u8>, encoding: Encoding) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    resp
}

enum Signal {
    Traces,
    Logs,
}

pub async fn export_traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(state, headers, body, Signal::Traces).await
}

pub async fn export_logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(state, headers, body, Signal::Logs).await
}

async fn export(state: AppState, headers: HeaderMap, body: Body, signal: Signal) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoding) = Encoding::from_content_type(content_type) else {
        let msg = format!("unsupported content type `{content_type}`: use `application/x-protobuf` or `application/json`");
        return otlp_error(ApiError::new(ErrorCode::UnsupportedMediaType, msg), None);
    };
    let key = Authenticator::key_from_headers(&headers);
    let caller = match state.auth.authenticate(key.as_deref(), Scope::Ingest).await {
        Ok(c) => c,
        Err(e) => return otlp_error(e, Some(encoding)),
    };
    let bytes = match read_body(&state, &headers, body).await {
        Ok(b) => b,
        Err(e) => return otlp_error(e, Some(encoding)),
    };
    let result = match signal {
        Signal::Traces => match decode_traces(&bytes.bytes, encoding) {
            Ok(req) => {
                drop(bytes);
                super::ingest_traces(&state, &caller, req)
                    .await
                    .map(|r| encode_response(&r, encoding))
            }
            Err(e) => Err(ApiError::bad_request(e.to_string())),
        },
        Signal::Logs => match decode_logs(&bytes.bytes, encoding) {
            Ok(req) => {
                drop(bytes);
                super::ingest_logs(&state, &caller, req)
                    .await
                    .map(|r| encode_response(&r, encoding))
            }
            Err(e) => Err(ApiError::bad_request(e.to_string())),
        },
    };
    match result {
        Ok(body) => ok_response(body, encoding),
        Err(e) => otlp_error(e, Some(encoding)),
    }
}

/// Bytes of an oversized body read and thrown away so the client can read our 413 instead of a
/// broken pipe; a body larger than this gets the connection closed under it.
const DRAIN_BUDGET: usize = 32 * 1024 * 1024;

async fn drain(mut stream: axum::body::BodyDataStream, budget: usize) {
    let mut seen = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > budget {
            break;
        }
    }
}

/// A request body in memory together with its share of the in-flight byte budget.
struct HeldBody {
    bytes: Vec<u8>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body exceeds the limit of {limit} bytes"),
    )
}

/// Reads the body under three bounds: the declared length, the bytes actually received, and the
/// size after gzip decompression. The in-flight budget is reserved before any byte is buffered.
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<HeldBody, ApiError> {
    let limit = state.limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        drain(body.into_data_stream(), DRAIN_BUDGET).await;
        return Err(too_large(limit));
    }
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e.is_empty() || e == "identity" => false,
        Some(e) if e == "gzip" => true,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("unsupported content encoding `{other}`: use `gzip` or none"),
            ));
        }
    };
    // Reserve what this body may occupy: the declared size, or the whole limit when unknown or
    // compressed (it may inflate up to the limit).
    let reserve = if gzip {
        limit
    } else {
        declared.unwrap_or(limit)
    };
    let kib = u32::try_from(reserve.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let permit = state
        .inflight
        .clone()
        .try_acquire_many_owned(kib)
        .map_err(|_| ApiError::unavailable("too many ingest requests in flight, retry later", 1))?;

    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = chunk
            .map_err(|e| ApiError::bad_request(format!("failed to read request body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            drop(buf);
            drain(stream, DRAIN_BUDGET).await;
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    if gzip {
        buf = gunzip_capped(&buf, limit).map_err(|e| match e {
            DecompressError::TooLarge { .. } => too_large(limit),
            DecompressError::Invalid(_) => ApiError::bad_request(e.to_string()),
        })?;
    }
    Ok(HeldBody {
        bytes: buf,
        _permit: permit,
    })
}
