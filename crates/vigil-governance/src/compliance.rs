//! Compliance evidence from normal operation: access and admin events, approvals and denials,
//! guardrail violations, redaction statistics, retention settings and the audit-chain check, for
//! one project and period, mapped to the controls of SOC 2, HIPAA or GDPR. Written as JSON (for
//! tools) and HTML (for auditors). The report states evidence; it does not claim certification.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};
use vigil_model::{format_rfc3339_nanos, ProjectId};
use vigil_store::{AuditRow, Store};

use crate::audit::{AuditLog, VerifyReport};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    Soc2,
    Hipaa,
    Gdpr,
}

impl Framework {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "soc2" => Some(Self::Soc2),
            "hipaa" => Some(Self::Hipaa),
            "gdpr" => Some(Self::Gdpr),
            _ => None,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Soc2 => "SOC 2 (Trust Services Criteria 2017)",
            Self::Hipaa => "HIPAA Security Rule (45 CFR Part 164)",
            Self::Gdpr => "GDPR (Regulation (EU) 2016/679)",
        }
    }

    /// (control id, title, evidence categories that support it).
    fn controls(self) -> &'static [(&'static str, &'static str, &'static [Category])] {
        use Category::*;
        match self {
            Self::Soc2 => &[
                (
                    "CC6.1",
                    "Logical access security: only authenticated keys and users reach data",
                    &[Access, Admin],
                ),
                (
                    "CC6.2",
                    "Access is provisioned and removed (keys and users issued, revoked)",
                    &[Admin],
                ),
                (
                    "CC6.3",
                    "Least privilege for automated agents: tool-call guardrails",
                    &[Guardrail, Approvals],
                ),
                (
                    "CC7.2",
                    "Monitoring of system components for anomalies and policy violations",
                    &[Guardrail, AuditChain],
                ),
                (
                    "CC7.3",
                    "Security events are evaluated: human decisions on risky actions",
                    &[Approvals],
                ),
                (
                    "CC8.1",
                    "Changes to policies and configuration are authorised and recorded",
                    &[Changes],
                ),
                (
                    "C1.1",
                    "Confidential information is protected: redaction before storage",
                    &[Redaction],
                ),
                (
                    "C1.2",
                    "Confidential information is disposed of: retention and erasure",
                    &[Retention, Deletions],
                ),
            ],
            Self::Hipaa => &[
                ("164.312(a)(1)", "Access control", &[Access, Admin]),
                (
                    "164.312(b)",
                    "Audit controls: activity is recorded and examinable",
                    &[AuditChain, Guardrail],
                ),
                (
                    "164.312(c)(1)",
                    "Integrity: records are protected from improper alteration",
                    &[AuditChain],
                ),
                ("164.312(d)", "Person or entity authentication", &[Access]),
                (
                    "164.308(a)(1)(ii)(D)",
                    "Information system activity review",
                    &[Guardrail, Approvals],
                ),
                (
                    "164.308(a)(4)",
                    "Information access management (keys, users)",
                    &[Admin, Changes],
                ),
                (
                    "164.514(b)",
                    "De-identification and minimum necessary: identifiers redacted",
                    &[Redaction],
                ),
                (
                    "164.316(b)(2)",
                    "Retention of documentation and disposal",
                    &[Retention, Deletions],
                ),
            ],
            Self::Gdpr => &[
                (
                    "Art. 5(1)(c)",
                    "Data minimisation: personal data redacted before storage",
                    &[Redaction],
                ),
                (
                    "Art. 5(1)(e)",
                    "Storage limitation: retention settings",
                    &[Retention],
                ),
                (
                    "Art. 17",
                    "Right to erasure: erasures performed with tombstones",
                    &[Deletions],
                ),
                (
                    "Art. 22(3)",
                    "Human intervention in automated decisions",
                    &[Approvals],
                ),
                (
                    "Art. 25",
                    "Data protection by design and by default",
                    &[Redaction, Guardrail],
                ),
                (
                    "Art. 30",
                    "Records of processing activities",
                    &[AuditChain, Changes],
                ),
                (
                    "Art. 32",
                    "Security of processing: access control and integrity",
                    &[Access, Admin, AuditChain],
                ),
            ],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Access,
    Admin,
    Changes,
    Guardrail,
    Approvals,
    Deletions,
    Redaction,
    Retention,
    AuditChain,
}

fn category_of(row: &AuditRow) -> Option<Category> {
    let a = row.action.as_str();
    Some(match a {
        _ if a.starts_with("auth.") => Category::Access,
        _ if a.starts_with("key.")
            || a.starts_with("user.")
            || a.starts_with("gateway_key.")
            || a.starts_with("project.") =>
        {
            Category::Admin
        }
        _ if a.starts_with("policy.") || a.starts_with("config.") || a.starts_with("prompt.") => {
            Category::Changes
        }
        _ if a.starts_with("guard.") || a.starts_with("tool.") => Category::Guardrail,
        _ if a.starts_with("approval.") => Category::Approvals,
        _ if a.starts_with("data.") => Category::Deletions,
        _ => return None,
    })
}

/// Everything that goes into a report besides the store.
pub struct ReportInput<'a> {
    pub project: &'a ProjectId,
    pub project_name: &'a str,
    pub framework: Framework,
    pub from_ns: i64,
    pub to_ns: i64,
    /// Retention as configured (shown as-is).
    pub retention: Value,
    pub redaction_config: Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub framework: Framework,
    pub framework_title: &'static str,
    pub project_id: ProjectId,
    pub project_name: String,
    pub from: String,
    pub to: String,
    pub generated: String,
    pub audit_chain: VerifyReport,
    pub summary: BTreeMap<String, u64>,
    pub guardrail_decisions: BTreeMap<String, u64>,
    pub approvals: BTreeMap<String, u64>,
    pub redaction: BTreeMap<String, u64>,
    pub retention: Value,
    pub redaction_config: Value,
    pub controls: Vec<ControlEvidence>,
    /// The entries of the period by category (content included unless erased).
    pub events: BTreeMap<String, Vec<Value>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ControlEvidence {
    pub id: &'static str,
    pub title: &'static str,
    pub evidence: Vec<String>,
    /// `evidence` when the period holds records for it, `no_activity` when none occurred.
    pub status: &'static str,
}

const EVENTS_PER_CATEGORY: usize = 500;

pub async fn build(
    store: &dyn Store,
    audit: &AuditLog,
    input: ReportInput<'_>,
) -> Result<Report, String> {
    let e = |e: vigil_store::Error| e.to_string();
    let chain = audit.verify(input.project).await.map_err(e)?;
    let mut by_cat: BTreeMap<Category, Vec<AuditRow>> = BTreeMap::new();
    let mut counts: BTreeMap<Category, u64> = BTreeMap::new();
    let mut decisions: BTreeMap<String, u64> = BTreeMap::new();
    let mut approvals: BTreeMap<String, u64> = BTreeMap::new();
    let mut after = 0;
    loop {
        let rows = store
            .audit_rows(input.project, after, 5000)
            .await
            .map_err(e)?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for r in rows {
            if r.time_ns < input.from_ns || r.time_ns > input.to_ns {
                continue;
            }
            let Some(cat) = category_of(&r) else { continue };
            *counts.entry(cat).or_default() += 1;
            if r.action == "guard.decision" {
                let d = r
                    .content
                    .as_deref()
                    .and_then(|c| serde_json::from_str::<Value>(c).ok())
                    .and_then(|v| v["decision"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "erased".into());
                *decisions.entry(d).or_default() += 1;
            }
            if let Some(s) = r.action.strip_prefix("approval.") {
                *approvals.entry(s.to_string()).or_default() += 1;
            }
            let list = by_cat.entry(cat).or_default();
            if list.len() < EVENTS_PER_CATEGORY {
                list.push(r);
            }
        }
    }
    let day = |ns: i64| {
        format_rfc3339_nanos(ns)
            .chars()
            .take(10)
            .collect::<String>()
    };
    let mut redaction: BTreeMap<String, u64> = BTreeMap::new();
    for (_, detector, n) in store
        .redaction_counts(input.project, &day(input.from_ns), &day(input.to_ns))
        .await
        .map_err(e)?
    {
        *redaction.entry(detector).or_default() += n;
    }
    let has = |c: Category| match c {
        Category::Redaction => !redaction.is_empty(),
        Category::Retention => true,
        Category::AuditChain => chain.entries > 0,
        c => counts.get(&c).copied().unwrap_or(0) > 0,
    };
    let describe = |c: Category| -> String {
        let n = counts.get(&c).copied().unwrap_or(0);
        match c {
            Category::Access => format!("{n} access events (logins, logouts, failed logins)"),
            Category::Admin => format!("{n} administrative events (keys, users, projects)"),
            Category::Changes => format!("{n} policy and configuration changes"),
            Category::Guardrail => format!(
                "{n} guardrail decisions and tool executions ({})",
                fmt_counts(&decisions)
            ),
            Category::Approvals => {
                format!("{n} human approval outcomes ({})", fmt_counts(&approvals))
            }
            Category::Deletions => format!("{n} erasures and deletions"),
            Category::Redaction => format!(
                "{} values redacted before storage ({})",
                redaction.values().sum::<u64>(),
                fmt_counts(&redaction)
            ),
            Category::Retention => format!("retention settings: {}", input.retention),
            Category::AuditChain => format!(
                "audit chain of {} entries {}, {} signed checkpoints verified",
                chain.entries,
                if chain.ok() {
                    "verified intact"
                } else {
                    "BROKEN"
                },
                chain.checkpoints_verified
            ),
        }
    };
    let controls = input
        .framework
        .controls()
        .iter()
        .map(|(id, title, cats)| ControlEvidence {
            id,
            title,
            evidence: cats.iter().map(|c| describe(*c)).collect(),
            status: if cats.iter().any(|c| has(*c)) {
                "evidence"
            } else {
                "no_activity"
            },
        })
        .collect();
    let events = by_cat
        .into_iter()
        .map(|(c, rows)| {
            let name = serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let list = rows
                .into_iter()
                .map(|r| {
                    json!({
                        "seq": r.seq,
                        "time": format_rfc3339_nanos(r.time_ns),
                        "actor": r.actor,
                        "action": r.action,
                        "subject": r.subject,
                        "content": r.content.as_deref().and_then(|c| serde_json::from_str::<Value>(c).ok()).unwrap_or(json!("[erased]")),
                    })
                })
                .collect();
            (name, list)
        })
        .collect();
    Ok(Report {
        framework: input.framework,
        framework_title: input.framework.title(),
        project_id: input.project.clone(),
        project_name: input.project_name.to_string(),
        from: format_rfc3339_nanos(input.from_ns),
        to: format_rfc3339_nanos(input.to_ns),
        generated: format_rfc3339_nanos(vigil_model::now_unix_nanos()),
        audit_chain: chain,
        summary: counts
            .iter()
            .map(|(c, n)| {
                (
                    serde_json::to_value(c)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    *n,
                )
            })
            .collect(),
        guardrail_decisions: decisions,
        approvals,
        redaction,
        retention: input.retention,
        redaction_config: input.redaction_config,
        controls,
        events,
    })
}

fn fmt_counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page (no scripts, no external assets) an auditor can open anywhere.
pub fn to_html(r: &Report) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    h.push_str(&esc(&format!(
        "{} evidence — {}",
        r.framework_title, r.project_name
    )));
    h.push_str("</title><style>body{font:14px/1.5 system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;color:#1d2433}table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}td,th{border:1px solid #d5d9e2;padding:.35rem .5rem;text-align:left;vertical-align:top}th{background:#f3f5f9}.ok{color:#16794a;font-weight:600}.bad{color:#b42318;font-weight:600}.muted{color:#667085}code{font-size:12px}</style></head><body>");
    h.push_str(&format!(
        "<h1>{}</h1><p>Project <b>{}</b> (<code>{}</code>) · period {} → {} · generated {}</p>",
        esc(r.framework_title),
        esc(&r.project_name),
        esc(r.project_id.as_str()),
        esc(&r.from),
        esc(&r.to),
        esc(&r.generated)
    ));
    let chain_ok = r.audit_chain.ok();
    h.push_str(&format!(
        "<h2>Audit chain</h2><p class=\"{}\">{}</p><p class=\"muted\">{} entries ({} erased, content hashes kept), {} signed checkpoints verified, head {} <code>{}</code></p>",
        if chain_ok { "ok" } else { "bad" },
        if chain_ok {
            "Verified: every entry links to the previous one and matches its hash and the signed checkpoints.".to_string()
        } else {
            esc(&r.audit_chain.first_break.as_ref().map(|b| format!("BROKEN at entry {}: {}", b.seq, b.problem)).unwrap_or_default())
        },
        r.audit_chain.entries,
        r.audit_chain.erased_entries,
        r.audit_chain.checkpoints_verified,
        r.audit_chain.head_seq,
        esc(&r.audit_chain.head_hash)
    ));
    h.push_str("<h2>Controls</h2><table><tr><th>Control</th><th>Objective</th><th>Evidence from this period</th><th>Status</th></tr>");
    for c in &r.controls {
        h.push_str(&format!(
            "<tr><td><b>{}</b></td><td>{}</td><td><ul>{}</ul></td><td>{}</td></tr>",
            esc(c.id),
            esc(c.title),
            c.evidence
                .iter()
                .map(|e| format!("<li>{}</li>", esc(e)))
                .collect::<String>(),
            if c.status == "evidence" {
                "<span class=\"ok\">evidence</span>"
            } else {
                "<span class=\"muted\">no activity</span>"
            }
        ));
    }
    h.push_str("</table>");
    let table = |title: &str, m: &BTreeMap<String, u64>| {
        let mut t = format!(
            "<h2>{}</h2><table><tr><th>Kind</th><th>Count</th></tr>",
            esc(title)
        );
        if m.is_empty() {
            t.push_str("<tr><td colspan=\"2\" class=\"muted\">none in this period</td></tr>");
        }
        for (k, v) in m {
            t.push_str(&format!("<tr><td>{}</td><td>{v}</td></tr>", esc(k)));
        }
        t.push_str("</table>");
        t
    };
    h.push_str(&table("Guardrail decisions", &r.guardrail_decisions));
    h.push_str(&table("Approvals", &r.approvals));
    h.push_str(&table("Redactions before storage", &r.redaction));
    h.push_str(&format!(
        "<h2>Retention</h2><pre>{}</pre><h2>Redaction settings</h2><pre>{}</pre>",
        esc(&serde_json::to_string_pretty(&r.retention).unwrap_or_default()),
        esc(&serde_json::to_string_pretty(&r.redaction_config).unwrap_or_default())
    ));
    for (cat, events) in &r.events {
        h.push_str(&format!("<h2>Events: {}</h2><table><tr><th>#</th><th>Time</th><th>Actor</th><th>Action</th><th>Subject</th><th>Details</th></tr>", esc(cat)));
        for e in events {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                e["seq"],
                esc(e["time"].as_str().unwrap_or("")),
                esc(e["actor"].as_str().unwrap_or("")),
                esc(e["action"].as_str().unwrap_or("")),
                esc(e["subject"].as_str().unwrap_or("")),
                esc(&e["content"].to_string())
            ));
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}
