//! API key authentication for OTLP (HTTP headers, gRPC metadata), the query API and the gateway's
//! virtual keys.
//!
//! Keys are looked up by hash and cached for a few seconds, so a revoked key stops working within
//! `CACHE_TTL` on every node without a lookup per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use vigil_model::ProjectId;
use vigil_store::{keys, ApiKeyInfo, GatewayKeyInfo, Scope, Store};

use crate::error::{ApiError, ErrorCode};

const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 10_000;

/// Key hash → what the key may do, and when that was looked up. Only found keys are kept, so a key
/// created a moment ago works at once.
struct KeyCache<V>(Mutex<HashMap<Vec<u8>, (V, Instant)>>);

impl<V: Clone> KeyCache<V> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    fn get(&self, hash: &[u8]) -> Option<V> {
        let cache = self.0.lock().ok()?;
        cache
            .get(hash)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(v, _)| v.clone())
    }

    fn put(&self, hash: Vec<u8>, value: V) {
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (value, Instant::now()));
        }
    }
}

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
    api_keys: Arc<KeyCache<ApiKeyInfo>>,
    gateway_keys: Arc<KeyCache<GatewayKeyInfo>>,
    /// A random token, known only to this process, that Vigil's own components (the LLM judge)
    /// use to call the gateway for a project. Never stored, never printed.
    internal: Arc<String>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, insecure_project: Option<ProjectId>) -> Self {
        Self {
            store,
            insecure_project,
            api_keys: Arc::new(KeyCache::new()),
            gateway_keys: Arc::new(KeyCache::new()),
            internal: Arc::new(format!(
                "vigil-internal-{}",
                vigil_model::TraceId::random().to_hex()
            )),
        }
    }

    /// The in-process token (see `internal`).
    pub fn internal_token(&self) -> &str {
        &self.internal
    }

    /// Whether `key` is the in-process token (compared in constant time).
    pub fn is_internal(&self, key: &str) -> bool {
        let (a, b) = (key.as_bytes(), self.internal.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        if let Some(info) = self.api_keys.get(&hash) {
            return Ok(Some(info));
        }
        let found = self.store.authenticate(key).await?;
        if let Some(info) = &found {
            self.api_keys.put(hash, info.clone());
        }
        Ok(found)
    }

    /// The live gateway virtual key with this secret (`gk_…`), cached like API keys.
    pub async fn gateway_key(&self, secret: &str) -> Result<Option<GatewayKeyInfo>, ApiError> {
        let hash = keys::hash(secret);
        if let Some(info) = self.gateway_keys.get(&hash) {
            return Ok(Some(info));
        }
        let found = self.store.gateway_key(secret).await?;
        if let Some(info) = &found {
            self.gateway_keys.put(hash, info.clone());
        }
        Ok(found)
    }
}
