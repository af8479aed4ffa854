//! Models & cost: spend by model, provider and service, the price each model was charged at, and
//! the models Vigil could not price with the exact lines to add to `vigil.toml`.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use vigil_api::AppState;
use vigil_store::{MetricsDimension, MetricsQuery, MetricsResult};

use super::RangeParams;
use crate::fmt;
use crate::layout::{self, Nav};
use crate::viewer::{self, Viewer};

#[derive(Deserialize, Default)]
pub struct ModelsQuery {
    #[serde(flatten)]
    range: RangeParams,
}

pub async fn show(
    State(state): State<AppState>,
    v: Viewer,
    Query(q): Query<ModelsQuery>,
) -> Response {
    let (range, range_error) = q.range.resolve("30d");
    let mut errors: Vec<String> = range_error.into_iter().collect();
    let (from, to) = range.bounds();
    let usage = state
        .store
        .model_usage(Some(&v.project), range.from.unwrap_or(0))
        .await
        .map_err(|e| errors.push(e.to_string()))
        .ok()
        .unwrap_or_default();
    let totals = |dim: MetricsDimension| {
        let store = state.store.clone();
        let q = MetricsQuery {
            project_id: v.project.clone(),
            start_time_min: from,
            start_time_max: to,
            bucket_seconds: ((to - from) / 1_000_000_000 / 60).max(1) * 60,
            group_by: Some(dim),
            kind: None,
            ..Default::default()
        };
        async move { store.metrics(&q).await }
    };
    let by_provider = totals(MetricsDimension::Provider)
        .await
        .map_err(|e| errors.push(e.to_string()))
        .ok();
    let by_service = totals(MetricsDimension::Service)
        .await
        .map_err(|e| errors.push(e.to_string()))
        .ok();
    let prices = state.normalizer.prices();
    // Unpriced = no price in the table. (An LLM call without reported tokens also has no cost, but
    // adding a price would not change that.)
    let unpriced: Vec<_> = usage
        .iter()
        .filter(|u| prices.lookup(&u.model).is_none())
        .collect();
    let total_cost: f64 = usage.iter().filter_map(|u| u.cost_usd).sum();
    let body = html! {
        div.page-head {
            h1 { "Models & cost" }
            form.filters.inline-filters method="get" action="/ui/models" {
                (range.picker())
                button.primary type="submit" { "Apply" }
            }
            p.muted { "Prices per million tokens from Vigil's built-in table (as of " (prices.as_of) "), plus any " code { "[[prices]]" } " in vigil.toml." }
        }
        @for e in &errors { (layout::alert(e)) }
        @if usage.is_empty() {
            div.empty { p { "No model calls in this range." } }
        } @else {
            div.tiles.big {
                div.tile { div.v { (fmt::usd(total_cost)) } div.l { "spend" } }
                div.tile { div.v { (usage.len()) } div.l { "models" } }
                div.tile class={ @if !unpriced.is_empty() { "bad" } } { div.v { (unpriced.len()) } div.l { "unpriced models" } }
            }
            section.card {
                h3 { "By model" }
                table.list data-list {
                    thead { tr {
                        th { "Model" } th { "Provider" } th.num { "Calls" } th.num { "Input tokens" } th.num { "Output tokens" }
                        th.num { "Spend" } th.num { "Share" } th { "Price used (USD / 1M tokens)" }
                    } }
                    tbody {
                        @for u in &usage {
                            @let href = format!("/ui/traces?range=all&model={}", viewer::url_encode(&u.model));
                            tr data-href=(href) {
                                td.name { a href=(href) { (u.model) } }
                                td { (u.provider.as_deref().unwrap_or("—")) }
                                td.num { (fmt::count(u.span_count)) }
                                td.num { (fmt::count(u.input_tokens)) }
                                td.num { (fmt::count(u.output_tokens)) }
                                td.num { (fmt::cost(u.cost_usd)) }
                                td.num { @if let Some(c) = u.cost_usd { @if total_cost > 0.0 { (fmt::percent(c / total_cost)) } } }
                                td {
                                    @match prices.lookup(&u.model) {
                                        Some(p) => {
                                            "in $" (p.input) " · out $" (p.output)
                                            @if let Some(c) = p.cached_input { " · cached $" (c) }
                                            @if !p.name.eq_ignore_ascii_case(&u.model) { span.muted { " (as " code { (p.name) } ")" } }
                                        },
                                        None => span.badge.warn { "unpriced" },
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div.panels {
                (spend_table("By provider", by_provider.as_ref()))
                (spend_table("By service", by_service.as_ref()))
            }
            @if !unpriced.is_empty() {
                section.card #unpriced {
                    h3 { "Unpriced models" }
                    p { "These models have no price, so their cost shows as “—” instead of a made-up $0. Add their prices to "
                        code { "vigil.toml" } " (USD per million tokens) and restart; new spans are priced from then on:" }
                    pre.code {
                        @for u in &unpriced {
                            "[[prices]]\nname = \"" (u.model) "\"\n"
                            @if let Some(p) = &u.provider { "provider = \"" (p) "\"\n" }
                            "input = 0.0    # USD per 1M input tokens\noutput = 0.0   # USD per 1M output tokens\n\n"
                        }
                    }
                    p.muted { "Or list them from the command line: " code { "vigil models --unpriced" } }
                }
            }
        }
    };
    layout::page("Models & cost", &v, Nav::Models, body)
}

fn spend_table(title: &str, m: Option<&MetricsResult>) -> Markup {
    html! {
        section.card {
            h3 { (title) }
            @if let Some(m) = m {
                table.list.compact {
                    thead { tr { th { "" } th.num { "Spans" } th.num { "Tokens" } th.num { "Spend" } } }
                    tbody {
                        @for p in m.totals.iter().filter(|p| p.cost_usd.is_some() || p.input_tokens + p.output_tokens > 0) {
                            tr {
                                td { (p.group.as_deref().filter(|g| !g.is_empty()).unwrap_or("(none)")) }
                                td.num { (fmt::count(p.count)) }
                                td.num { (fmt::tokens(p.input_tokens + p.output_tokens)) }
                                td.num { (fmt::cost(p.cost_usd)) }
                            }
                        }
                    }
                }
            }
        }
    }
}
