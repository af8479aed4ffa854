//! The built-in, dated price table and model-name matching.
//!
//! Prices are USD per million tokens. A model is matched after stripping a provider prefix
//! (`openai/`, `anthropic/`, `models/`) and a dated snapshot suffix (`-2024-07-18`, `-20241022`,
//! `@20241022`, `-latest`), then by the longest table name that prefixes it, so
//! `gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini` and never as `gpt-4o`.

use serde::{Deserialize, Serialize};

const BUILTIN: &str = include_str!("prices.toml");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub name: String,
    #[serde(default)]
    pub provider: String,
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cached_input: Option<f64>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PriceTableError {
    #[error("price table: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("price for `{model}`: {problem}")]
    Invalid {
        model: String,
        problem: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    as_of: String,
    #[serde(default)]
    model: Vec<ModelPrice>,
}

#[derive(Clone, Debug)]
pub struct PriceTable {
    pub as_of: String,
    /// (lower-case name, price), longest names first so prefix matching prefers the most specific.
    entries: Vec<(String, ModelPrice)>,
}

impl PriceTable {
    pub fn builtin() -> Result<Self, PriceTableError> {
        Self::from_toml(BUILTIN)
    }

    pub fn from_toml(text: &str) -> Result<Self, PriceTableError> {
        let file: PriceFile = toml::from_str(text)?;
        let mut table = PriceTable {
            as_of: file.as_of,
            entries: Vec::new(),
        };
        table.extend(file.model)?;
        Ok(table)
    }

    /// Adds or replaces prices (config overrides win over the built-in table).
    pub fn extend(&mut self, prices: Vec<ModelPrice>) -> Result<(), PriceTableError> {
        for p in prices {
            let valid = |v: f64| v.is_finite() && v >= 0.0;
            if !valid(p.input) || !valid(p.output) || !p.cached_input.is_none_or(valid) {
                return Err(PriceTableError::Invalid {
                    model: p.name.clone(),
                    problem: "prices must be finite and not negative",
                });
            }
            let mut names = vec![p.name.to_ascii_lowercase()];
            names.extend(p.aliases.iter().map(|a| a.to_ascii_lowercase()));
            for name in names {
                self.entries.retain(|(n, _)| *n != name);
                self.entries.push((name, p.clone()));
            }
        }
        self.entries
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &ModelPrice> {
        self.entries.iter().map(|(_, p)| p)
    }

    pub fn lookup(&self, model: &str) -> Option<&ModelPrice> {
        let lower = model.trim().to_ascii_lowercase();
        if lower.is_empty() {
            return None;
        }
        // Exact names first (including provider-qualified ones such as `meta-llama/llama-3.3-70b…`).
        if let Some((_, p)) = self.entries.iter().find(|(n, _)| *n == lower) {
            return Some(p);
        }
        let base = canonical_model_name(&lower);
        if let Some((_, p)) = self.entries.iter().find(|(n, _)| *n == base) {
            return Some(p);
        }
        self.entries
            .iter()
            .find(|(n, _)| base.starts_with(n.as_str()) && is_boundary(&base[n.len()..]))
            .map(|(_, p)| p)
    }

    /// Cost in USD, or `None` when the model is unpriced or no token counts were reported.
    pub fn cost(&self, model: &str, usage: crate::Usage) -> Option<f64> {
        let price = self.lookup(model)?;
        if usage.input_tokens.is_none() && usage.output_tokens.is_none() {
            return None;
        }
        let input = usage.input_tokens.unwrap_or(0).max(0) as f64;
        let output = usage.output_tokens.unwrap_or(0).max(0) as f64;
        let cached = (usage.cached_input_tokens.unwrap_or(0).max(0) as f64).min(input);
        let cached_price = price.cached_input.unwrap_or(price.input);
        Some(((input - cached) * price.input + cached * cached_price + output * price.output) / 1e6)
    }
}

/// A suffix after a matched prefix must start a new name segment, so `o1` does not price `o1x`.
fn is_boundary(rest: &str) -> bool {
    rest.is_empty() || rest.starts_with(['-', ':', '@', '.', '_'])
}

/// Strips provider prefixes and dated snapshot suffixes: `openai/gpt-4o-mini-2024-07-18` → `gpt-4o-mini`.
pub fn canonical_model_name(model: &str) -> String {
    let mut name = model.trim().to_ascii_lowercase();
    for prefix in [
        "openai/",
        "anthropic/",
        "google/",
        "models/",
        "mistralai/",
        "deepseek/",
        "x-ai/",
        "xai/",
        "azure/",
        "bedrock/",
        "vertex_ai/",
        "gemini/",
        "groq/",
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest.to_string();
        }
    }
    // Bedrock-style `anthropic.claude-3-5-sonnet-20241022-v2:0`.
    if let Some(rest) = name.strip_prefix("anthropic.") {
        name = rest.to_string();
    }
    if let Some(at) = name.find('@') {
        name.truncate(at);
    }
    loop {
        let before = name.len();
        for suffix in ["-latest", "-preview", ":0", "-v1", "-v2"] {
            if let Some(rest) = name.strip_suffix(suffix) {
                name = rest.to_string();
            }
        }
        strip_date_suffix(&mut name);
        if name.len() == before {
            break;
        }
    }
    name
}

fn strip_date_suffix(name: &mut String) {
    let bytes = name.as_bytes();
    let digits_at = |start: usize, n: usize| {
        bytes
            .get(start..start + n)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let len = bytes.len();
    // -YYYY-MM-DD
    if len > 11
        && bytes[len - 11] == b'-'
        && digits_at(len - 10, 4)
        && bytes[len - 6] == b'-'
        && digits_at(len - 5, 2)
        && bytes[len - 3] == b'-'
        && digits_at(len - 2, 2)
    {
        name.truncate(len - 11);
        return;
    }
    // -YYYYMMDD
    if len > 9 && bytes[len - 9] == b'-' && digits_at(len - 8, 8) {
        name.truncate(len - 9);
        return;
    }
    // -MMDD / -001 style revision tags (gemini-1.5-pro-002, gpt-4-0613)
    for n in [3usize, 4] {
        if len > n + 1 && bytes[len - n - 1] == b'-' && digits_at(len - n, n) {
            name.truncate(len - n - 1);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Usage;

    fn usage(i: i64, o: i64, c: Option<i64>) -> Usage {
        Usage {
            input_tokens: Some(i),
            output_tokens: Some(o),
            cached_input_tokens: c,
            reasoning_tokens: None,
        }
    }

    #[test]
    fn builtin_table_parses_and_is_dated() {
        let t = PriceTable::builtin().unwrap();
        assert!(t.len() > 40, "only {} prices", t.len());
        assert!(t.as_of.starts_with("20"));
    }

    #[test]
    fn snapshots_and_provider_prefixes_match_their_base_model() {
        let t = PriceTable::builtin().unwrap();
        assert_eq!(
            t.lookup("gpt-4o-mini-2024-07-18").unwrap().name,
            "gpt-4o-mini"
        );
        assert_eq!(t.lookup("openai/gpt-4o-mini").unwrap().name, "gpt-4o-mini");
        assert_eq!(t.lookup("gpt-4o-2024-08-06").unwrap().name, "gpt-4o");
        assert_eq!(
            t.lookup("anthropic/claude-3-5-sonnet-20241022")
                .unwrap()
                .name,
            "claude-3-5-sonnet"
        );
        assert_eq!(
            t.lookup("claude-sonnet-4-5").unwrap().name,
            "claude-sonnet-4-5"
        );
        assert_eq!(
            t.lookup("claude-sonnet-4-5@20250929").unwrap().name,
            "claude-sonnet-4-5"
        );
        assert!(t.lookup("my-private-finetune").is_none());
        assert!(t.lookup("mock-fail500").is_none());
        assert!(t.lookup("").is_none());
    }

    #[test]
    fn cost_charges_cached_tokens_at_the_cached_price() {
        let t = PriceTable::from_toml(
            "as_of = \"2026-01-01\"\n[[model]]\nname = \"m\"\ninput = 2.0\noutput = 8.0\ncached_input = 0.5\n",
        )
        .unwrap();
        let c = t
            .cost("m", usage(1_000_000, 500_000, Some(400_000)))
            .unwrap();
        assert!(
            (c - (0.6 * 2.0 + 0.4 * 0.5 + 0.5 * 8.0)).abs() < 1e-9,
            "{c}"
        );
        assert_eq!(t.cost("unknown", usage(1, 1, None)), None);
        assert_eq!(t.cost("m", Usage::default()), None);
    }

    #[test]
    fn overrides_replace_builtin_prices_and_reject_negative_ones() {
        let mut t = PriceTable::builtin().unwrap();
        t.extend(vec![ModelPrice {
            name: "gpt-4o-mini".into(),
            provider: "openai".into(),
            input: 1.0,
            output: 1.0,
            cached_input: None,
            aliases: vec![],
        }])
        .unwrap();
        assert_eq!(t.lookup("gpt-4o-mini-2024-07-18").unwrap().input, 1.0);
        let bad = ModelPrice {
            name: "x".into(),
            provider: String::new(),
            input: -1.0,
            output: 1.0,
            cached_input: None,
            aliases: vec![],
        };
        assert!(t.extend(vec![bad]).is_err());
    }
}
