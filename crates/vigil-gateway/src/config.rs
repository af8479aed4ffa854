//! `[gateway]` in `vigil.toml`: upstream providers and the model aliases routed across them.
//!
//! ```toml
//! [[gateway.providers]]
//! name = "openai"
//! kind = "openai"                  # openai | anthropic | azure | gemini | openai_compatible
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"   # or api_key_file = "/run/secrets/openai"
//!
//! [[gateway.models]]
//! name = "fast"                    # what clients put in `model`
//! strategy = "ordered"             # ordered (failover) | weighted | least_latency
//! targets = [{ provider = "openai", model = "gpt-4o-mini" },
//!            { provider = "anthropic", model = "claude-haiku-4-5" }]
//! ```
//! A request for a model that is no alias goes to `provider/model` when written so, else to the
//! first provider, unchanged.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub enabled: bool,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelRoute>,
    /// Attempts per target after the first, on 429, 5xx and connection errors.
    pub retries: u32,
    /// First backoff; doubles per retry, with full jitter, capped by `backoff_max`.
    pub backoff_base: String,
    pub backoff_max: String,
    pub timeouts: Timeouts,
    pub circuit: CircuitConfig,
    /// Largest request body accepted (`8MiB`).
    pub max_body_size: String,
    pub cache: crate::cache::CacheConfig,
    /// Rate limits and budgets per team, user or model (keys carry their own).
    pub limits: Vec<crate::limits::LimitRule>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            providers: Vec::new(),
            models: Vec::new(),
            retries: 2,
            backoff_base: "200ms".into(),
            backoff_max: "5s".into(),
            timeouts: Timeouts::default(),
            circuit: CircuitConfig::default(),
            max_body_size: "8MiB".into(),
            cache: crate::cache::CacheConfig::default(),
            limits: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Azure,
    /// Google Gemini through its OpenAI-compatible endpoint.
    Gemini,
    /// vLLM, Ollama, Together, Groq, OpenRouter…
    OpenaiCompatible,
}

impl ProviderKind {
    /// The wire format the provider speaks.
    pub fn format(self) -> crate::format::ApiFormat {
        match self {
            ProviderKind::Anthropic => crate::format::ApiFormat::Anthropic,
            _ => crate::format::ApiFormat::OpenAi,
        }
    }

    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Openai => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com/v1"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta/openai"),
            ProviderKind::Azure | ProviderKind::OpenaiCompatible => None,
        }
    }

    /// The name the span's `provider` gets (GenAI `gen_ai.provider.name` values).
    pub fn span_name(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Azure => "azure.ai.openai",
            ProviderKind::Gemini => "gcp.gemini",
            ProviderKind::OpenaiCompatible => "openai_compatible",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable holding the provider's API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the provider's API key (trailing whitespace ignored).
    #[serde(default)]
    pub api_key_file: Option<String>,
    /// Azure OpenAI `api-version`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Timeouts for this provider's targets, overriding `[gateway.timeouts]`.
    #[serde(default)]
    pub timeouts: Option<Timeouts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Targets in order; the next only when one fails (failover).
    #[default]
    Ordered,
    /// Spread by `weight`; the others are the failover order.
    Weighted,
    /// The target with the lowest recent latency first.
    LeastLatency,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRoute {
    pub name: String,
    #[serde(default)]
    pub strategy: Strategy,
    pub targets: Vec<TargetConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub provider: String,
    pub model: String,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub connect: String,
    /// Until the response headers (non-streaming) or the first streamed byte.
    pub first_token: String,
    pub total: String,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: "5s".into(),
            first_token: "60s".into(),
            total: "600s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitConfig {
    /// Failures within `window` that open a target's circuit.
    pub failures: u32,
    pub window: String,
    /// How long an open circuit refuses calls before letting one probe through (half-open).
    pub open_for: String,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            window: "30s".into(),
            open_for: "30s".into(),
        }
    }
}

/// `250ms`, `5s`, `2m`, `1h` → a duration.
pub fn parse_duration(what: &str, s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("`{what}` needs a unit (ms, s, m, h), got `{s}`"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{what}` is not a duration: `{s}`"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{what}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    if !(0.0..=86_400.0 * 7.0).contains(&secs) {
        return Err(format!("`{what}` is out of range: `{s}`"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A provider with its key read and its URL settled.
#[derive(Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// Never logged, never returned by any API (`Debug` prints it redacted).
    pub api_key: Option<String>,
    pub api_version: Option<String>,
    pub timeouts: ResolvedTimeouts,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ResolvedTimeouts {
    pub connect: Duration,
    pub first_token: Duration,
    pub total: Duration,
}

fn resolve_timeouts(t: &Timeouts) -> Result<ResolvedTimeouts, String> {
    Ok(ResolvedTimeouts {
        connect: parse_duration("timeouts.connect", &t.connect)?,
        first_token: parse_duration("timeouts.first_token", &t.first_token)?,
        total: parse_duration("timeouts.total", &t.total)?,
    })
}

/// Everything the gateway runs with, validated.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Shared, so that routing a request hands out references, not copies of URLs and keys.
    pub providers: Vec<std::sync::Arc<Provider>>,
    pub routes: HashMap<String, ModelRoute>,
    pub retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub circuit_failures: u32,
    pub circuit_window: Duration,
    pub circuit_open_for: Duration,
    pub max_body_bytes: usize,
    pub cache_enabled: bool,
    pub cache_ttl: Duration,
    pub cache_max_bytes: usize,
    pub semantic: Option<crate::cache::SemanticConfig>,
    pub limits: Vec<crate::limits::LimitRule>,
}

impl GatewayConfig {
    /// Checks the configuration and reads provider keys. `env` looks variables up (injected so tests
    /// need not touch the process environment).
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Resolved, String> {
        let default_timeouts = resolve_timeouts(&self.timeouts)?;
        let mut providers: Vec<std::sync::Arc<Provider>> = Vec::new();
        for p in &self.providers {
            if providers.iter().any(|q| q.name == p.name) {
                return Err(format!("gateway provider `{}` is defined twice", p.name));
            }
            let base_url = p
                .base_url
                .clone()
                .or_else(|| p.kind.default_base_url().map(str::to_string))
                .ok_or_else(|| format!("gateway provider `{}` needs a `base_url`", p.name))?;
            let api_key = match (&p.api_key_env, &p.api_key_file) {
                (Some(var), _) => Some(env(var).ok_or_else(|| {
                    format!(
                        "gateway provider `{}`: environment variable `{var}` is not set",
                        p.name
                    )
                })?),
                (None, Some(file)) => Some(
                    std::fs::read_to_string(file)
                        .map_err(|e| {
                            format!("gateway provider `{}`: cannot read `{file}`: {e}", p.name)
                        })?
                        .trim()
                        .to_string(),
                ),
                (None, None) => None,
            };
            if p.kind == ProviderKind::Azure && p.api_version.is_none() {
                return Err(format!(
                    "gateway provider `{}` (azure) needs `api_version`",
                    p.name
                ));
            }
            providers.push(std::sync::Arc::new(Provider {
                name: p.name.clone(),
                kind: p.kind,
                base_url: base_url.trim_end_matches('/').to_string(),
                api_key,
                api_version: p.api_version.clone(),
                timeouts: match &p.timeouts {
                    Some(t) => resolve_timeouts(t)?,
                    None => default_timeouts,
                },
            }));
        }
        let mut routes = HashMap::new();
        for m in &self.models {
            if m.targets.is_empty() {
                return Err(format!("gateway model `{}` has no targets", m.name));
            }
            for t in &m.targets {
                if !providers.iter().any(|p| p.name == t.provider) {
                    return Err(format!(
                        "gateway model `{}` targets unknown provider `{}`",
                        m.name, t.provider
                    ));
                }
            }
            if routes.insert(m.name.clone(), m.clone()).is_some() {
                return Err(format!("gateway model `{}` is defined twice", m.name));
            }
        }
        let max_body_bytes = parse_size(&self.max_body_size).ok_or_else(|| {
            format!(
                "`gateway.max_body_size` is not a size: `{}`",
                self.max_body_size
            )
        })?;
        Ok(Resolved {
            providers,
            routes,
            retries: self.retries.min(10),
            backoff_base: parse_duration("gateway.backoff_base", &self.backoff_base)?,
            backoff_max: parse_duration("gateway.backoff_max", &self.backoff_max)?,
            circuit_failures: self.circuit.failures.max(1),
            circuit_window: parse_duration("gateway.circuit.window", &self.circuit.window)?,
            circuit_open_for: parse_duration("gateway.circuit.open_for", &self.circuit.open_for)?,
            max_body_bytes,
            cache_enabled: self.cache.enabled,
            cache_ttl: parse_duration("gateway.cache.ttl", &self.cache.ttl)?,
            cache_max_bytes: parse_size(&self.cache.max_size).ok_or_else(|| {
                format!(
                    "`gateway.cache.max_size` is not a size: `{}`",
                    self.cache.max_size
                )
            })?,
            semantic: self.cache.semantic.clone(),
            limits: {
                for l in &self.limits {
                    if !matches!(l.scope.as_str(), "team" | "user" | "model") {
                        return Err(format!(
                            "gateway limit scope must be team, user or model, got `{}`",
                            l.scope
                        ));
                    }
                    if !matches!(l.budget_period.as_str(), "month" | "total") {
                        return Err(format!(
                            "gateway limit `budget_period` must be month or total, got `{}`",
                            l.budget_period
                        ));
                    }
                }
                self.limits.clone()
            },
        })
    }
}

fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "k" => 1024,
        "MiB" | "MB" | "M" => 1024 * 1024,
        "GiB" | "GB" | "G" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_text: &str) -> GatewayConfig {
        #[derive(Deserialize)]
        struct Wrap {
            gateway: GatewayConfig,
        }
        toml::from_str::<Wrap>(toml_text).unwrap().gateway
    }

    #[test]
    fn resolves_keys_from_env_and_checks_references() {
        let c = cfg(r#"
            [[gateway.providers]]
            name = "oai"
            kind = "openai"
            api_key_env = "K"
            [[gateway.models]]
            name = "fast"
            targets = [{ provider = "oai", model = "gpt-4o-mini" }]
        "#);
        let r = c
            .resolve(|k| (k == "K").then(|| "sk-secret".to_string()))
            .unwrap();
        assert_eq!(r.providers[0].base_url, "https://api.openai.com/v1");
        assert!(!format!("{:?}", r.providers[0]).contains("sk-secret"));
        assert!(c.resolve(|_| None).unwrap_err().contains("`K` is not set"));
        let bad = cfg(r#"
            [[gateway.models]]
            name = "fast"
            targets = [{ provider = "nope", model = "x" }]
        "#);
        assert!(bad
            .resolve(|_| None)
            .unwrap_err()
            .contains("unknown provider"));
        assert_eq!(
            parse_duration("t", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert!(parse_duration("t", "5").is_err());
    }
}
