//! Virtual keys, rate limits and budgets.
//!
//! A call is identified by its virtual key (if any), team, user and requested model. Each of those
//! scopes may carry limits: requests and tokens per minute (a sliding window of 60 one-second slots)
//! and a USD budget per calendar month or in total. Requests are counted when admitted, tokens and
//! cost when the call ends. Spend is kept in memory, loaded from the store at start and written back
//! every second; crossing 50, 80 and 100 % of a budget records a `budget_threshold` event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use vigil_model::{now_unix_nanos, ProjectId};
use vigil_store::{GatewayEvent, SpendDelta, Store};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    /// `team`, `user` or `model`.
    pub scope: String,
    /// The team name, user id or model alias it applies to.
    pub subject: String,
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub budget_usd: Option<f64>,
    /// `month` (UTC calendar month, the default) or `total`.
    #[serde(default = "month")]
    pub budget_period: String,
}

fn month() -> String {
    "month".into()
}

#[derive(Debug, Clone, Default)]
pub struct Limit {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub budget_usd: Option<f64>,
    pub budget_period: String,
}

/// Who a call is for; each present field is a scope that may be limited.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub project: ProjectId,
    /// (key id, the key's own limits).
    pub key: Option<(String, Limit)>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub model: String,
}

/// Why a call was refused.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub message: String,
    pub retry_after: u64,
}

#[derive(Default, Clone, Copy)]
struct Slot {
    second: i64,
    requests: u64,
    tokens: u64,
}

struct Window {
    slots: [Slot; 60],
}

impl Default for Window {
    fn default() -> Self {
        Self {
            slots: [Slot::default(); 60],
        }
    }
}

impl Window {
    fn totals(&self, now: i64) -> (u64, u64) {
        self.slots
            .iter()
            .filter(|s| now - s.second < 60)
            .fold((0, 0), |(r, t), s| (r + s.requests, t + s.tokens))
    }

    fn slot(&mut self, now: i64) -> &mut Slot {
        let s = &mut self.slots[now.rem_euclid(60) as usize];
        if s.second != now {
            *s = Slot {
                second: now,
                ..Slot::default()
            };
        }
        s
    }

    /// Seconds until the oldest counted slot leaves the window.
    fn retry_after(&self, now: i64) -> u64 {
        self.slots
            .iter()
            .filter(|s| now - s.second < 60 && (s.requests > 0 || s.tokens > 0))
            .map(|s| 60 - (now - s.second))
            .min()
            .unwrap_or(1)
            .max(1) as u64
    }
}

pub struct Limits {
    rules: HashMap<(String, String), Limit>,
    windows: Mutex<HashMap<String, Window>>,
    spend: Mutex<HashMap<(String, String, String, String), f64>>,
    pending: Mutex<Vec<SpendDelta>>,
    store: Arc<dyn Store>,
}

fn period_of(kind: &str, now_ns: i64) -> String {
    if kind == "total" {
        return "total".into();
    }
    let s = vigil_model::format_rfc3339_nanos(now_ns);
    s.get(..7).unwrap_or("total").to_string()
}

/// The rate window of one scope of one project.
fn window_key(c: &Caller, scope: &str, subject: &str) -> String {
    format!("{}|{scope}|{subject}", c.project.0)
}

/// Seconds until the next UTC month starts.
fn until_next_month(now_ns: i64) -> u64 {
    let s = vigil_model::format_rfc3339_nanos(now_ns);
    let (y, m): (i64, i64) = (s[..4].parse().unwrap_or(1970), s[5..7].parse().unwrap_or(1));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let next = vigil_model::parse_rfc3339_nanos(&format!("{ny:04}-{nm:02}-01T00:00:00Z"))
        .unwrap_or(now_ns);
    ((next - now_ns) / 1_000_000_000).max(1) as u64
}

impl Limits {
    pub async fn start(rules: &[LimitRule], store: Arc<dyn Store>) -> Arc<Self> {
        let mut spend = HashMap::new();
        match store.load_spend().await {
            Ok(rows) => {
                for d in rows {
                    spend.insert((d.project.0, d.scope, d.subject, d.period), d.cost_usd);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not load gateway spend; budgets start from zero")
            }
        }
        let limits = Arc::new(Self {
            rules: rules
                .iter()
                .map(|r| {
                    (
                        (r.scope.clone(), r.subject.clone()),
                        Limit {
                            rpm: r.rpm,
                            tpm: r.tpm,
                            budget_usd: r.budget_usd,
                            budget_period: r.budget_period.clone(),
                        },
                    )
                })
                .collect(),
            windows: Mutex::new(HashMap::new()),
            spend: Mutex::new(spend),
            pending: Mutex::new(Vec::new()),
            store,
        });
        let weak = Arc::downgrade(&limits);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(l) = weak.upgrade() else { break };
                let batch =
                    std::mem::take(&mut *l.pending.lock().unwrap_or_else(|e| e.into_inner()));
                if let Err(e) = l.store.add_spend(batch).await {
                    tracing::warn!(error = %e, "could not store gateway spend");
                }
            }
        });
        limits
    }

    /// Every scope a call has, with its limit if one applies: (scope, subject, limit).
    fn scopes(&self, c: &Caller) -> Vec<(&'static str, String, Option<Limit>)> {
        let mut out = Vec::new();
        if let Some((id, limit)) = &c.key {
            out.push(("key", id.clone(), Some(limit.clone())));
        }
        for (scope, subject) in [
            ("team", c.team.as_ref()),
            ("user", c.user.as_ref()),
            ("model", Some(&c.model)),
        ] {
            if let Some(s) = subject {
                let limit = self.rules.get(&(scope.to_string(), s.clone())).cloned();
                out.push((scope, s.clone(), limit));
            }
        }
        out
    }

    /// Admits a call (counting it against request limits) or says which limit it hit.
    pub fn admit(&self, c: &Caller) -> Result<(), Refusal> {
        let now_ns = now_unix_nanos();
        let now = now_ns / 1_000_000_000;
        let limited: Vec<(&str, String, Limit)> = self
            .scopes(c)
            .into_iter()
            .filter_map(|(scope, subject, l)| Some((scope, subject, l?)))
            .collect();
        {
            let spend = self.spend.lock().unwrap_or_else(|e| e.into_inner());
            for (scope, subject, l) in &limited {
                if let Some(budget) = l.budget_usd {
                    let period = period_of(&l.budget_period, now_ns);
                    let spent = spend
                        .get(&(
                            c.project.0.clone(),
                            scope.to_string(),
                            subject.clone(),
                            period,
                        ))
                        .copied()
                        .unwrap_or(0.0);
                    if spent >= budget {
                        let total = l.budget_period == "total";
                        return Err(Refusal {
                            message: format!(
                                "the {} budget of ${budget:.2} for {scope} `{subject}` is used up (${spent:.4} spent{})",
                                if total { "total" } else { "monthly" },
                                if total { "" } else { " this month" }
                            ),
                            retry_after: if total { 86_400 } else { until_next_month(now_ns) },
                        });
                    }
                }
            }
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for (scope, subject, l) in &limited {
            let w = windows.entry(window_key(c, scope, subject)).or_default();
            let (requests, tokens) = w.totals(now);
            if let Some(rpm) = l.rpm {
                if requests >= u64::from(rpm) {
                    return Err(Refusal {
                        message: format!("rate limit of {rpm} requests per minute for {scope} `{subject}` reached"),
                        retry_after: w.retry_after(now),
                    });
                }
            }
            if let Some(tpm) = l.tpm {
                if tokens >= tpm {
                    return Err(Refusal {
                        message: format!(
                            "rate limit of {tpm} tokens per minute for {scope} `{subject}` reached"
                        ),
                        retry_after: w.retry_after(now),
                    });
                }
            }
        }
        for (scope, subject, _) in &limited {
            windows
                .entry(window_key(c, scope, subject))
                .or_default()
                .slot(now)
                .requests += 1;
        }
        Ok(())
    }

    /// Counts a finished call's tokens (against the limited scopes' windows) and its cost. Spend is
    /// attributed to every scope of the call (key, team, user, model), limited or not, so it can be
    /// reported.
    pub fn settle(&self, c: &Caller, tokens: u64, cost_usd: Option<f64>) {
        let now_ns = now_unix_nanos();
        let now = now_ns / 1_000_000_000;
        let scopes = self.scopes(c);
        {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            for (scope, subject, _) in scopes.iter().filter(|s| s.2.is_some()) {
                windows
                    .entry(window_key(c, scope, subject))
                    .or_default()
                    .slot(now)
                    .tokens += tokens;
            }
        }
        let Some(cost) = cost_usd.filter(|c| *c > 0.0) else {
            return;
        };
        let mut events = Vec::new();
        {
            let mut spend = self.spend.lock().unwrap_or_else(|e| e.into_inner());
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (scope, subject, limit) in scopes {
                // Spend is kept for the limit's own period (this month, or in total) and in total.
                let current = period_of(
                    limit.as_ref().map_or("month", |l| l.budget_period.as_str()),
                    now_ns,
                );
                let mut periods = vec![current.clone()];
                if current != "total" {
                    periods.push("total".to_string());
                }
                for period in periods {
                    let key = (
                        c.project.0.clone(),
                        scope.to_string(),
                        subject.clone(),
                        period.clone(),
                    );
                    let before = spend.get(&key).copied().unwrap_or(0.0);
                    let after = before + cost;
                    spend.insert(key, after);
                    pending.push(SpendDelta {
                        project: c.project.clone(),
                        scope: scope.to_string(),
                        subject: subject.clone(),
                        period: period.clone(),
                        cost_usd: cost,
                    });
                    let Some(budget) = limit
                        .as_ref()
                        .and_then(|l| l.budget_usd)
                        .filter(|_| period == current)
                    else {
                        continue;
                    };
                    for pct in [50u32, 80, 100] {
                        let line = budget * f64::from(pct) / 100.0;
                        if before < line && after >= line {
                            events.push(GatewayEvent {
                                project_id: c.project.clone(),
                                time: now_ns,
                                kind: "budget_threshold".into(),
                                subject: format!("{scope}:{subject}"),
                                payload: json!({"scope": scope, "subject": subject, "percent": pct, "budget_usd": budget,
                                                "spent_usd": after, "period": period}),
                            });
                        }
                    }
                }
            }
        }
        if events.is_empty() {
            return;
        }
        let store = self.store.clone();
        // One task, in order: 50 % is recorded before 80 % before 100 %.
        tokio::spawn(async move {
            for e in events {
                tracing::info!(subject = %e.subject, percent = %e.payload["percent"], "gateway budget threshold crossed");
                if let Err(err) = store.record_gateway_event(e).await {
                    tracing::warn!(error = %err, "could not record a budget event");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_a_minute_and_say_when_to_retry() {
        let mut w = Window::default();
        w.slot(100).requests += 3;
        w.slot(130).tokens += 50;
        assert_eq!(w.totals(130), (3, 50));
        assert_eq!(w.totals(161), (0, 50));
        assert_eq!(w.retry_after(130), 30);
        assert_eq!(period_of("total", 0), "total");
        assert_eq!(period_of("month", 1_795_000_000_000_000_000), "2026-11");
        assert!(until_next_month(1_795_000_000_000_000_000) > 0);
    }
}
