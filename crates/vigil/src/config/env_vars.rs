//! Every environment variable Vigil reads, in one place.

/// Path of the config file (default: `./vigil.toml` when it exists).
pub const VIGIL_CONFIG: &str = "VIGIL_CONFIG";
/// Log filter in `tracing` syntax, e.g. `info,vigil_api=debug`.
pub const VIGIL_LOG: &str = "VIGIL_LOG";
/// Password for `vigil users create`, instead of reading it from standard input.
pub const VIGIL_USER_PASSWORD: &str = "VIGIL_USER_PASSWORD";
/// Prefix of config overrides: `VIGIL_<SECTION>__<KEY>`, e.g. `VIGIL_SERVER__API_ADDR=0.0.0.0:7070`.
pub const OVERRIDE_PREFIX: &str = "VIGIL_";
/// Separator between section and key in override variables.
pub const OVERRIDE_SEPARATOR: &str = "__";
