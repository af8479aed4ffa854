//! A trace's list row, computed from its spans. Pure, so every backend summarises alike.

use std::collections::BTreeSet;

use foldhash::HashSet;

use vigil_model::{FlagKind, ProjectId, SpanId, SpanKind, SpanStatus, TraceId};

use crate::query::TraceRow;

/// The columns of a span that a summary needs. Stored beside each chunk of spans (short field
/// names: it is written once per span), so a trace can be re-summarised without decoding bodies.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpanFacts {
    #[serde(rename = "i")]
    pub span_id: SpanId,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
    #[serde(rename = "k")]
    pub kind: SpanKind,
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "sv", default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(rename = "svv", default, skip_serializing_if = "Option::is_none")]
    pub service_version: Option<String>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(rename = "pr", default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(rename = "it", default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    #[serde(rename = "ot", default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(rename = "st")]
    pub start_ns: i64,
    #[serde(rename = "en")]
    pub end_ns: i64,
    #[serde(rename = "x")]
    pub status: SpanStatus,
    #[serde(rename = "f")]
    pub flags: i64,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

/// The facts of a span that is no longer needed (its body is encoded): its strings move instead of
/// being copied.
impl From<vigil_model::Span> for SpanFacts {
    fn from(s: vigil_model::Span) -> Self {
        let flags = s.flag_mask();
        SpanFacts {
            span_id: s.span_id,
            parent_span_id: s.parent_span_id,
            kind: s.kind,
            name: s.name,
            service_name: s.service_name,
            service_version: s.service_version,
            environment: s.environment,
            agent_name: s.agent_name,
            session_id: s.session_id,
            user_id: s.user_id,
            model: s.model,
            provider: s.provider,
            input_tokens: s.input_tokens,
            output_tokens: s.output_tokens,
            cost_usd: s.cost_usd,
            start_ns: s.start_time,
            end_ns: s.end_time,
            status: s.status,
            flags,
            tool_name: s.tool_name,
        }
    }
}

pub fn summarize(
    project_id: &ProjectId,
    trace_id: TraceId,
    spans: &[SpanFacts],
) -> Option<TraceRow> {
    let ids: HashSet<SpanId> = spans.iter().map(|s| s.span_id).collect();
    let root = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none_or(|p| !ids.contains(&p)))
        .min_by_key(|s| (s.parent_span_id.is_some(), s.start_ns))
        .or_else(|| spans.iter().min_by_key(|s| s.start_ns))?;
    let llm_ids: HashSet<SpanId> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Llm)
        .map(|s| s.span_id)
        .collect();
    // An LLM span directly under another LLM span is the same call seen by two instrumentations
    // (e.g. OpenInference around the provider SDK's own span): count its usage once.
    let counted = |s: &&SpanFacts| {
        !(s.kind == SpanKind::Llm && s.parent_span_id.is_some_and(|p| llm_ids.contains(&p)))
    };
    let first = |f: fn(&SpanFacts) -> Option<&String>| {
        f(root).or_else(|| spans.iter().find_map(f)).cloned()
    };

    let start = spans
        .iter()
        .map(|s| s.start_ns)
        .min()
        .unwrap_or(root.start_ns);
    let end = spans
        .iter()
        .map(|s| s.end_ns)
        .max()
        .unwrap_or(root.end_ns)
        .max(start);
    let mut cost: Option<f64> = None;
    let (mut input, mut output) = (0i64, 0i64);
    for s in spans.iter().filter(counted) {
        input += s.input_tokens.unwrap_or(0);
        output += s.output_tokens.unwrap_or(0);
        if let Some(c) = s.cost_usd {
            *cost.get_or_insert(0.0) += c;
        }
    }
    let error_count = spans
        .iter()
        .filter(|s| s.status == SpanStatus::Error)
        .count() as i64;
    let flags = spans.iter().fold(0, |m, s| m | s.flags);
    let models: BTreeSet<String> = spans.iter().filter_map(|s| s.model.clone()).collect();
    let providers: BTreeSet<String> = spans.iter().filter_map(|s| s.provider.clone()).collect();
    let tools: BTreeSet<String> = spans.iter().filter_map(|s| s.tool_name.clone()).collect();
    let status = if error_count > 0 {
        SpanStatus::Error
    } else if spans.iter().any(|s| s.status == SpanStatus::Ok) || root.status == SpanStatus::Unset {
        SpanStatus::Ok
    } else {
        SpanStatus::Unset
    };
    Some(TraceRow {
        trace_id,
        project_id: project_id.clone(),
        root_name: root.name.clone(),
        service_name: first(|s| s.service_name.as_ref()),
        service_version: first(|s| s.service_version.as_ref()),
        environment: first(|s| s.environment.as_ref()),
        agent_name: first(|s| s.agent_name.as_ref()),
        session_id: first(|s| s.session_id.as_ref()),
        user_id: first(|s| s.user_id.as_ref()),
        start_time: start,
        end_time: end,
        duration_ms: (end - start) as f64 / 1e6,
        span_count: spans.len() as i64,
        llm_count: spans
            .iter()
            .filter(counted)
            .filter(|s| s.kind == SpanKind::Llm)
            .count() as i64,
        tool_count: spans.iter().filter(|s| s.kind == SpanKind::Tool).count() as i64,
        error_count,
        input_tokens: input,
        output_tokens: output,
        total_tokens: input + output,
        cost_usd: cost,
        status,
        flags: FlagKind::ALL
            .into_iter()
            .filter(|k| flags & k.bit() != 0)
            .collect(),
        models: models.into_iter().collect(),
        providers: providers.into_iter().collect(),
        tools: tools.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(
        id: u8,
        parent: Option<u8>,
        kind: SpanKind,
        tokens: i64,
        cost: Option<f64>,
    ) -> SpanFacts {
        SpanFacts {
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            kind,
            name: format!("s{id}"),
            input_tokens: Some(tokens),
            output_tokens: Some(1),
            cost_usd: cost,
            start_ns: i64::from(id) * 10,
            end_ns: i64::from(id) * 10 + 5,
            ..SpanFacts::default()
        }
    }

    #[test]
    fn a_span_s_facts_are_its_summary_columns() {
        let s = vigil_model::Span {
            span_id: SpanId([7; 8]),
            parent_span_id: Some(SpanId([6; 8])),
            kind: SpanKind::Tool,
            name: "lookup".into(),
            service_name: Some("svc".into()),
            service_version: Some("1.2".into()),
            environment: Some("prod".into()),
            agent_name: Some("support".into()),
            session_id: Some("s1".into()),
            user_id: Some("u1".into()),
            model: Some("gpt-4o".into()),
            provider: Some("openai".into()),
            input_tokens: Some(3),
            output_tokens: Some(4),
            cost_usd: Some(0.5),
            start_time: 10,
            end_time: 20,
            status: SpanStatus::Error,
            tool_name: Some("lookup".into()),
            flags: vec![vigil_model::Flag {
                name: FlagKind::SilentToolFailure,
                reason: "empty result".into(),
            }],
            ..vigil_model::Span::default()
        };
        let want = SpanFacts {
            span_id: SpanId([7; 8]),
            parent_span_id: Some(SpanId([6; 8])),
            kind: SpanKind::Tool,
            name: "lookup".into(),
            service_name: Some("svc".into()),
            service_version: Some("1.2".into()),
            environment: Some("prod".into()),
            agent_name: Some("support".into()),
            session_id: Some("s1".into()),
            user_id: Some("u1".into()),
            model: Some("gpt-4o".into()),
            provider: Some("openai".into()),
            input_tokens: Some(3),
            output_tokens: Some(4),
            cost_usd: Some(0.5),
            start_ns: 10,
            end_ns: 20,
            status: SpanStatus::Error,
            flags: s.flag_mask(),
            tool_name: Some("lookup".into()),
        };
        assert_ne!(want.flags, 0);
        assert_eq!(SpanFacts::from(s), want);
    }

    #[test]
    fn nested_duplicate_llm_spans_are_counted_once_and_root_is_found() {
        let spans = vec![
            span(3, Some(2), SpanKind::Llm, 100, Some(0.5)),
            span(1, None, SpanKind::Agent, 0, None),
            span(2, Some(1), SpanKind::Llm, 100, Some(0.5)),
            span(4, Some(1), SpanKind::Llm, 10, None),
        ];
        let row = summarize(&ProjectId::new("p"), TraceId([1; 16]), &spans).unwrap();
        assert_eq!(row.root_name, "s1");
        assert_eq!(row.input_tokens, 110);
        assert_eq!(row.output_tokens, 3);
        assert_eq!(row.llm_count, 2);
        assert_eq!(row.cost_usd, Some(0.5));
        assert_eq!((row.start_time, row.end_time), (10, 45));
    }

    #[test]
    fn unpriced_traces_have_no_cost_and_orphans_still_summarise() {
        let spans = vec![span(5, Some(9), SpanKind::Tool, 0, None)];
        let row = summarize(&ProjectId::new("p"), TraceId([1; 16]), &spans).unwrap();
        assert_eq!(row.cost_usd, None);
        assert_eq!(row.root_name, "s5");
        assert!(summarize(&ProjectId::new("p"), TraceId([1; 16]), &[]).is_none());
    }
}
