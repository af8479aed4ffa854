//! Runtime guardrails for tool calls: a project's policy file, validated with clear errors, and
//! the decision for one proposed call (`allow`, `deny` with the rule and reason, or
//! `require_approval`).
//!
//! ```toml
//! default = "allow"            # for tools no rule names: allow | deny | require_approval
//! approval_timeout = "10m"     # an unanswered approval expires to deny
//! gateway_tool_calls = "flag"  # tool calls in model answers through the gateway: flag | block
//!
//! [limits]
//! max_calls_per_tool_per_trace = 25    # loop cap for every tool
//! max_cost_per_trace_usd = 2.0
//!
//! [[rules]]
//! name = "refunds"
//! tools = ["refund_*"]                 # globs: `*` and `?`
//! agents = ["support-agent"]           # optional; every agent when absent
//! environments = ["production"]        # optional
//! action = "allow"
//! when = ["amount <= 500", "currency in ['USD', 'EUR']"]
//! on_violation = "require_approval"    # or "deny" (the default)
//! max_calls_per_trace = 3
//! reason = "Refunds above $500 need a human"
//! ```

pub mod constraint;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use constraint::Constraint;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Deny,
    RequireApproval,
}

/// What the gateway does with a model's tool call that the policy denies (or that names a tool
/// the request did not declare): record it on the span, or refuse the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GatewayMode {
    #[default]
    Flag,
    Block,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default = "default_action")]
    default: Action,
    #[serde(default)]
    gateway_tool_calls: GatewayMode,
    #[serde(default)]
    approval_timeout: Option<String>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

fn default_action() -> Action {
    Action::Allow
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_calls_per_tool_per_trace: Option<u64>,
    pub max_cost_per_trace_usd: Option<f64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    tools: Vec<String>,
    #[serde(default)]
    agents: Vec<String>,
    #[serde(default)]
    environments: Vec<String>,
    action: Action,
    #[serde(default)]
    when: Vec<String>,
    #[serde(default)]
    on_violation: Option<Action>,
    #[serde(default)]
    max_calls_per_trace: Option<u64>,
    #[serde(default)]
    max_cost_per_trace_usd: Option<f64>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    tools: Vec<String>,
    agents: Vec<String>,
    environments: Vec<String>,
    pub action: Action,
    when: Vec<Constraint>,
    on_violation: Action,
    max_calls_per_trace: Option<u64>,
    max_cost_per_trace_usd: Option<f64>,
    reason: Option<String>,
}

/// A validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub default: Action,
    pub gateway_tool_calls: GatewayMode,
    pub approval_timeout: Duration,
    pub limits: Limits,
    pub rules: Vec<Rule>,
}

impl Default for Policy {
    /// No policy uploaded: everything is allowed (and still recorded).
    fn default() -> Self {
        Self {
            default: Action::Allow,
            gateway_tool_calls: GatewayMode::Flag,
            approval_timeout: Duration::from_secs(600),
            limits: Limits::default(),
            rules: Vec::new(),
        }
    }
}

/// A tool call an agent proposes.
#[derive(Clone, Debug, Default)]
pub struct ProposedCall<'a> {
    pub tool: &'a str,
    pub arguments: &'a Value,
    pub agent: Option<&'a str>,
    pub environment: Option<&'a str>,
}

/// What the trace has done so far, for loop caps and cost caps.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceSoFar {
    /// Earlier calls of this tool in this trace that were allowed or sent for approval.
    pub prior_calls: u64,
    pub cost_usd: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub action: Action,
    /// The rule that decided, or `None` for the policy default.
    pub rule: Option<String>,
    pub reason: String,
}

/// Parses `90s`, `10m`, `2h`; a plain number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], s[i..].trim()));
    let n: f64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like `30s`, `10m` or `2h`"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)")),
    };
    if !secs.is_finite() || !(0.0..=7.0 * 86_400.0).contains(&secs) {
        return Err(format!("`{s}` is out of range (up to 7 days)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Policy {
    /// Parses and validates a TOML policy, naming every mistake with where it is.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {msg}")
                }
                None => msg,
            }
        })?;
        let mut errors = Vec::new();
        let approval_timeout = match file.approval_timeout.as_deref().map(parse_duration) {
            None => Duration::from_secs(600),
            Some(Ok(d)) if d >= Duration::from_secs(1) => d,
            Some(Ok(_)) => {
                errors.push("approval_timeout: must be at least 1s".to_string());
                Duration::from_secs(600)
            }
            Some(Err(e)) => {
                errors.push(format!("approval_timeout: {e}"));
                Duration::from_secs(600)
            }
        };
        if let Some(c) = file.limits.max_cost_per_trace_usd {
            if !c.is_finite() || c < 0.0 {
                errors.push("limits.max_cost_per_trace_usd: must be a positive number".into());
            }
        }
        let mut rules = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, r) in file.rules.into_iter().enumerate() {
            let at = format!("rules[{i}] `{}`", r.name);
            if r.name.trim().is_empty() {
                errors.push(format!("rules[{i}]: `name` is empty"));
            } else if !names.insert(r.name.clone()) {
                errors.push(format!("{at}: another rule has this name"));
            }
            if r.tools.is_empty() {
                errors.push(format!(
                    "{at}: `tools` lists no tool (use [\"*\"] for every tool)"
                ));
            }
            if r.on_violation == Some(Action::Allow) {
                errors.push(format!(
                    "{at}: on_violation = \"allow\" would ignore the constraints; use deny or require_approval"
                ));
            }
            if r.max_cost_per_trace_usd
                .is_some_and(|c| !c.is_finite() || c < 0.0)
            {
                errors.push(format!(
                    "{at}: max_cost_per_trace_usd must be a positive number"
                ));
            }
            let mut when = Vec::new();
            for c in &r.when {
                match Constraint::parse(c) {
                    Ok(c) => when.push(c),
                    Err(e) => errors.push(format!("{at}: constraint `{c}`: {e}")),
                }
            }
            rules.push(Rule {
                name: r.name,
                tools: r.tools,
                agents: r.agents,
                environments: r.environments,
                action: r.action,
                when,
                on_violation: r.on_violation.unwrap_or(Action::Deny),
                max_calls_per_trace: r.max_calls_per_trace,
                max_cost_per_trace_usd: r.max_cost_per_trace_usd,
                reason: r.reason,
            });
        }
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        Ok(Self {
            default: file.default,
            gateway_tool_calls: file.gateway_tool_calls,
            approval_timeout,
            limits: file.limits,
            rules,
        })
    }

    /// The first rule that names `tool` at all (whatever its agent and environment): tools the
    /// policy names are the consequential ones, whose executions the audit trail records.
    pub fn rule_naming(&self, tool: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.tools.iter().any(|p| glob(p, tool)))
            .map(|r| r.name.as_str())
    }

    /// The first rule whose tool, agent and environment selectors all match. Environments compare
    /// without case. A call that does not say its agent or environment matches the selectors of
    /// rules that deny or need approval (a caller cannot dodge a rule by leaving a field out),
    /// and not those of rules that allow.
    fn rule_for(&self, call: &ProposedCall) -> Option<&Rule> {
        let matches = |r: &Rule, patterns: &[String], v: Option<&str>, fold: bool| match v {
            _ if patterns.is_empty() => true,
            None => r.action != Action::Allow,
            Some(v) if fold => {
                let v = v.to_ascii_lowercase();
                patterns.iter().any(|p| glob(&p.to_ascii_lowercase(), &v))
            }
            Some(v) => patterns.iter().any(|p| glob(p, v)),
        };
        self.rules.iter().find(|r| {
            r.tools.iter().any(|p| glob(p, call.tool))
                && matches(r, &r.agents, call.agent, false)
                && matches(r, &r.environments, call.environment, true)
        })
    }

    pub fn decide(&self, call: &ProposedCall, so_far: TraceSoFar) -> Decision {
        let rule = self.rule_for(call);
        let name = rule.map(|r| r.name.clone());
        let decision = |action, reason: String| Decision {
            action,
            rule: name.clone(),
            reason,
        };
        let Some(rule) = rule else {
            if let Some(d) = self.caps(None, call, so_far) {
                return d;
            }
            return decision(
                self.default,
                match self.default {
                    Action::Allow => "no rule names this tool; the policy default allows it".into(),
                    Action::Deny => format!(
                        "no rule allows `{}`; the policy default denies it",
                        call.tool
                    ),
                    Action::RequireApproval => format!(
                        "no rule names `{}`; the policy default requires a human's approval",
                        call.tool
                    ),
                },
            );
        };
        let because = |fallback: String| rule.reason.clone().unwrap_or(fallback);
        if rule.action == Action::Deny {
            return decision(
                Action::Deny,
                because(format!("rule `{}` denies `{}`", rule.name, call.tool)),
            );
        }
        if let Some(d) = self.caps(Some(rule), call, so_far) {
            return d;
        }
        for c in &rule.when {
            if let Some(why) = c.violation(call.arguments) {
                let prefix = rule
                    .reason
                    .as_deref()
                    .map(|r| format!("{r}: "))
                    .unwrap_or_default();
                return decision(rule.on_violation, format!("{prefix}{why}"));
            }
        }
        match rule.action {
            Action::RequireApproval => decision(
                Action::RequireApproval,
                because(format!(
                    "rule `{}` requires a human's approval for `{}`",
                    rule.name, call.tool
                )),
            ),
            _ => decision(Action::Allow, format!("allowed by rule `{}`", rule.name)),
        }
    }

    /// Loop and cost caps: a deny when this call would pass one.
    fn caps(
        &self,
        rule: Option<&Rule>,
        call: &ProposedCall,
        so_far: TraceSoFar,
    ) -> Option<Decision> {
        let name = rule.map(|r| r.name.clone());
        let max_calls = rule
            .and_then(|r| r.max_calls_per_trace)
            .or(self.limits.max_calls_per_tool_per_trace);
        if let Some(max) = max_calls {
            if so_far.prior_calls >= max {
                return Some(Decision {
                    action: Action::Deny,
                    rule: name.or(Some("limits.max_calls_per_tool_per_trace".into())),
                    reason: format!(
                        "loop cap: `{}` was already called {} times in this trace (limit {max})",
                        call.tool, so_far.prior_calls
                    ),
                });
            }
        }
        let max_cost = rule
            .and_then(|r| r.max_cost_per_trace_usd)
            .or(self.limits.max_cost_per_trace_usd);
        if let (Some(max), Some(cost)) = (max_cost, so_far.cost_usd) {
            if cost >= max {
                return Some(Decision {
                    action: Action::Deny,
                    rule: name.or(Some("limits.max_cost_per_trace_usd".into())),
                    reason: format!(
                        "cost cap: this trace has cost ${cost:.4}, at or above its limit of ${max:.2}"
                    ),
                });
            }
        }
        None
    }
}

/// Shell-style glob with `*` and `?`, iterative so no input can blow the stack.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const POLICY: &str = r#"
default = "deny"
approval_timeout = "2m"
[limits]
max_calls_per_tool_per_trace = 10
max_cost_per_trace_usd = 1.0

[[rules]]
name = "no-deletes-in-prod"
tools = ["delete_*"]
environments = ["production"]
action = "require_approval"
reason = "Deleting customer data needs a human"

[[rules]]
name = "refunds"
tools = ["refund_payment"]
action = "allow"
when = ["amount <= 500"]
on_violation = "require_approval"
max_calls_per_trace = 2

[[rules]]
name = "search"
tools = ["search_*", "lookup_order"]
action = "allow"

[[rules]]
name = "never-shell"
tools = ["run_shell"]
action = "deny"
"#;

    fn decide(tool: &str, args: Value, env: &str, so_far: TraceSoFar) -> Decision {
        let p = Policy::parse(POLICY).unwrap();
        p.decide(
            &ProposedCall {
                tool,
                arguments: &args,
                agent: Some("support-agent"),
                environment: Some(env),
            },
            so_far,
        )
    }

    #[test]
    fn decisions_follow_the_rules() {
        let none = TraceSoFar::default();
        let d = decide("delete_customer", json!({}), "production", none);
        assert_eq!(d.action, Action::RequireApproval);
        assert_eq!(d.rule.as_deref(), Some("no-deletes-in-prod"));
        // Not production: no rule matches, the default denies.
        assert_eq!(
            decide("delete_customer", json!({}), "staging", none).action,
            Action::Deny
        );
        assert_eq!(
            decide("refund_payment", json!({"amount": 20}), "production", none).action,
            Action::Allow
        );
        let big = decide("refund_payment", json!({"amount": 900}), "production", none);
        assert_eq!(big.action, Action::RequireApproval);
        assert!(big.reason.contains("`amount` is 900"), "{}", big.reason);
        let d = decide("run_shell", json!({}), "production", none);
        assert_eq!(
            (d.action, d.rule.as_deref()),
            (Action::Deny, Some("never-shell"))
        );
        assert_eq!(
            decide("search_docs", json!({}), "production", none).action,
            Action::Allow
        );
    }

    #[test]
    fn loop_and_cost_caps() {
        let looped = decide(
            "refund_payment",
            json!({"amount": 1}),
            "production",
            TraceSoFar {
                prior_calls: 2,
                cost_usd: None,
            },
        );
        assert_eq!(looped.action, Action::Deny);
        assert!(looped.reason.contains("loop cap"));
        let costly = decide(
            "search_docs",
            json!({}),
            "production",
            TraceSoFar {
                prior_calls: 0,
                cost_usd: Some(1.5),
            },
        );
        assert_eq!(costly.action, Action::Deny);
        assert!(costly.reason.contains("cost cap"));
    }

    #[test]
    fn invalid_policies_are_explained() {
        let e = Policy::parse("default = \"maybe\"").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = Policy::parse(
            "[[rules]]\nname = \"a\"\ntools = []\naction = \"allow\"\nwhen = [\"x <== 1\"]\n[[rules]]\nname = \"a\"\ntools = [\"t\"]\naction = \"deny\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("lists no tool")
                && e.contains("unknown operator")
                && e.contains("another rule"),
            "{e}"
        );
        let e = Policy::parse("approval_timeout = \"5 fortnights\"").unwrap_err();
        assert!(e.contains("unknown unit"), "{e}");
        assert!(Policy::parse("colour = 1")
            .unwrap_err()
            .contains("unknown field"));
    }

    #[test]
    fn globs() {
        assert!(glob("delete_*", "delete_customer"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("delete_*", "undelete_x"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parser_never_panics(text in "\\PC{0,400}") {
            let _ = Policy::parse(&text);
            let _ = Constraint::parse(&text);
        }

        #[test]
        fn constraint_grammar_never_panics(
            path in "[a-z_\\[\\]0-9.]{0,12}",
            op in prop::sample::select(vec!["<", "<=", ">", ">=", "==", "!=", "in", "not_in", "starts_with", "matches", "host_in", "<==", "=", ""]),
            lit in "[\\['\"a-z0-9,./:* \\]-]{0,24}",
            arg in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let src = format!("{path} {op} {lit}");
            if let Ok(c) = Constraint::parse(&src) {
                let s = String::from_utf8_lossy(&arg).to_string();
                let _ = c.violation(&json!({ path.clone(): s, "x": [1, {"y": null}] }));
                let _ = c.violation(&json!(null));
            }
        }

        #[test]
        fn decide_never_panics(
            tool in "\\PC{0,30}",
            amount in any::<f64>(),
            prior in any::<u64>(),
            cost in any::<f64>(),
        ) {
            let p = Policy::parse(POLICY).unwrap();
            let args = json!({"amount": if amount.is_finite() { json!(amount) } else { json!("nan") }});
            let _ = p.decide(
                &ProposedCall { tool: &tool, arguments: &args, agent: None, environment: Some("production") },
                TraceSoFar { prior_calls: prior, cost_usd: Some(cost) },
            );
        }
    }
}
