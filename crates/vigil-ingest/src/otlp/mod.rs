//! OTLP decoding. The transports pick the `Encoding` from `Content-Type`; this module only decodes.

mod decompress;

pub use decompress::{gunzip_capped, DecompressError};
pub use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use prost::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// `None` for a content type OTLP/HTTP does not define (the caller answers 415).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Self::Protobuf),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid protobuf body: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("invalid OTLP/JSON body: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn decode_traces(
    body: &[u8],
    encoding: Encoding,
) -> Result<ExportTraceServiceRequest, DecodeError> {
    match encoding {
        Encoding::Protobuf => Ok(ExportTraceServiceRequest::decode(body)?),
        Encoding::Json => Ok(serde_json::from_slice(body)?),
    }
}

pub fn decode_logs(
    body: &[u8],
    encoding: Encoding,
) -> Result<ExportLogsServiceRequest, DecodeError> {
    match encoding {
        Encoding::Protobuf => Ok(ExportLogsServiceRequest::decode(body)?),
        Encoding::Json => Ok(serde_json::from_slice(body)?),
    }
}

/// Encodes a response in the request's encoding, as the OTLP spec requires.
pub fn encode_response<M: Message + serde::Serialize>(msg: &M, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => msg.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_map_to_encodings() {
        assert_eq!(
            Encoding::from_content_type("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_content_type("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }

    #[test]
    fn truncated_protobuf_and_string_enums_are_decode_errors() {
        let full = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/otlp/otel-genai-openai.pb"
        ))
        .unwrap();
        assert!(decode_traces(&full, Encoding::Protobuf).is_ok());
        assert!(decode_traces(&full[..full.len() / 2], Encoding::Protobuf).is_err());
        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","name":"x","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
        assert!(decode_traces(json.as_bytes(), Encoding::Json).is_err());
        let ok = json
            .replace("\"SPAN_KIND_CLIENT\"", "3")
            .replace("\"name\"", "\"fooBar\":1,\"name\"");
        let req = decode_traces(ok.as_bytes(), Encoding::Json).unwrap();
        assert_eq!(
            req.resource_spans[0].scope_spans[0].spans[0].trace_id[0],
            0x5b
        );
    }
}
