//! The traces table: every filter of `GET /api/v1/traces`, search, sorting and cursor paging, all
//! in the URL so a view can be shared.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use vigil_api::query_api::TraceListParams;
use vigil_api::AppState;
use vigil_model::{format_rfc3339_nanos, FlagKind};
use vigil_store::{Facets, TracePage, TraceQuery};

use super::{RangeParams, TimeRange};
use crate::fmt;
use crate::layout::{self, Nav};
use crate::viewer::Viewer;

/// The page's query string. Everything is text so that a bad value becomes a message on the page,
/// not a bare 400.
#[derive(Deserialize, Default, Clone)]
pub struct Filters {
    #[serde(flatten)]
    pub range: RangeParams,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub agent: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub tool: Option<String>,
    pub status: Option<String>,
    pub flags: Option<String>,
    pub min_duration_ms: Option<String>,
    pub min_cost_usd: Option<String>,
    pub session: Option<String>,
    pub user: Option<String>,
    pub q: Option<String>,
    pub sort: Option<String>,
    pub order: Option<String>,
    pub cursor: Option<String>,
    pub refresh: Option<String>,
}

/// The parameters that narrow the list (each one of `GET /api/v1/traces`)…
const FILTER_KEYS: &[&str] = &[
    "q",
    "service",
    "environment",
    "agent",
    "model",
    "provider",
    "tool",
    "status",
    "flags",
    "min_duration_ms",
    "min_cost_usd",
    "session",
    "user",
];
/// …and those that only change how it is shown.
const VIEW_KEYS: &[&str] = &["sort", "order", "refresh"];

impl Filters {
    fn get(&self, name: &str) -> &str {
        let v = match name {
            "service" => &self.service,
            "environment" => &self.environment,
            "agent" => &self.agent,
            "model" => &self.model,
            "provider" => &self.provider,
            "tool" => &self.tool,
            "status" => &self.status,
            "flags" => &self.flags,
            "min_duration_ms" => &self.min_duration_ms,
            "min_cost_usd" => &self.min_cost_usd,
            "session" => &self.session,
            "user" => &self.user,
            "q" => &self.q,
            "sort" => &self.sort,
            "order" => &self.order,
            "refresh" => &self.refresh,
            _ => &None,
        };
        v.as_deref().map(str::trim).unwrap_or("")
    }

    /// The URL of this view with some parameters replaced (the cursor is always dropped unless
    /// given).
    fn url(&self, range: &TimeRange, overrides: &[(&str, &str)]) -> String {
        let range_pairs = range.pairs();
        let mut pairs: Vec<(&str, &str)> =
            range_pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for k in FILTER_KEYS.iter().chain(VIEW_KEYS) {
            let v = overrides
                .iter()
                .find(|(o, _)| o == k)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| self.get(k));
            pairs.push((k, v));
        }
        if let Some((_, c)) = overrides.iter().find(|(k, _)| *k == "cursor") {
            pairs.push(("cursor", c));
        }
        format!("/ui/traces{}", layout::query(&pairs))
    }

    /// The URL of this view with every filter cleared.
    fn url_without_filters(&self, range: &TimeRange) -> String {
        let cleared: Vec<(&str, &str)> = FILTER_KEYS.iter().map(|k| (*k, "")).collect();
        self.url(range, &cleared)
    }

    fn active_count(&self) -> usize {
        FILTER_KEYS
            .iter()
            .filter(|k| !self.get(k).is_empty())
            .count()
    }

    fn to_query(
        &self,
        range: &TimeRange,
        caller: &vigil_api::Caller,
    ) -> Result<TraceQuery, String> {
        let text = |v: &str| (!v.is_empty()).then(|| v.to_string());
        let number = |name: &str| -> Result<Option<f64>, String> {
            let v = self.get(name);
            if v.is_empty() {
                return Ok(None);
            }
            v.parse::<f64>()
                .map(Some)
                .map_err(|_| format!("`{name}` must be a number, got `{v}`"))
        };
        let params = TraceListParams {
            from: range.from.map(format_rfc3339_nanos),
            to: range.to.map(format_rfc3339_nanos),
            service: text(self.get("service")),
            environment: text(self.get("environment")),
            agent: text(self.get("agent")),
            model: text(self.get("model")),
            provider: text(self.get("provider")),
            tool: text(self.get("tool")),
            status: text(self.get("status")),
            flags: text(self.get("flags")),
            min_duration_ms: number("min_duration_ms")?,
            min_cost_usd: number("min_cost_usd")?,
            session: text(self.get("session")),
            user: text(self.get("user")),
            q: text(self.get("q")),
            sort: text(self.get("sort")),
            order: text(self.get("order")),
            limit: Some(50),
            cursor: self.cursor.clone().filter(|c| !c.is_empty()),
        };
        params.into_query(caller).map_err(|e| e.message)
    }
}

pub async fn list(State(state): State<AppState>, v: Viewer, Query(f): Query<Filters>) -> Response {
    let (range, range_error) = f.range.resolve("24h");
    let caller = vigil_api::Caller {
        project_id: v.project.clone(),
        key: None,
    };
    let mut errors: Vec<String> = range_error.into_iter().collect();
    let page = match f.to_query(&range, &caller) {
        Ok(q) => match state.store.find_traces(&q).await {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        },
        Err(e) => {
            errors.push(e);
            None
        }
    };
    // A project with no trace at all gets the onboarding page instead of an empty table.
    let empty_project = page.as_ref().is_some_and(|p| p.traces.is_empty())
        && f.active_count() == 0
        && state
            .store
            .find_traces(&TraceQuery {
                limit: 1,
                ..TraceQuery::new(v.project.clone())
            })
            .await
            .is_ok_and(|p| p.traces.is_empty());
    let facet_since = range
        .from
        .unwrap_or(0)
        .max(vigil_model::now_unix_nanos() - 7 * 86_400_000_000_000);
    let facets = state
        .store
        .facets(&v.project, facet_since)
        .await
        .unwrap_or_default();
    let body = html! {
        @if empty_project {
            (layout::onboarding(v.insecure))
        } @else {
            (filter_bar(&f, &range, &facets))
            @for e in &errors { (layout::alert(e)) }
            @if let Some(page) = &page { (table(&f, &range, page)) }
        }
    };
    layout::page("Traces", &v, Nav::Traces, body)
}

fn select(name: &str, label: &str, current: &str, values: &[String]) -> Markup {
    html! {
        select name=(name) aria-label=(label) data-autosubmit class={ @if !current.is_empty() { "set" } } {
            option value="" { (label) ": all" }
            @for value in values {
                option value=(value) selected[value == current] { (value) }
            }
            // A value from a shared link that is not among recent ones still shows as selected.
            @if !current.is_empty() && !values.iter().any(|x| x == current) {
                option value=(current) selected { (current) }
            }
        }
    }
}

fn filter_bar(f: &Filters, range: &TimeRange, facets: &Facets) -> Markup {
    let flags: Vec<String> = FlagKind::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    let statuses: Vec<String> = ["ok", "error", "unset"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    html! {
        form.filters method="get" action="/ui/traces" id="filters" {
            div.row {
                input.search type="search" name="q" value=(f.get("q")) placeholder="Search inputs, outputs, tool calls…  ( / )" data-search;
                (range.picker())
                button.primary type="submit" { "Apply" }
                label.toggle title="Reload the first page every 10 seconds" {
                    input type="checkbox" name="refresh" value="1" data-autorefresh checked[f.get("refresh") == "1"];
                    " Auto-refresh"
                }
            }
            div.row {
                (select("model", "Model", f.get("model"), &facets.models))
                (select("agent", "Agent", f.get("agent"), &facets.agents))
                (select("environment", "Environment", f.get("environment"), &facets.environments))
                (select("service", "Service", f.get("service"), &facets.services))
                (select("provider", "Provider", f.get("provider"), &facets.providers))
                (select("tool", "Tool", f.get("tool"), &facets.tools))
                (select("status", "Status", f.get("status"), &statuses))
                (select("flags", "Flag", f.get("flags"), &flags))
                details.more open[!f.get("session").is_empty() || !f.get("user").is_empty() || !f.get("min_duration_ms").is_empty() || !f.get("min_cost_usd").is_empty()] {
                    summary { "More" }
                    input type="text" name="session" value=(f.get("session")) placeholder="Session id";
                    input type="text" name="user" value=(f.get("user")) placeholder="User id";
                    input type="number" name="min_duration_ms" value=(f.get("min_duration_ms")) placeholder="Min duration (ms)" min="0" step="any";
                    input type="number" name="min_cost_usd" value=(f.get("min_cost_usd")) placeholder="Min cost ($)" min="0" step="any";
                }
                input type="hidden" name="sort" value=(f.get("sort"));
                input type="hidden" name="order" value=(f.get("order"));
                @if f.active_count() > 0 {
                    a.clear href=(f.url_without_filters(range)) { "Clear filters" }
                }
            }
        }
    }
}

fn table(f: &Filters, range: &TimeRange, page: &TracePage) -> Markup {
    let sort = if f.get("sort").is_empty() {
        "start_time"
    } else {
        f.get("sort")
    };
    let desc = f.get("order") != "asc";
    let header = |key: &str, label: &str| {
        let active = key == sort;
        let next_order = if active && desc { "asc" } else { "desc" };
        let arrow = match (active, desc) {
            (true, true) => " ↓",
            (true, false) => " ↑",
            _ => "",
        };
        html! {
            th.num.sortable {
                a href=(f.url(range, &[("sort", key), ("order", next_order)])) { (label) (arrow) }
            }
        }
    };
    html! {
        @if page.traces.is_empty() {
            div.empty {
                p { "No traces match these filters in this time range." }
                p { a href=(f.url(&TimeRange::parse(Some("all"), None, None, "all").0, &[])) { "Search all time" } }
            }
        } @else {
            table.list.traces data-list {
                thead {
                    tr {
                        th { "" }
                        th { "Trace" }
                        th { "Agent" }
                        th { "Service" }
                        th { "Env" }
                        (header("start_time", "Start"))
                        (header("duration", "Duration"))
                        (header("spans", "Spans"))
                        (header("tokens", "Tokens"))
                        (header("cost", "Cost"))
                        th { "Flags" }
                    }
                }
                tbody {
                    @for t in &page.traces {
                        @let href = format!("/ui/traces/{}", t.trace_id.to_hex());
                        tr data-href=(href) class={ @if !t.flags.is_empty() { "flagged" } @if t.status.as_str() == "error" { " failed" } } {
                            td { (layout::status_dot(t.status.as_str())) }
                            td.name {
                                a href=(href) { (t.root_name) }
                                @if !t.models.is_empty() { div.sub { (t.models.join(", ")) } }
                            }
                            td { (t.agent_name.as_deref().unwrap_or("—")) }
                            td { (t.service_name.as_deref().unwrap_or("—")) }
                            td { (t.environment.as_deref().unwrap_or("—")) }
                            td.num title=(fmt::time(t.start_time)) { (fmt::ago(t.start_time)) }
                            td.num { (fmt::duration_ms(t.duration_ms)) }
                            td.num { (t.span_count) }
                            td.num { (fmt::tokens(t.total_tokens)) }
                            td.num { (fmt::cost(t.cost_usd)) }
                            td { (layout::flag_badges(&t.flags)) }
                        }
                    }
                }
            }
            nav.pager {
                @if f.cursor.as_deref().is_some_and(|c| !c.is_empty()) {
                    a href=(f.url(range, &[])) { "← First page" }
                }
                @if let Some(c) = &page.next_cursor {
                    a.next href=(f.url(range, &[("cursor", c.as_str())])) rel="next" { "Next page →" }
                }
            }
        }
    }
}
