//! The quality loop: evaluators that judge production traffic, the scores they and humans give,
//! and how well evaluators agree with humans.
//!
//! - [`rules`]: rule evaluators (content, JSON and JSON Schema, Vigil's quiet-failure flags,
//!   latency and cost thresholds, personal data in outputs, refusals).
//! - [`ingest`]: span-scoped rule evaluators judging spans as they are ingested, their scores
//!   committed with the spans (no queue, no read-back).
//! - [`runner`]: the online evaluator: finds new traces, queues a durable job per (evaluator,
//!   trace), runs due jobs and writes their scores, surviving restarts without double counting.
//! - [`failure_modes`]: failure modes tracked like bugs, moved through their lifecycle by evidence.
//! - [`annotation`]: the risk-ranked annotation queue, labels, agreement between annotators.
//! - [`experiment`]: scoring experiment runs and comparing two (paired, McNemar), JUnit XML.
//! - [`judge`]: LLM-as-judge through Vigil's own gateway.
//! - [`insights`]: candidate failure modes from failing traces, and the quality summary.
//! - [`alignment`]: MCC, precision, recall and agreement of an evaluator against human labels;
//!   Cohen's kappa between annotators.

pub mod alignment;
pub mod annotation;
pub mod experiment;
pub mod failure_modes;
pub mod ingest;
pub mod insights;
pub mod judge;
pub mod rules;
pub mod runner;

use serde::{Deserialize, Serialize};

pub use rules::{CompiledRule, Filter, Rule, Verdict};

/// What an evaluator scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One score per trace (an agent run).
    #[default]
    Trace,
    /// One score per span the filter selects.
    Span,
    /// One verdict on the whole session (the goal-level outcome) each time one of its traces is
    /// judged, over every turn so far; the latest is the session's current verdict.
    Session,
}

/// An evaluator as configured (`[[evaluators]]` in vigil.toml, or `PUT /api/v1/evaluators/{name}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluatorDef {
    #[serde(default)]
    pub scope: Scope,
    pub rule: Rule,
    /// Share of traces evaluated, 0..=1 (decided by trace id, so a re-run samples the same ones).
    #[serde(default = "one")]
    pub sample: f64,
    #[serde(default)]
    pub filter: Filter,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

impl EvaluatorDef {
    /// Every mistake in a definition, as one message.
    pub fn validate(&self) -> Result<CompiledRule, String> {
        if !(0.0..=1.0).contains(&self.sample) {
            return Err(format!(
                "`sample` must be between 0 and 1, got {}",
                self.sample
            ));
        }
        CompiledRule::new(self.rule.clone())
    }

    /// Whether this trace is in the sample (stable per trace id).
    pub fn samples(&self, trace_id: &vigil_model::TraceId) -> bool {
        if self.sample >= 1.0 {
            return true;
        }
        let b = trace_id.as_bytes();
        let x = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        (x as f64 / u64::MAX as f64) < self.sample
    }
}

/// `[[evaluators]]` in vigil.toml: a named evaluator of a project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredEvaluator {
    pub name: String,
    #[serde(default = "default_project")]
    pub project: String,
    #[serde(default)]
    pub scope: Scope,
    pub rule: Rule,
    #[serde(default = "one")]
    pub sample: f64,
    #[serde(default)]
    pub filter: Filter,
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl ConfiguredEvaluator {
    pub fn def(&self) -> EvaluatorDef {
        EvaluatorDef {
            scope: self.scope,
            rule: self.rule.clone(),
            sample: self.sample,
            filter: self.filter.clone(),
            enabled: self.enabled,
        }
    }
}

fn default_project() -> String {
    "default".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_parse_from_toml_and_validate() {
        let e: ConfiguredEvaluator = toml_like(
            r#"{"name": "answers-are-json", "scope": "trace", "sample": 0.5,
                "rule": {"type": "valid_json"}, "filter": {"agent": "support"}}"#,
        );
        assert_eq!(e.project, "default");
        let def = e.def();
        assert!(def.validate().is_ok());
        let bad = EvaluatorDef {
            sample: 2.0,
            ..def.clone()
        };
        assert!(bad.validate().err().unwrap().contains("sample"));
        // Sampling is stable per trace and close to the rate.
        let ids: Vec<vigil_model::TraceId> = (1..=2000u32)
            .map(|i| {
                vigil_model::TraceId::from_bytes(&{
                    let mut b = [0u8; 16];
                    b[..4].copy_from_slice(&i.to_be_bytes());
                    b[8..].copy_from_slice(
                        &(u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes(),
                    );
                    b
                })
                .unwrap()
            })
            .collect();
        let n = ids.iter().filter(|t| def.samples(t)).count();
        assert!((800..1200).contains(&n), "{n}");
        assert_eq!(ids.iter().filter(|t| def.samples(t)).count(), n);
    }

    fn toml_like(json: &str) -> ConfiguredEvaluator {
        serde_json::from_str(json).unwrap()
    }
}
