//! The two wire formats the gateway speaks, and errors in each: a client always gets an error its
//! SDK can parse (`openai.RateLimitError`, `anthropic.RateLimitError`, …).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFormat {
    OpenAi,
    Anthropic,
}

/// A failure to answer, in the caller's format.
#[derive(Debug, Clone)]
pub struct GatewayError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
    pub format: ApiFormat,
}

impl GatewayError {
    pub fn new(format: ApiFormat, status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            format,
        }
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    fn openai_type(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 404 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            _ => "api_error",
        }
    }

    fn anthropic_type(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            529 | 503 => "overloaded_error",
            _ => "api_error",
        }
    }

    pub fn body(&self) -> serde_json::Value {
        match self.format {
            ApiFormat::OpenAi => json!({
                "error": {"message": self.message, "type": self.openai_type(), "param": null, "code": null}
            }),
            ApiFormat::Anthropic => json!({
                "type": "error",
                "error": {"type": self.anthropic_type(), "message": self.message}
            }),
        }
    }

    /// The same error as one server-sent event, for a failure after a stream began.
    pub fn sse_event(&self) -> String {
        match self.format {
            ApiFormat::OpenAi => format!("data: {}\n\n", self.body()),
            ApiFormat::Anthropic => format!("event: error\ndata: {}\n\n", self.body()),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_take_the_callers_shape() {
        let e = GatewayError::new(
            ApiFormat::Anthropic,
            StatusCode::TOO_MANY_REQUESTS,
            "slow down",
        );
        assert_eq!(e.body()["type"], "error");
        assert_eq!(e.body()["error"]["type"], "rate_limit_error");
        let e = GatewayError::new(
            ApiFormat::OpenAi,
            StatusCode::BAD_GATEWAY,
            "upstream sent garbage",
        );
        assert_eq!(e.body()["error"]["type"], "api_error");
        assert!(e.sse_event().starts_with("data: {"));
    }
}
