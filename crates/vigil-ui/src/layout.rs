//! The page shell (navigation, project switcher, theme) and pieces every page shares.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::assets;
use crate::viewer::Viewer;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Dashboard,
    Traces,
    Sessions,
    Models,
    Approvals,
    Annotate,
    Quality,
}

pub fn page(title: &str, viewer: &Viewer, active: Nav, body: Markup) -> Response {
    let item = |nav: Nav, href: &str, label: &str, key: &str| {
        html! {
            a href=(href) class={ "nav-item" @if nav == active { " active" } } title={ "g then " (key) } { (label) }
        }
    };
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{title} · {}", viewer.project_name)))
            body {
                header.top {
                    a.brand href="/ui/traces" { span.logo { "◉" } " Vigil" }
                    nav {
                        (item(Nav::Dashboard, "/ui/dashboard", "Dashboard", "d"))
                        (item(Nav::Traces, "/ui/traces", "Traces", "t"))
                        (item(Nav::Sessions, "/ui/sessions", "Sessions", "s"))
                        (item(Nav::Models, "/ui/models", "Models & cost", "m"))
                        (item(Nav::Quality, "/ui/quality", "Quality", "q"))
                        (item(Nav::Annotate, "/ui/annotate", "Annotate", "l"))
                        (item(Nav::Approvals, "/ui/approvals", "Approvals", "a"))
                    }
                    div.spacer {}
                    form.switcher method="get" action="/ui/project" {
                        label for="project" { "Project" }
                        select #project name="id" data-autosubmit {
                            @for (id, name) in &viewer.projects {
                                option value=(id.as_str()) selected[*id == viewer.project] { (name) }
                            }
                        }
                        noscript { button type="submit" { "Switch" } }
                    }
                    @if viewer.insecure {
                        span.badge.warn title="Started with --insecure-local: anyone who can reach this port sees everything." { "auth off" }
                    } @else {
                        @if let Some(u) = &viewer.user { span.small.muted { (u) } }
                        a.small href="/login?add=1" title="Add another project's key" { "+ project" }
                        form.inline method="post" action="/logout" { button.link type="submit" { "Log out" } }
                    }
                    button.theme type="button" data-theme-toggle title="Light / dark" { "◐" }
                }
                main { (body) }
                footer {
                    span { "Keys: " kbd { "j" } "/" kbd { "k" } " move · " kbd { "Enter" } " open · " kbd { "Esc" } " back · " kbd { "/" } " search" }
                }
            }
        }
    };
    Html(doc.into_string()).into_response()
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Vigil" }
            link rel="stylesheet" href=(assets::css_path());
            script src=(assets::js_path()) {}
        }
    }
}

/// A page outside the signed-in shell (login, errors).
pub fn bare(title: &str, status: StatusCode, body: Markup) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare { main.narrow { (body) } }
        }
    };
    (status, Html(doc.into_string())).into_response()
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    bare(
        "Error",
        status,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error { (message) }
            p { a href="/ui/traces" { "Back to traces" } }
        },
    )
}

/// An error inside a page (bad filter, failed query): shown, the rest of the page still works.
pub fn alert(message: &str) -> Markup {
    html! { div.alert role="alert" { (message) } }
}

/// A query string from key/value pairs, skipping empty values.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let s = serde_urlencoded::to_string(kept).unwrap_or_default();
    if s.is_empty() {
        s
    } else {
        format!("?{s}")
    }
}

pub fn status_dot(status: &str) -> Markup {
    html! { span class={ "dot " (status) } title=(status) {} }
}

pub fn flag_badges(flags: &[vigil_model::FlagKind]) -> Markup {
    html! {
        @for f in flags {
            span.badge.flag title=(flag_explanation(*f)) { (flag_label(*f)) }
        }
    }
}

pub fn flag_label(f: vigil_model::FlagKind) -> &'static str {
    match f {
        vigil_model::FlagKind::SilentToolFailure => "silent tool failure",
        vigil_model::FlagKind::HallucinatedTool => "hallucinated tool",
    }
}

pub fn flag_explanation(f: vigil_model::FlagKind) -> &'static str {
    match f {
        vigil_model::FlagKind::SilentToolFailure => {
            "A tool returned an empty, truncated, invalid or error-shaped result while its span said OK: \
             the agent probably carried on with corrupted context."
        }
        vigil_model::FlagKind::HallucinatedTool => {
            "The model called a tool that the request did not declare."
        }
    }
}

/// What a fresh install shows instead of an empty table: how to send the first trace.
pub fn onboarding(insecure: bool) -> Markup {
    let header = if insecure {
        ""
    } else {
        "export OTEL_EXPORTER_OTLP_HEADERS=\"x-vigil-api-key=<your vk_… key>\"\n"
    };
    html! {
        section.onboarding {
            h2 { "No traces yet — send your first one" }
            p { "Vigil reads the OpenTelemetry your agents can already emit. Pick one of these, run your agent, and this page fills in." }
            div.cards {
                div.card {
                    h3 { "1 · Any instrumented app: environment variables" }
                    pre.code { "export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318\n" (header) "export OTEL_SERVICE_NAME=my-agent" }
                }
                div.card {
                    h3 { "2 · Python, OpenAI SDK + OpenTelemetry GenAI" }
                    pre.code { (PY_OTEL) }
                }
                div.card {
                    h3 { "3 · Python, OpenInference (OpenAI, Anthropic, LangChain…)" }
                    pre.code { (PY_OPENINFERENCE) }
                }
                div.card {
                    h3 { "Or look around first" }
                    p { "Fill this project with a realistic agent workload (tools, retrieval, failures, sessions):" }
                    pre.code { "vigil demo" }
                }
            }
        }
    }
}

const PY_OTEL: &str = r#"pip install openai opentelemetry-sdk \
  opentelemetry-exporter-otlp-proto-http \
  opentelemetry-instrumentation-openai-v2

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
OpenAIInstrumentor().instrument()
# export OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true to see prompts"#;

const PY_OPENINFERENCE: &str = r#"pip install openinference-instrumentation-openai \
  opentelemetry-sdk opentelemetry-exporter-otlp-proto-http

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from openinference.instrumentation.openai import OpenAIInstrumentor

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
OpenAIInstrumentor().instrument(tracer_provider=provider)"#;
