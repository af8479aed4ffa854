//! Trace, span and project identifiers.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("`{kind}` must be {expected} bytes, got {got}")]
    WrongLength {
        kind: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("`{kind}` must not be all zeros")]
    AllZero { kind: &'static str },
    #[error("`{kind}` is not valid hex")]
    NotHex { kind: &'static str },
}

macro_rules! byte_id {
    ($name:ident, $len:expr, $label:expr) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Accepts exactly the OTLP byte form; all-zero ids are invalid per the OTLP spec.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
                let arr: [u8; $len] = bytes.try_into().map_err(|_| IdError::WrongLength {
                    kind: $label,
                    expected: $len,
                    got: bytes.len(),
                })?;
                if arr.iter().all(|b| *b == 0) {
                    return Err(IdError::AllZero { kind: $label });
                }
                Ok(Self(arr))
            }

            /// Hex in either case, as OTLP/JSON allows.
            pub fn from_hex(s: &str) -> Result<Self, IdError> {
                let bytes = hex::decode(s).map_err(|_| IdError::NotHex { kind: $label })?;
                Self::from_bytes(&bytes)
            }

            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        // Hex in JSON; the raw bytes in binary formats (the store's), which also accept hex.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct IdVisitor;
                impl<'de> serde::de::Visitor<'de> for IdVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {} as hex or bytes", $label)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_hex(v).map_err(E::custom)
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<$name, E> {
                        $name::from_bytes(v).map_err(E::custom)
                    }
                }
                if d.is_human_readable() {
                    d.deserialize_str(IdVisitor)
                } else {
                    d.deserialize_bytes(IdVisitor)
                }
            }
        }
    };
}

byte_id!(TraceId, 16, "trace_id");
byte_id!(SpanId, 8, "span_id");

impl TraceId {
    /// A fresh random id, for traces Vigil starts itself (gateway calls, guard checks).
    pub fn random() -> Self {
        let mut b: [u8; 16] = rand::random();
        b[0] |= 1; // never all zeros
        Self(b)
    }
}

impl SpanId {
    pub fn random() -> Self {
        let mut b: [u8; 8] = rand::random();
        b[0] |= 1;
        Self(b)
    }
}

/// W3C `traceparent`: `00-<trace id>-<parent span id>-<flags>` (any flags byte).
pub fn parse_traceparent(v: &str) -> Option<(TraceId, SpanId)> {
    let mut parts = v.trim().split('-');
    let (_version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
    Some((TraceId::from_hex(trace).ok()?, SpanId::from_hex(span).ok()?))
}

/// A project owns every stored row. Ids are short opaque strings (`default`, `p_3f9a…`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct ProjectId(pub String);

impl ProjectId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_accepts_either_hex_case_and_rejects_bad_ids() {
        let lower = TraceId::from_hex("9114ec57671e78a04b995b80cbecd2ac").unwrap();
        let upper = TraceId::from_hex("9114EC57671E78A04B995B80CBECD2AC").unwrap();
        assert_eq!(lower, upper);
        assert_eq!(
            TraceId::from_bytes(&[1; 8]),
            Err(IdError::WrongLength {
                kind: "trace_id",
                expected: 16,
                got: 8
            })
        );
        assert_eq!(
            SpanId::from_bytes(&[0; 8]),
            Err(IdError::AllZero { kind: "span_id" })
        );
        assert_eq!(
            SpanId::from_hex("zz"),
            Err(IdError::NotHex { kind: "span_id" })
        );
    }
}
