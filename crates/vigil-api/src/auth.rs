//! API key authentication for OTLP (HTTP headers, gRPC metadata) and the query API.
//!
//! Keys are looked up by hash and cached for a few seconds, so a revoked key stops working within
//! `CACHE_TTL` on every node without a lookup per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use vigil_model::ProjectId;
use vigil_store::{keys, ApiKeyInfo, Scope, Store};

use crate::error::{ApiError, ErrorCode};

const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 10_000;

/// Key hash → what the key may do, and when that was looked up.
type KeyCache = HashMap<Vec<u8>, (ApiKeyInfo, Instant)>;

/// Who is calling: the project every read and write is scoped to.
#[derive(Clone, Debug)]
pub struct Caller {
    pub project_id: ProjectId,
    pub key: Option<ApiKeyInfo>,
}

#[derive(Clone)]
pub struct Authenticator {
    store: Arc<dyn Store>,
    /// `Some(project)` when auth is disabled (`--insecure-local`): everything maps to it.
    insecure_project: Option<ProjectId>,
    cache: Arc<Mutex<KeyCache>>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, insecure_project: Option<ProjectId>) -> Self {
        Self {
            store,
            insecure_project,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn is_insecure(&self) -> bool {
        self.insecure_project.is_some()
    }

    /// Reads the key from `Authorization: Bearer …` or `x-vigil-api-key` (HTTP headers and gRPC
    /// metadata share these names).
    pub fn key_from_headers(headers: &HeaderMap) -> Option<String> {
        if let Some(v) = headers.get("x-vigil-api-key").and_then(|v| v.to_str().ok()) {
            return Some(v.trim().to_string());
        }
        let auth = headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let (scheme, token) = auth.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
    }

    pub async fn authenticate(&self, key: Option<&str>, scope: Scope) -> Result<Caller, ApiError> {
        if let Some(project) = &self.insecure_project {
            return Ok(Caller {
                project_id: project.clone(),
                key: None,
            });
        }
        let key = key
            .filter(|k| keys::is_well_formed(k))
            .ok_or_else(ApiError::unauthenticated)?;
        let info = self
            .lookup(key)
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        if !info.allows(scope) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this API key lacks the `{}` scope", scope.as_str()),
            ));
        }
        Ok(Caller {
            project_id: info.project_id.clone(),
            key: Some(info),
        })
    }

    async fn lookup(&self, key: &str) -> Result<Option<ApiKeyInfo>, ApiError> {
        let hash = keys::hash(key);
        if let Ok(cache) = self.cache.lock() {
            if let Some((info, at)) = cache.get(&hash) {
                if at.elapsed() < CACHE_TTL {
                    return Ok(Some(info.clone()));
                }
            }
        }
        let found = self.store.authenticate(key).await?;
        if let (Some(info), Ok(mut cache)) = (&found, self.cache.lock()) {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (info.clone(), Instant::now()));
        }
        Ok(found)
    }
}
