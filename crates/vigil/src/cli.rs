//! Command-line interface definitions (clap structs only; behaviour lives in `commands/`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "vigil", version, about = "See, judge and control what your AI agents do in production.", long_about = None)]
pub struct Cli {
    /// Config file (TOML). Default: ./vigil.toml when it exists. Env: VIGIL_CONFIG.
    #[arg(long, global = true, env = crate::config::env_vars::VIGIL_CONFIG, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Data directory holding the SQLite store. Default: ./vigil-data. Env: VIGIL_STORAGE__DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: OTLP/HTTP (4318), OTLP/gRPC (4317), API and UI (7070).
    Serve(ServeArgs),
    /// Fill the store with a realistic agent workload, then serve it.
    Demo(Box<DemoArgs>),
    /// List traces, newest first, with the same filters as `GET /api/v1/traces`.
    Traces(Box<TracesArgs>),
    /// Show one trace as a span tree with per-step latency bars, tokens and cost.
    Trace(TraceArgs),
    /// Import OTLP export files (protobuf `.pb` or JSON `.json`, optionally gzip).
    Import(ImportArgs),
    /// Apply retention now: delete traces past the age or size limits.
    Gc(GcArgs),
    /// Models seen, their usage and spend; `--unpriced` lists the models Vigil cannot price.
    Models(ModelsArgs),
    /// Manage projects.
    #[command(subcommand)]
    Projects(ProjectsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage local users of the web UI (name + password, access to chosen projects).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage the gateway's virtual keys (per team, user or app; allowed models, limits, budget).
    #[command(subcommand, name = "gateway-keys")]
    GatewayKeys(GatewayKeysCommand),
    /// The tamper-evident audit trail: verify it, export it, verify an exported bundle offline.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Compliance evidence (SOC 2, HIPAA, GDPR) from normal operation, as HTML and JSON.
    #[command(subcommand)]
    Compliance(ComplianceCommand),
    /// Tool-call guardrail policies and approvals.
    #[command(subcommand)]
    Guard(GuardCommand),
    /// Erase one end user's data (GDPR): their traces are deleted, audit entries about them lose
    /// their content (the chain stays verifiable) and a tombstone entry records the erasure.
    Erase(EraseArgs),
    /// Experiments and the CI gate: run a dataset through a model, compare with a baseline.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Validate the configuration and print the resolved settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// Address of the API, UI and gateway. Default 127.0.0.1:7070. Env: VIGIL_SERVER__API_ADDR.
    #[arg(long, value_name = "ADDR")]
    pub api_addr: Option<String>,
    /// Address of the OTLP/HTTP receiver. Default 127.0.0.1:4318. Env: VIGIL_SERVER__OTLP_HTTP_ADDR.
    #[arg(long, value_name = "ADDR")]
    pub otlp_http_addr: Option<String>,
    /// Address of the OTLP/gRPC receiver. Default 127.0.0.1:4317. Env: VIGIL_SERVER__OTLP_GRPC_ADDR.
    #[arg(long, value_name = "ADDR")]
    pub otlp_grpc_addr: Option<String>,
    /// Disable API keys: every request acts on the default project. For local play only.
    /// Env: VIGIL_SERVER__INSECURE_LOCAL=true.
    #[arg(long)]
    pub insecure_local: bool,
    /// Storage durability: `full` (acknowledged = survives power loss) or `normal` (survives a
    /// process crash). Env: VIGIL_STORAGE__DURABILITY.
    #[arg(long, value_name = "MODE")]
    pub durability: Option<String>,
    /// Largest OTLP body after decompression, e.g. 20MiB. Env: VIGIL_INGEST__MAX_BODY_SIZE.
    #[arg(long, value_name = "SIZE")]
    pub max_body_size: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of agent runs (traces) to generate.
    #[arg(long, default_value_t = 400)]
    pub traces: usize,
    /// Only fill the store; do not start the server afterwards.
    #[arg(long)]
    pub no_serve: bool,
    /// Seed of the generator, for reproducible data (default: a new seed each run, so running the
    /// demo again adds new runs instead of repeating the same ones).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Args, Default)]
pub struct TracesArgs {
    /// Project name or id (default: `default`).
    #[arg(long)]
    pub project: Option<String>,
    /// Earliest start: RFC 3339, Unix ns, or a duration ago such as `24h`.
    #[arg(long)]
    pub from: Option<String>,
    /// Latest start.
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long)]
    pub environment: Option<String>,
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub tool: Option<String>,
    /// ok, error or unset.
    #[arg(long)]
    pub status: Option<String>,
    /// Comma-separated: silent_tool_failure, hallucinated_tool.
    #[arg(long)]
    pub flags: Option<String>,
    #[arg(long)]
    pub min_duration_ms: Option<f64>,
    #[arg(long)]
    pub min_cost_usd: Option<f64>,
    #[arg(long)]
    pub session: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    /// Full-text search over inputs, outputs, tool arguments and results.
    #[arg(long, short)]
    pub q: Option<String>,
    /// start_time, duration, cost, tokens or spans.
    #[arg(long)]
    pub sort: Option<String>,
    /// asc or desc.
    #[arg(long)]
    pub order: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Trace id (32 hex characters).
    pub trace_id: String,
    #[arg(long)]
    pub project: Option<String>,
    /// Print the full trace as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// OTLP export files: `.pb` (protobuf) or `.json`; `.gz` suffix for gzip.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long)]
    pub project: Option<String>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Override `retention.max_age`, e.g. 30d.
    #[arg(long)]
    pub max_age: Option<String>,
    /// Override `retention.max_size`, e.g. 10GiB.
    #[arg(long)]
    pub max_size: Option<String>,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Only models with spans Vigil could not price.
    #[arg(long)]
    pub unpriced: bool,
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// List projects.
    List,
    /// Create a project and print an API key for it.
    Create { name: String },
}

#[derive(Debug, Subcommand)]
pub enum GatewayKeysCommand {
    /// Issue a virtual key (printed once; stored only as a hash).
    Create {
        #[arg(long, default_value = "default")]
        project: String,
        /// What the key is for (an app, a person).
        #[arg(long)]
        name: String,
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        user: Option<String>,
        /// Comma-separated model names the key may use (default: every model).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<u64>,
        /// Budget in USD.
        #[arg(long)]
        budget: Option<f64>,
        /// `month` (resets on the 1st, UTC) or `total`.
        #[arg(long, default_value = "month")]
        period: String,
    },
    /// List a project's virtual keys (never their secrets).
    List {
        #[arg(long, default_value = "default")]
        project: String,
    },
    /// Revoke a virtual key by id.
    Revoke {
        id: String,
        #[arg(long, default_value = "default")]
        project: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user. The password is read from the first line of standard input (or
    /// `VIGIL_USER_PASSWORD`), never from an argument, so it stays out of shell history.
    Create {
        name: String,
        /// A project (name or id) the user may see; repeat for several.
        #[arg(long = "project", default_value = "default")]
        projects: Vec<String>,
    },
    /// List users and their projects.
    List,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key (shown once).
    Create {
        #[arg(long, default_value = "default")]
        project: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Comma-separated scopes: ingest, read, approve (decide tool-call approvals), admin
        /// (guardrail policies, audit log, erasure).
        #[arg(long, default_value = "ingest,read")]
        scopes: String,
    },
    /// List the keys of a project (never their secrets).
    List {
        #[arg(long, default_value = "default")]
        project: String,
    },
    /// Revoke a key by id.
    Revoke {
        key_id: String,
        #[arg(long, default_value = "default")]
        project: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the chain(s) and name the first broken entry; exits 1 if any chain is broken. With
    /// `--bundle`, verify an exported bundle offline with the signer's public key instead.
    Verify {
        /// A project (name or id); default: every project with an audit chain.
        #[arg(long)]
        project: Option<String>,
        /// An exported bundle to verify offline (needs `--public-key`; no data directory used).
        #[arg(long, value_name = "FILE", requires = "public_key")]
        bundle: Option<PathBuf>,
        /// The Ed25519 public key (64 hex characters) or a file holding it.
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
        /// A signed head kept from earlier (`vigil audit head`): the chain must still contain it,
        /// which catches a truncated or recomputed chain.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Sign the chain's current head and write it (JSON) to keep outside Vigil, for a later
    /// `vigil audit verify --checkpoint FILE`.
    Head {
        #[arg(long, default_value = "default")]
        project: String,
        #[arg(long, short, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a project's chain, its signed checkpoints (a fresh one at the head) and a signature
    /// over the whole file, for a third party to verify offline.
    Export {
        #[arg(long, default_value = "default")]
        project: String,
        #[arg(long, short, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the public key that verifies this installation's checkpoints and bundles.
    PublicKey,
    /// Print a project's audit entries.
    Log {
        #[arg(long, default_value = "default")]
        project: String,
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum ComplianceCommand {
    /// Write `<framework>-report.html` and `.json`: access and admin events, approvals, guardrail
    /// violations, redaction statistics, retention, audit-chain verification, mapped to controls.
    Report {
        /// soc2, hipaa or gdpr.
        #[arg(long)]
        framework: String,
        /// Start of the period: RFC 3339, or a duration ago like `30d`. Default: 30 days ago.
        #[arg(long)]
        from: Option<String>,
        /// End of the period (default: now).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value = "default")]
        project: String,
        /// Directory to write the report into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum GuardCommand {
    /// Validate a policy file and make it the project's policy (recorded in the audit trail).
    SetPolicy {
        file: PathBuf,
        #[arg(long, default_value = "default")]
        project: String,
    },
    /// Validate a policy file without applying it.
    CheckPolicy { file: PathBuf },
    /// Print the project's current policy.
    ShowPolicy {
        #[arg(long, default_value = "default")]
        project: String,
    },
    /// List approvals (default: pending ones).
    Approvals {
        #[arg(long, default_value = "default")]
        project: String,
        /// pending, approved, denied, expired or all.
        #[arg(long, default_value = "pending")]
        status: String,
    },
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    /// The end user's id, as sent in `user.id` / `x-vigil-user`.
    #[arg(long)]
    pub user: String,
    #[arg(long, default_value = "default")]
    pub project: String,
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Run a dataset through a model (via the gateway), score it with the project's evaluators,
    /// store the run, and compare it with a baseline: prints a table, writes JUnit XML, exits 1
    /// on a significant regression with `--fail-on-regression`.
    Run(EvalRunArgs),
}

#[derive(Debug, Args)]
pub struct EvalRunArgs {
    /// Vigil's API and gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    pub api: String,
    /// A project key with the ingest and read scopes.
    #[arg(long, env = "VIGIL_API_KEY")]
    pub api_key: Option<String>,
    #[arg(long)]
    pub dataset: String,
    /// A model (or gateway alias).
    #[arg(long)]
    pub model: String,
    /// The prompt; `{input}` is replaced by each item's input.
    #[arg(long, default_value = "{input}")]
    pub prompt: String,
    /// Comma-separated evaluator names (default: every enabled evaluator of the project).
    #[arg(long, value_delimiter = ',')]
    pub evaluators: Vec<String>,
    /// A name for this run (default: `run-<time>`).
    #[arg(long)]
    pub name: Option<String>,
    /// The run to compare with (id or name; a name means its latest run).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Exit 1 when an evaluator's pass rate dropped by more than `--threshold`, significantly.
    #[arg(long)]
    pub fail_on_regression: bool,
    #[arg(long, default_value_t = 0.05)]
    pub threshold: f64,
    /// Significance level of McNemar's test.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Write the comparison as JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the resolved settings.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Replay realistic LLM spans over OTLP/HTTP protobuf and report spans/s, ingest-to-queryable lag and RSS.
    Ingest(BenchIngestArgs),
    /// Redaction cost on realistic spans, in process: decode + normalise vs redaction, per span.
    Redact(BenchRedactArgs),
    /// Guard-check latency: `POST /api/v1/guard/tool-call` against a running server.
    Guard(BenchGuardArgs),
    /// Rule-evaluator throughput on realistic traces, in process, on one core.
    Evaluate(BenchRedactArgs),
}

#[derive(Debug, Args)]
pub struct BenchRedactArgs {
    /// Spans to generate (the demo's agent workload; about one customer message in five carries
    /// an e-mail address, a card or a phone number).
    #[arg(long, default_value_t = 200_000)]
    pub spans: usize,
}

#[derive(Debug, Args)]
pub struct BenchGuardArgs {
    /// Query API base URL of the server under test.
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    pub api: String,
    /// API key with the ingest scope.
    #[arg(long, env = "VIGIL_API_KEY")]
    pub api_key: Option<String>,
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Concurrent clients (1 measures latency without queueing).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
}

#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// OTLP/HTTP base URL of the server under test.
    #[arg(long, default_value = "http://127.0.0.1:4318")]
    pub target: String,
    /// Query API base URL, for the ingest-to-queryable lag.
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    pub api: String,
    /// API key (ingest and read scopes).
    #[arg(long, env = "VIGIL_API_KEY")]
    pub api_key: Option<String>,
    /// Total spans to send.
    #[arg(long, default_value_t = 500_000)]
    pub spans: usize,
    /// Spans per export request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Concurrent exporters.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Process id of the server, to report its peak RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Stop after this many seconds even if not all spans were sent.
    #[arg(long, default_value_t = 300)]
    pub max_seconds: u64,
}
