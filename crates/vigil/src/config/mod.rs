//! Configuration: defaults in code < `vigil.toml` < `VIGIL_<SECTION>__<KEY>` env vars < flags.
//!
//! Two phases: the raw `Config` (what the file and env say, every section with defaults) is
//! resolved into `Settings` (parsed sizes and durations, absolute paths, cross-field checks).

pub mod env_vars;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;
use vigil_model::ModelPrice;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub ingest: IngestConfig,
    pub retention: RetentionConfig,
    /// Extra or overriding model prices (USD per million tokens).
    pub prices: Vec<ModelPrice>,
    /// The LLM gateway: providers and model routes (see `vigil_gateway::config`).
    pub gateway: vigil_gateway::config::GatewayConfig,
    /// Redaction before storage: per-detector actions, custom rules, per-project overrides.
    pub redaction: vigil_governance::redact::RedactionConfig,
    pub audit: AuditConfig,
    /// Evaluators run on new traces (`[[evaluators]]`); more via `PUT /api/v1/evaluators/{name}`.
    pub evaluators: Vec<vigil_quality::ConfiguredEvaluator>,
    pub quality: QualityConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    /// How long after a trace first arrives evaluators judge it (late spans arrive meanwhile).
    pub settle: String,
    /// How long a job taken by a worker stays its own; a crashed worker's jobs run again after it.
    pub lease: String,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            settle: "10s".into(),
            lease: "60s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How often the head of each audit chain is signed (Ed25519).
    pub checkpoint_interval: String,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_interval: "10m".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// HTTP API, web UI and gateway.
    pub api_addr: String,
    /// OTLP/HTTP receiver.
    pub otlp_http_addr: String,
    /// OTLP/gRPC receiver.
    pub otlp_grpc_addr: String,
    /// Disable API key checks: every request acts on the default project. Local play only.
    pub insecure_local: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_addr: "127.0.0.1:7070".into(),
            otlp_http_addr: "127.0.0.1:4318".into(),
            otlp_grpc_addr: "127.0.0.1:4317".into(),
            insecure_local: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// `full`: every acknowledged write survives power loss. `normal`: survives a process crash;
    /// a power cut may lose the last commits.
    pub durability: String,
    /// Spans accepted but not yet committed before ingest answers 503.
    pub max_pending_spans: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./vigil-data"),
            durability: "full".into(),
            max_pending_spans: 200_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest OTLP/HTTP body, after decompression (`20MiB`).
    pub max_body_size: String,
    /// Request bodies held in memory at once across ingest requests (`256MiB`).
    pub max_inflight: String,
    /// Largest OTLP/gRPC message (`4MiB`).
    pub max_grpc_message: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_size: "20MiB".into(),
            max_inflight: "256MiB".into(),
            max_grpc_message: "4MiB".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Delete traces older than this (`30d`); empty keeps everything.
    pub max_age: String,
    /// Delete the oldest traces while the data is larger than this (`10GiB`); empty for no limit.
    pub max_size: String,
    /// How often `vigil serve` applies retention.
    pub gc_interval: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_age: "30d".into(),
            max_size: String::new(),
            gc_interval: "10m".into(),
        }
    }
}

/// Validated, resolved configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    pub otlp_grpc_addr: SocketAddr,
    pub insecure_local: bool,
    pub data_dir: PathBuf,
    pub durability: vigil_store::Durability,
    pub max_pending_spans: usize,
    pub max_body_bytes: usize,
    pub max_inflight_bytes: usize,
    pub max_grpc_message_bytes: usize,
    pub retention: vigil_store::Retention,
    pub gc_interval_secs: u64,
    pub prices: Vec<ModelPrice>,
    /// `None` when no gateway provider is configured (the gateway routes answer 404 then).
    pub gateway: Option<vigil_gateway::config::Resolved>,
    pub governance: vigil_governance::GovernanceSettings,
    pub evaluators: Vec<vigil_quality::ConfiguredEvaluator>,
    pub quality_settle: std::time::Duration,
    pub quality_lease: std::time::Duration,
}

impl Config {
    /// Reads the file (if any) and applies `VIGIL_*` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut root = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file `{}`", p.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("`{}` is not valid TOML", p.display()))?
            }
            None => toml::Table::new(),
        };
        apply_env_overrides(&mut root, env)?;
        let de = toml::Value::Table(root);
        serde_path_to_error::deserialize(de)
            .map_err(|e| anyhow::anyhow!("invalid config at `{}`: {}", e.path(), e.inner()))
    }

    pub fn resolve(&self) -> anyhow::Result<Settings> {
        let addr = |name: &str, v: &str| -> anyhow::Result<SocketAddr> {
            v.parse().with_context(|| {
                format!("`{name}` must be an address like 127.0.0.1:7070, got `{v}`")
            })
        };
        let durability = match self.storage.durability.as_str() {
            "full" => vigil_store::Durability::Full,
            "normal" => vigil_store::Durability::Normal,
            other => bail!("`storage.durability` must be `full` or `normal`, got `{other}`"),
        };
        let size = |name: &str, v: &str| {
            parse_size(v).with_context(|| format!("`{name}` must be a size like 20MiB, got `{v}`"))
        };
        let opt_size = |name: &str, v: &str| -> anyhow::Result<Option<u64>> {
            if v.trim().is_empty() {
                Ok(None)
            } else {
                size(name, v).map(Some)
            }
        };
        let opt_secs = |name: &str, v: &str| -> anyhow::Result<Option<u64>> {
            if v.trim().is_empty() {
                return Ok(None);
            }
            parse_duration(v)
                .map(Some)
                .with_context(|| format!("`{name}` must be a duration like 30d or 12h, got `{v}`"))
        };
        let data_dir = if self.storage.data_dir.is_absolute() {
            self.storage.data_dir.clone()
        } else {
            let joined = std::env::current_dir()
                .context("cannot read the current directory")?
                .join(&self.storage.data_dir);
            joined
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect()
        };
        let max_body_bytes =
            usize::try_from(size("ingest.max_body_size", &self.ingest.max_body_size)?)?;
        let max_inflight_bytes =
            usize::try_from(size("ingest.max_inflight", &self.ingest.max_inflight)?)?;
        if max_inflight_bytes < max_body_bytes {
            bail!("`ingest.max_inflight` ({max_inflight_bytes} bytes) must be at least `ingest.max_body_size` ({max_body_bytes} bytes)");
        }
        let mut check_prices = vigil_model::PriceTable::from_toml("as_of = \"config\"")?;
        check_prices
            .extend(self.prices.clone())
            .context("invalid `[[prices]]` entry")?;
        Ok(Settings {
            api_addr: addr("server.api_addr", &self.server.api_addr)?,
            otlp_http_addr: addr("server.otlp_http_addr", &self.server.otlp_http_addr)?,
            otlp_grpc_addr: addr("server.otlp_grpc_addr", &self.server.otlp_grpc_addr)?,
            insecure_local: self.server.insecure_local,
            data_dir,
            durability,
            max_pending_spans: self.storage.max_pending_spans.max(1),
            max_body_bytes,
            max_inflight_bytes,
            max_grpc_message_bytes: usize::try_from(size(
                "ingest.max_grpc_message",
                &self.ingest.max_grpc_message,
            )?)?,
            retention: vigil_store::Retention {
                max_age_seconds: opt_secs("retention.max_age", &self.retention.max_age)?,
                max_size_bytes: opt_size("retention.max_size", &self.retention.max_size)?,
            },
            gc_interval_secs: opt_secs("retention.gc_interval", &self.retention.gc_interval)?
                .unwrap_or(600)
                .max(1),
            prices: self.prices.clone(),
            governance: vigil_governance::GovernanceSettings {
                redaction: {
                    self.redaction
                        .validate()
                        .map_err(|e| anyhow::anyhow!("invalid `[redaction]`: {e}"))?;
                    self.redaction.clone()
                },
                redaction_secret: None,
                checkpoint_every: Some(std::time::Duration::from_secs(
                    opt_secs("audit.checkpoint_interval", &self.audit.checkpoint_interval)?
                        .unwrap_or(600)
                        .max(1),
                )),
            },
            evaluators: {
                for e in &self.evaluators {
                    e.def().validate().map_err(|err| {
                        anyhow::anyhow!("invalid `[[evaluators]]` `{}`: {err}", e.name)
                    })?;
                }
                self.evaluators.clone()
            },
            quality_settle: std::time::Duration::from_secs(
                opt_secs("quality.settle", &self.quality.settle)?.unwrap_or(10),
            ),
            quality_lease: std::time::Duration::from_secs(
                opt_secs("quality.lease", &self.quality.lease)?
                    .unwrap_or(60)
                    .max(1),
            ),
            gateway: if self.gateway.enabled && !self.gateway.providers.is_empty() {
                Some(
                    self.gateway
                        .resolve(|name| std::env::var(name).ok())
                        .map_err(|e| anyhow::anyhow!(e))?,
                )
            } else {
                None
            },
        })
    }
}

/// `VIGIL_SERVER__API_ADDR=…` → `server.api_addr = …`. Values are read as TOML scalars when they
/// parse as one (`true`, `42`), else as strings.
fn apply_env_overrides(
    root: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(env_vars::OVERRIDE_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once(env_vars::OVERRIDE_SEPARATOR) else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value.clone()));
        let table = root
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match table {
            toml::Value::Table(t) => {
                t.insert(key, parsed);
            }
            _ => bail!("`{name}` overrides `{section}`, which is not a section"),
        }
    }
    Ok(())
}

/// `20MiB`, `512KB`, `1GiB`, `1048576` → bytes.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().context("no number")?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "kib" => 1024,
        "mb" | "m" => 1_000_000,
        "mib" => 1024 * 1024,
        "gb" | "g" => 1_000_000_000,
        "gib" => 1024 * 1024 * 1024,
        other => bail!("unknown unit `{other}`"),
    };
    n.checked_mul(mult).context("size overflows")
}

/// `90s`, `15m`, `12h`, `30d` → seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<u64> {
    vigil_model::parse_duration_secs(s).context("expected a number and a unit (s, m, h, d, w)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_resolve_to_the_documented_ports() {
        let s = Config::default().resolve().unwrap();
        assert_eq!(s.api_addr.port(), 7070);
        assert_eq!(s.otlp_http_addr.port(), 4318);
        assert_eq!(s.otlp_grpc_addr.port(), 4317);
        assert!(
            s.api_addr.ip().is_loopback(),
            "binds loopback unless configured"
        );
        assert!(!s.insecure_local);
        assert_eq!(s.max_body_bytes, 20 * 1024 * 1024);
        assert!(s.data_dir.is_absolute() && s.data_dir.ends_with("vigil-data"));
    }

    #[test]
    fn env_overrides_file_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.toml");
        std::fs::write(&path, "[server]\napi_addr = \"127.0.0.1:9000\"\ninsecure_local = false\n[ingest]\nmax_body_size = \"1MiB\"\n").unwrap();
        let c = Config::load(
            Some(&path),
            env(&[
                ("VIGIL_SERVER__INSECURE_LOCAL", "true"),
                ("VIGIL_INGEST__MAX_BODY_SIZE", "2MiB"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        let s = c.resolve().unwrap();
        assert_eq!(s.api_addr.port(), 9000, "file beats default");
        assert!(s.insecure_local, "env beats file");
        assert_eq!(s.max_body_bytes, 2 * 1024 * 1024);

        std::fs::write(&path, "[server]\napi_adr = \"x\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("server") && err.contains("api_adr"), "{err}");
        let err = Config::load(None, env(&[("VIGIL_STORAGE__MAX_PENDING_SPANS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.max_pending_spans"), "{err}");
        let mut bad = Config::default();
        bad.storage.durability = "sometimes".into();
        assert!(bad
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("storage.durability"));
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("20MiB").unwrap(), 20 * 1024 * 1024);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_duration("30d").unwrap(), 30 * 86_400);
        assert!(parse_duration("30").is_err());
    }
}
