//! Redaction before storage. Every span and log record from OTLP ingest, and every gateway call,
//! passes through a project's [`Redactor`] before it reaches the store, so what is stored (and
//! what full-text search indexes) never contains the sensitive value.
//!
//! Per detector the project chooses: `mask` (`[REDACTED:email]`), `hash` (`[email:1f2e…]`, an
//! HMAC with the server's secret, so equal values still correlate across traces) or `drop` (the
//! whole field goes). Custom regex rules add detectors of the project's own.

pub mod detectors;

use std::cell::RefCell;
use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};

use hmac::{Hmac, Mac};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;
use vigil_model::{LogEvent, Message, Span};

pub use detectors::{Detector, Detectors, Finding};

/// What happens to a sensitive value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Off,
    #[default]
    Mask,
    Hash,
    Drop,
}

/// A detector of the project's own: any match of `pattern` is treated like a built-in finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    pub name: String,
    pub pattern: String,
    #[serde(default)]
    pub action: Action,
}

/// `[redaction]` in `vigil.toml`: the defaults, then `[redaction.projects.<name>]` overrides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    pub enabled: bool,
    /// Action for every detector not listed in `detectors`.
    pub action: Action,
    /// Per detector: `off`, `mask`, `hash` or `drop`.
    pub detectors: BTreeMap<String, Action>,
    pub rules: Vec<CustomRule>,
    pub projects: BTreeMap<String, ProjectRedaction>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            action: Action::Mask,
            detectors: BTreeMap::new(),
            rules: Vec::new(),
            projects: BTreeMap::new(),
        }
    }
}

/// A project's differences from the defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectRedaction {
    pub enabled: Option<bool>,
    pub action: Option<Action>,
    pub detectors: BTreeMap<String, Action>,
    pub rules: Vec<CustomRule>,
}

impl RedactionConfig {
    /// Names every mistake at once: unknown detectors, rules that do not compile.
    pub fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        let mut check =
            |scope: &str, detectors: &BTreeMap<String, Action>, rules: &[CustomRule]| {
                for name in detectors.keys() {
                    if Detector::parse(name).is_none() {
                        errors.push(format!(
                            "{scope}: unknown detector `{name}` (known: {})",
                            Detector::ALL.map(Detector::as_str).join(", ")
                        ));
                    }
                }
                for r in rules {
                    if r.name.trim().is_empty() {
                        errors.push(format!("{scope}: a custom rule needs a `name`"));
                    }
                    if let Err(e) = Regex::new(&r.pattern) {
                        errors.push(format!("{scope}: rule `{}`: invalid pattern: {e}", r.name));
                    }
                }
            };
        check("[redaction]", &self.detectors, &self.rules);
        for (p, o) in &self.projects {
            check(&format!("[redaction.projects.{p}]"), &o.detectors, &o.rules);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// The settings that apply to one project.
    pub fn for_project(&self, project_name: &str) -> ProjectSettings {
        let o = self.projects.get(project_name);
        let enabled = o.and_then(|o| o.enabled).unwrap_or(self.enabled);
        let default = o.and_then(|o| o.action).unwrap_or(self.action);
        let mut actions = BTreeMap::new();
        for d in Detector::ALL {
            let a = o
                .and_then(|o| o.detectors.get(d.as_str()))
                .or_else(|| self.detectors.get(d.as_str()))
                .copied()
                .unwrap_or(default);
            actions.insert(d, if enabled { a } else { Action::Off });
        }
        let mut rules = if enabled {
            self.rules.clone()
        } else {
            Vec::new()
        };
        if enabled {
            rules.extend(o.map(|o| o.rules.clone()).unwrap_or_default());
        }
        ProjectSettings { actions, rules }
    }
}

/// The resolved settings of one project.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectSettings {
    pub actions: BTreeMap<Detector, Action>,
    pub rules: Vec<CustomRule>,
}

/// How many values of each kind were redacted (custom rules under their own names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RedactionCounts(pub BTreeMap<String, u64>);

impl RedactionCounts {
    fn add(&mut self, name: &str) {
        if let Some(c) = self.0.get_mut(name) {
            *c += 1;
        } else {
            self.0.insert(name.to_string(), 1);
        }
    }

    pub fn merge(&mut self, other: &RedactionCounts) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The outcome for one string.
#[derive(Clone)]
enum Text {
    Unchanged,
    Replaced(String),
    /// A `drop` detector matched: the whole field goes.
    Drop,
}

/// Texts shorter than this are scanned each time: looking them up would cost about as much.
const MEMO_FROM: usize = 64;
/// At most this many bytes of text are remembered per `Redactor::remembering` call.
const MEMO_BYTES: usize = 16 << 20;

/// Scan results of one `Redactor::remembering` call: text → (result, counts) for plain fields
/// and for identifiers.
struct Memo {
    /// The redactor whose results these are (its address): another one must not use them.
    redactor: usize,
    entries: HashMap<String, [Option<(Text, RedactionCounts)>; 2]>,
    bytes: usize,
}

thread_local! {
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// One project's compiled redaction.
pub struct Redactor {
    detectors: Detectors,
    /// Indexed by `Detector as usize`; `Off` for disabled detectors.
    actions: [Action; Detector::ALL.len()],
    any_detector: bool,
    entropy: Action,
    rules: Vec<(String, Regex, Action)>,
    secret: Vec<u8>,
}

impl Redactor {
    /// `secret` keys the HMAC of the `hash` action; it must stay the same across restarts for
    /// hashed values to keep correlating.
    pub fn new(settings: &ProjectSettings, secret: &[u8]) -> Result<Self, String> {
        let mut r = Self::builtin(settings, secret);
        for rule in &settings.rules {
            if rule.action == Action::Off {
                continue;
            }
            let re = Regex::new(&rule.pattern)
                .map_err(|e| format!("redaction rule `{}`: invalid pattern: {e}", rule.name))?;
            r.rules.push((rule.name.clone(), re, rule.action));
        }
        Ok(r)
    }

    /// The built-in detectors of `settings` without its custom rules (cannot fail).
    pub fn builtin(settings: &ProjectSettings, secret: &[u8]) -> Self {
        let mut actions = [Action::Off; Detector::ALL.len()];
        for (d, a) in &settings.actions {
            actions[*d as usize] = *a;
        }
        let enabled: Vec<Detector> = Detector::ALL
            .into_iter()
            .filter(|d| actions[*d as usize] != Action::Off)
            .collect();
        Self {
            detectors: Detectors::new(&enabled),
            entropy: actions[Detector::HighEntropySecret as usize],
            any_detector: !enabled.is_empty(),
            actions,
            rules: Vec::new(),
            secret: secret.to_vec(),
        }
    }

    /// Whether this redactor can change anything (a disabled project skips the walk entirely).
    pub fn is_active(&self) -> bool {
        self.any_detector || !self.rules.is_empty()
    }

    fn marker(&self, label: &str, value: &str, action: Action) -> String {
        match action {
            Action::Hash => {
                let tag = Hmac::<Sha256>::new_from_slice(&self.secret)
                    .map(|mut mac| {
                        mac.update(value.as_bytes());
                        hex::encode(&mac.finalize().into_bytes()[..8])
                    })
                    .unwrap_or_default();
                format!("[{label}:{tag}]")
            }
            _ => format!("[REDACTED:{label}]"),
        }
    }

    fn text(&self, s: &str, counts: &mut RedactionCounts) -> Text {
        self.text_as(s, counts, false)
    }

    /// Runs `f` with this redactor's results for long texts remembered until it returns (on this
    /// thread). Agents resend the same system prompt and history in every LLM call, and
    /// instrumentations keep a message both as an attribute and as a canonical message, so a
    /// request's spans hold many texts more than once; each is scanned once.
    pub fn remembering<R>(&self, f: impl FnOnce() -> R) -> R {
        MEMO.with(|m| {
            *m.borrow_mut() = Some(Memo {
                redactor: self as *const Redactor as usize,
                entries: HashMap::new(),
                bytes: 0,
            })
        });
        let out = f();
        MEMO.with(|m| *m.borrow_mut() = None);
        out
    }

    /// `ident`: the text identifies someone (a user or session id). There `mask` becomes `hash`,
    /// so users stay distinct and an erasure request can still find their data.
    fn text_as(&self, s: &str, counts: &mut RedactionCounts, ident: bool) -> Text {
        if s.len() < MEMO_FROM {
            return self.scan_text(s, counts, ident);
        }
        let me = self as *const Redactor as usize;
        let known = MEMO.with(|m| {
            m.borrow()
                .as_ref()
                .filter(|m| m.redactor == me)
                .and_then(|m| m.entries.get(s))
                .and_then(|e| e[usize::from(ident)].clone())
        });
        if let Some((text, found)) = known {
            counts.merge(&found);
            return text;
        }
        let mut found = RedactionCounts::default();
        let text = self.scan_text(s, &mut found, ident);
        counts.merge(&found);
        MEMO.with(|m| {
            if let Some(m) = m.borrow_mut().as_mut().filter(|m| m.redactor == me) {
                if m.bytes + s.len() <= MEMO_BYTES {
                    let e = m.entries.entry(s.to_string()).or_insert_with(|| {
                        m.bytes += s.len();
                        [None, None]
                    });
                    e[usize::from(ident)] = Some((text.clone(), found));
                }
            }
        });
        text
    }

    fn scan_text(&self, s: &str, counts: &mut RedactionCounts, ident: bool) -> Text {
        let upgrade = |a: Action| {
            if ident && a == Action::Mask {
                Action::Hash
            } else {
                a
            }
        };
        let mut findings = Vec::new();
        self.detectors.scan(s, &mut findings);
        let mut current: Option<String> = None;
        if !findings.is_empty() {
            let mut out = String::with_capacity(s.len());
            let mut at = 0;
            for f in &findings {
                let action = upgrade(self.actions[f.detector as usize]);
                counts.add(f.detector.as_str());
                if action == Action::Drop {
                    return Text::Drop;
                }
                out.push_str(&s[at..f.start]);
                out.push_str(&self.marker(f.detector.as_str(), &s[f.start..f.end], action));
                at = f.end;
            }
            out.push_str(&s[at..]);
            current = Some(out);
        }
        for (name, re, action) in &self.rules {
            let base = current.as_deref().unwrap_or(s);
            if !re.is_match(base) {
                continue;
            }
            let mut dropped = false;
            let replaced = re
                .replace_all(base, |c: &regex::Captures| {
                    counts.add(name);
                    if *action == Action::Drop {
                        dropped = true;
                    }
                    self.marker(name, &c[0], upgrade(*action))
                })
                .into_owned();
            if dropped {
                return Text::Drop;
            }
            current = Some(replaced);
        }
        match current {
            Some(s) => Text::Replaced(s),
            None => Text::Unchanged,
        }
    }

    /// Redacts a string in place; `false` means the field must be dropped.
    pub fn redact_string(&self, s: &mut String, counts: &mut RedactionCounts) -> bool {
        match self.text(s, counts) {
            Text::Unchanged => true,
            Text::Replaced(r) => {
                *s = r;
                true
            }
            Text::Drop => false,
        }
    }

    /// Redacts a user or session id: as `redact_string`, but masked values are hashed instead.
    pub fn redact_identifier(&self, s: &mut Option<String>, counts: &mut RedactionCounts) {
        if let Some(v) = s {
            match self.text_as(v, counts, true) {
                Text::Unchanged => {}
                Text::Replaced(r) => *v = r,
                Text::Drop => *s = None,
            }
        }
    }

    fn opt_string(&self, s: &mut Option<String>, counts: &mut RedactionCounts) {
        if let Some(v) = s {
            if !self.redact_string(v, counts) {
                *s = None;
            }
        }
    }

    /// Redacts a JSON value in place; `key` is the name it sits under (for key-like names).
    /// Returns `false` when the value must be dropped.
    pub fn redact_value(
        &self,
        key: Option<&str>,
        v: &mut Value,
        counts: &mut RedactionCounts,
    ) -> bool {
        match v {
            Value::String(s) => {
                // Under a password-like name anything is a secret; under another key-like name,
                // a long random-looking value is.
                let secret = self.entropy != Action::Off
                    && key.is_some_and(|k| {
                        (detectors::password_name(k) && !s.is_empty())
                            || (detectors::key_like_name(k) && detectors::high_entropy_secret(s))
                    });
                if secret {
                    counts.add(Detector::HighEntropySecret.as_str());
                    if self.entropy == Action::Drop {
                        return false;
                    }
                    *s = self.marker(Detector::HighEntropySecret.as_str(), s, self.entropy);
                    return true;
                }
                self.redact_string(s, counts)
            }
            // A card or an SSN sent as a JSON number (`{"card": 4111111111111111}`).
            Value::Number(n) if n.as_u64().is_some_and(|x| x >= 100_000_000) => {
                match self.text(&n.to_string(), counts) {
                    Text::Unchanged => true,
                    Text::Replaced(r) => {
                        *v = Value::String(r);
                        true
                    }
                    Text::Drop => false,
                }
            }
            Value::Array(items) => {
                for item in items.iter_mut() {
                    if !self.redact_value(key, item, counts) {
                        *item = Value::Null;
                    }
                }
                true
            }
            Value::Object(map) => {
                self.redact_map(map, counts);
                true
            }
            _ => true,
        }
    }

    fn redact_map(&self, map: &mut Map<String, Value>, counts: &mut RedactionCounts) {
        let mut gone: Vec<String> = Vec::new();
        for (k, v) in map.iter_mut() {
            if !self.redact_value(Some(k), v, counts) {
                gone.push(k.clone());
            }
        }
        for k in gone {
            map.remove(&k);
        }
    }

    fn opt_value(&self, key: Option<&str>, v: &mut Option<Value>, counts: &mut RedactionCounts) {
        if let Some(x) = v {
            if !self.redact_value(key, x, counts) {
                *v = None;
            }
        }
    }

    fn messages(&self, messages: &mut [Message], counts: &mut RedactionCounts) {
        for m in messages {
            self.opt_string(&mut m.content, counts);
            for tc in &mut m.tool_calls {
                if !self.redact_value(None, &mut tc.arguments, counts) {
                    tc.arguments = Value::Null;
                }
            }
        }
    }

    /// Redacts every free-text field of a span. Ids, times, numbers and model names are not
    /// touched; the counts are added to `counts` and noted on the span as `vigil.redacted`.
    pub fn redact_span(&self, span: &mut Span, counts: &mut RedactionCounts) {
        if !self.is_active() {
            return;
        }
        let mut here = RedactionCounts::default();
        if !self.redact_string(&mut span.name, &mut here) {
            span.name = "[REDACTED]".into();
        }
        self.redact_identifier(&mut span.user_id, &mut here);
        self.redact_identifier(&mut span.session_id, &mut here);
        self.opt_string(&mut span.error_message, &mut here);
        self.messages(&mut span.input_messages, &mut here);
        self.messages(&mut span.output_messages, &mut here);
        self.opt_value(None, &mut span.tool_arguments, &mut here);
        self.opt_value(None, &mut span.tool_result, &mut here);
        self.redact_map(&mut span.attributes, &mut here);
        self.redact_map(&mut span.resource_attributes, &mut here);
        for e in &mut span.events {
            self.redact_map(&mut e.attributes, &mut here);
        }
        for l in &mut span.links {
            self.redact_map(&mut l.attributes, &mut here);
        }
        if !here.is_empty() {
            let note = here
                .0
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(",");
            span.attributes
                .insert("vigil.redacted".into(), Value::String(note));
            counts.merge(&here);
        }
    }

    pub fn redact_log(&self, event: &mut LogEvent, counts: &mut RedactionCounts) {
        if !self.is_active() {
            return;
        }
        if !self.redact_value(None, &mut event.body, counts) {
            event.body = Value::Null;
        }
        self.redact_map(&mut event.attributes, counts);
        self.redact_map(&mut event.resource_attributes, counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redactor(cfg: &str) -> Redactor {
        let cfg: RedactionConfig = toml::from_str(cfg).unwrap();
        cfg.validate().unwrap();
        Redactor::new(&cfg.for_project("default"), b"server-secret").unwrap()
    }

    /// Remembering scan results within a batch changes nothing in what is stored or counted:
    /// repeated long texts (with and without findings, as fields and as identifiers) come out as
    /// they do when each is scanned, and the counts include every occurrence.
    #[test]
    fn remembering_gives_the_same_spans_and_counts() {
        let r = redactor("");
        let long_pii = format!(
            "{} write to bob@example.com or call 4111-1111-1111-1111",
            "x".repeat(80)
        );
        let long_clean =
            "You are a helpful support agent. Answer briefly and cite the order id.".repeat(2);
        let mut spans = Vec::new();
        for i in 0..6 {
            let mut s = Span {
                name: format!("call {i}"),
                user_id: Some(long_pii.clone()),
                input_messages: vec![
                    Message {
                        role: "system".into(),
                        content: Some(long_clean.clone()),
                        ..Default::default()
                    },
                    Message {
                        role: "user".into(),
                        content: Some(long_pii.clone()),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            };
            s.attributes
                .insert("gen_ai.prompt".into(), Value::String(long_pii.clone()));
            s.attributes
                .insert("note".into(), Value::String(long_clean.clone()));
            spans.push(s);
        }
        let (mut plain, mut remembered) = (spans.clone(), spans);
        let (mut c1, mut c2) = (RedactionCounts::default(), RedactionCounts::default());
        for s in plain.iter_mut() {
            r.redact_span(s, &mut c1);
        }
        r.remembering(|| {
            for s in remembered.iter_mut() {
                r.redact_span(s, &mut c2);
            }
        });
        assert_eq!(plain, remembered);
        assert_eq!(c1, c2);
        assert_eq!(c1.0["email"], 18, "{c1:?}");
        assert!(!remembered[0].input_messages[1]
            .content
            .as_deref()
            .unwrap()
            .contains("bob@"));
        // The user id is hashed, not masked, though the same text is masked as a message.
        assert_ne!(
            remembered[0].user_id,
            remembered[0].input_messages[1].content
        );
    }

    #[test]
    fn masks_by_default_and_counts() {
        let r = redactor("");
        let mut s = "mail bob@example.com, card 4111-1111-1111-1111".to_string();
        let mut c = RedactionCounts::default();
        assert!(r.redact_string(&mut s, &mut c));
        assert_eq!(s, "mail [REDACTED:email], card [REDACTED:payment_card]");
        assert_eq!(c.0["email"], 1);
        assert_eq!(c.0["payment_card"], 1);
    }

    #[test]
    fn hash_correlates_equal_values() {
        let r = redactor("detectors = { email = \"hash\" }");
        let mut c = RedactionCounts::default();
        let (mut a, mut b, mut d) = (
            "a@x.io".to_string(),
            "to a@x.io".to_string(),
            "b@x.io".to_string(),
        );
        r.redact_string(&mut a, &mut c);
        r.redact_string(&mut b, &mut c);
        r.redact_string(&mut d, &mut c);
        assert!(a.starts_with("[email:"));
        assert_eq!(format!("to {a}"), b);
        assert_ne!(a, d);
    }

    #[test]
    fn drop_removes_the_attribute_and_entropy_uses_key_names() {
        let r = redactor("detectors = { payment_card = \"drop\" }");
        let mut span = Span::default();
        span.attributes
            .insert("card".into(), json!("4111111111111111"));
        span.attributes.insert("note".into(), json!("fine"));
        span.attributes
            .insert("x-api-key".into(), json!("Zx81Kq0pLm3Ns7Rt2Vw9"));
        span.tool_arguments = Some(json!({"to": "c@d.co", "amount": 5}));
        let mut c = RedactionCounts::default();
        r.redact_span(&mut span, &mut c);
        assert!(!span.attributes.contains_key("card"));
        assert_eq!(span.attributes["note"], "fine");
        assert_eq!(
            span.attributes["x-api-key"],
            "[REDACTED:high_entropy_secret]"
        );
        assert_eq!(
            span.tool_arguments,
            Some(json!({"to": "[REDACTED:email]", "amount": 5}))
        );
        assert_eq!(
            span.attributes["vigil.redacted"],
            "email:1,high_entropy_secret:1,payment_card:1"
        );
    }

    #[test]
    fn numbers_and_passwords() {
        let r = redactor("");
        let mut c = RedactionCounts::default();
        let mut v = json!({"card": 4111111111111111u64, "qty": 3, "password": "Summer2024!", "order": 123456789012u64});
        assert!(r.redact_value(None, &mut v, &mut c));
        assert_eq!(v["card"], "[REDACTED:payment_card]");
        assert_eq!(v["qty"], 3);
        assert_eq!(v["order"], 123456789012u64);
        assert_eq!(v["password"], "[REDACTED:high_entropy_secret]");
    }

    #[test]
    fn custom_rules_and_project_overrides() {
        let cfg: RedactionConfig = toml::from_str(
            r#"
            rules = [{ name = "ticket", pattern = "TCK-[0-9]{6}" }]
            [projects.lab]
            enabled = false
            "#,
        )
        .unwrap();
        let on = Redactor::new(&cfg.for_project("default"), b"k").unwrap();
        let off = Redactor::new(&cfg.for_project("lab"), b"k").unwrap();
        let mut c = RedactionCounts::default();
        let mut s = "see TCK-123456".to_string();
        on.redact_string(&mut s, &mut c);
        assert_eq!(s, "see [REDACTED:ticket]");
        assert!(!off.is_active());
        let bad: RedactionConfig = toml::from_str(
            "detectors = { emial = \"mask\" }\nrules = [{ name = \"x\", pattern = \"(\" }]",
        )
        .unwrap();
        let err = bad.validate().unwrap_err();
        assert!(
            err.contains("unknown detector `emial`") && err.contains("rule `x`"),
            "{err}"
        );
    }
}
