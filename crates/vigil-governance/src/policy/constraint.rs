//! Argument constraints in a policy: one line each, `<argument> <operator> <value>`.
//!
//! ```text
//! amount <= 500
//! currency in ['USD', 'EUR']
//! path starts_with '/srv/exports/'
//! url host_in ['api.stripe.com', '*.internal.example.com']
//! customer.tier != 'enterprise'
//! query matches '^SELECT '
//! ```
//!
//! The argument is a dotted path into the call's JSON arguments (`items[0].sku` works too).
//! A constraint on a missing argument is violated: a policy never assumes what it cannot see.

use regex::Regex;
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Constraint {
    pub source: String,
    path: Vec<PathStep>,
    op: Op,
    literal: Literal,
    /// Compiled once for `matches`.
    regex: Option<Regex>,
}

#[derive(Clone, Debug, PartialEq)]
enum PathStep {
    Key(String),
    Index(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    In,
    NotIn,
    StartsWith,
    NotStartsWith,
    Matches,
    HostIn,
}

const OPERATORS: &str =
    "<, <=, >, >=, ==, !=, in, not_in, starts_with, not_starts_with, matches, host_in";

#[derive(Clone, Debug, PartialEq)]
enum Literal {
    Number(f64),
    Str(String),
    Bool(bool),
    List(Vec<Literal>),
}

impl Constraint {
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut p = Parser { s: source, at: 0 };
        p.skip_ws();
        let path = p.path()?;
        p.skip_ws();
        let op = p.op()?;
        p.skip_ws();
        let literal = p.literal(0)?;
        p.skip_ws();
        if p.at != source.len() {
            return Err(format!("unexpected `{}` after the value", &source[p.at..]));
        }
        let regex = match (&op, &literal) {
            (Op::Matches, Literal::Str(s)) => {
                Some(Regex::new(s).map_err(|e| format!("invalid regular expression: {e}"))?)
            }
            (Op::Matches, _) => return Err("`matches` needs a quoted regular expression".into()),
            _ => None,
        };
        match (&op, &literal) {
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Literal::Number(_)) => {}
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, _) => {
                return Err("`<`, `<=`, `>` and `>=` compare with a number".into())
            }
            (Op::In | Op::NotIn | Op::HostIn, Literal::List(_)) => {}
            (Op::In | Op::NotIn | Op::HostIn, _) => {
                return Err("`in`, `not_in` and `host_in` need a list: ['a', 'b']".into())
            }
            (Op::StartsWith | Op::NotStartsWith, Literal::Str(_)) => {}
            (Op::StartsWith | Op::NotStartsWith, _) => {
                return Err("`starts_with` needs a quoted string".into())
            }
            _ => {}
        }
        Ok(Self {
            source: source.trim().to_string(),
            path,
            op,
            literal,
            regex,
        })
    }

    /// `None` when the arguments satisfy the constraint, else why not.
    pub fn violation(&self, args: &Value) -> Option<String> {
        let Some(v) = self.lookup(args) else {
            return Some(format!(
                "argument `{}` is missing, so `{}` cannot hold",
                self.path_text(),
                self.source
            ));
        };
        if self.holds(v) {
            None
        } else {
            Some(format!(
                "`{}` is {}, which violates `{}`",
                self.path_text(),
                short(v),
                self.source
            ))
        }
    }

    fn path_text(&self) -> String {
        let mut out = String::new();
        for s in &self.path {
            match s {
                PathStep::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                PathStep::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    fn lookup<'a>(&self, args: &'a Value) -> Option<&'a Value> {
        let mut v = args;
        for s in &self.path {
            v = match s {
                PathStep::Key(k) => v.get(k)?,
                PathStep::Index(i) => v.get(*i)?,
            };
        }
        Some(v)
    }

    fn holds(&self, v: &Value) -> bool {
        match (self.op, &self.literal) {
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Literal::Number(n)) => {
                let Some(x) = as_number(v) else { return false };
                match self.op {
                    Op::Lt => x < *n,
                    Op::Le => x <= *n,
                    Op::Gt => x > *n,
                    _ => x >= *n,
                }
            }
            (Op::Eq, lit) => equals(v, lit),
            (Op::Ne, lit) => !equals(v, lit),
            (Op::In, Literal::List(items)) => items.iter().any(|l| equals(v, l)),
            (Op::NotIn, Literal::List(items)) => !items.iter().any(|l| equals(v, l)),
            (Op::StartsWith | Op::NotStartsWith, Literal::Str(prefix)) => {
                let Some(s) = v.as_str() else { return false };
                // `/srv/exports/../../etc/passwd` starts with the prefix as text but not as a path.
                let starts = normalize_path(s).starts_with(prefix.as_str());
                starts == (self.op == Op::StartsWith)
            }
            (Op::Matches, _) => match (v.as_str(), &self.regex) {
                (Some(s), Some(re)) => re.is_match(s),
                _ => false,
            },
            (Op::HostIn, Literal::List(items)) => {
                let Some(host) = v.as_str().and_then(url_host) else {
                    return false;
                };
                items.iter().any(|l| match l {
                    Literal::Str(pattern) => host_matches(&host, pattern),
                    _ => false,
                })
            }
            _ => false,
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let cut = (0..=80).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

fn equals(v: &Value, lit: &Literal) -> bool {
    match lit {
        Literal::Number(n) => as_number(v) == Some(*n),
        Literal::Str(s) => v.as_str() == Some(s.as_str()),
        Literal::Bool(b) => v.as_bool() == Some(*b),
        Literal::List(_) => false,
    }
}

/// Resolves `.` and `..` lexically, so a prefix check cannot be escaped with `../`.
fn normalize_path(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = if absolute {
        "/".to_string()
    } else {
        String::new()
    };
    out.push_str(&parts.join("/"));
    if p.ends_with('/') && !parts.is_empty() {
        out.push('/');
    }
    out
}

/// The host of a URL (or of a bare `host[:port]`), lower-cased.
fn url_host(s: &str) -> Option<String> {
    let rest = s.trim();
    let rest = rest.split_once("://").map_or(rest, |(_, r)| r);
    // Browsers and URL libraries treat `\\` like `/` in http(s) URLs: `https://evil.io\\@good.com`
    // goes to evil.io, so the authority ends there too.
    let authority = rest.split(['/', '?', '#', '\\']).next()?;
    let hostport = authority.rsplit('@').next()?;
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        hostport.split(':').next()?
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    // Anything but a plain host name or address (spaces, escapes, control characters) is no host.
    let plain = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    (!host.is_empty() && plain).then_some(host)
}

/// `*.example.com` matches subdomains (not `example.com` itself); anything else matches exactly.
fn host_matches(host: &str, pattern: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    match p.strip_prefix("*.") {
        Some(base) => host.ends_with(&format!(".{base}")),
        None => host == p,
    }
}

struct Parser<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.at..]
    }

    fn skip_ws(&mut self) {
        let r = self.rest();
        self.at += r.len() - r.trim_start().len();
    }

    fn ident(&mut self) -> Option<String> {
        let r = self.rest();
        let n = r
            .char_indices()
            .take_while(|(i, c)| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' && *i > 0)
            .map(|(i, c)| i + c.len_utf8())
            .last()?;
        if r.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        self.at += n;
        Some(r[..n].to_string())
    }

    fn path(&mut self) -> Result<Vec<PathStep>, String> {
        let mut steps = vec![PathStep::Key(
            self.ident()
                .ok_or("expected an argument name at the start, like `amount <= 500`")?,
        )];
        loop {
            if self.rest().starts_with('.') {
                self.at += 1;
                steps.push(PathStep::Key(
                    self.ident().ok_or("expected a field name after `.`")?,
                ));
            } else if self.rest().starts_with('[') {
                let r = self.rest();
                let close = r.find(']').ok_or("missing `]`")?;
                let i: usize = r[1..close]
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{}` is not a list index", &r[1..close]))?;
                self.at += close + 1;
                steps.push(PathStep::Index(i));
            } else {
                return Ok(steps);
            }
        }
    }

    fn op(&mut self) -> Result<Op, String> {
        let r = self.rest();
        let word: String = if r.starts_with(|c: char| c.is_ascii_alphabetic()) {
            r.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        } else {
            r.chars().take_while(|c| "<>=!".contains(*c)).collect()
        };
        let op = match word.as_str() {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "in" => Op::In,
            "not_in" => Op::NotIn,
            "starts_with" => Op::StartsWith,
            "not_starts_with" => Op::NotStartsWith,
            "matches" => Op::Matches,
            "host_in" => Op::HostIn,
            "" => return Err(format!("expected an operator ({OPERATORS})")),
            other => {
                return Err(format!(
                    "unknown operator `{other}` (expected one of {OPERATORS})"
                ))
            }
        };
        self.at += word.len();
        Ok(op)
    }

    fn literal(&mut self, depth: u32) -> Result<Literal, String> {
        let r = self.rest();
        let Some(c) = r.chars().next() else {
            return Err("expected a value after the operator".into());
        };
        match c {
            '\'' | '"' => {
                let body = &r[1..];
                let end = body
                    .find(c)
                    .ok_or_else(|| format!("unterminated string: missing closing {c}"))?;
                self.at += end + 2;
                Ok(Literal::Str(body[..end].to_string()))
            }
            '[' => {
                if depth > 0 {
                    return Err("lists cannot be nested".into());
                }
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.rest().starts_with(']') {
                        self.at += 1;
                        return Ok(Literal::List(items));
                    }
                    items.push(self.literal(depth + 1)?);
                    self.skip_ws();
                    if self.rest().starts_with(',') {
                        self.at += 1;
                    } else if !self.rest().starts_with(']') {
                        return Err("expected `,` or `]` in the list".into());
                    }
                }
            }
            _ => {
                let word: String = r
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != ',' && *c != ']')
                    .collect();
                self.at += word.len();
                match word.as_str() {
                    "true" => Ok(Literal::Bool(true)),
                    "false" => Ok(Literal::Bool(false)),
                    w => w
                        .parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .map(Literal::Number)
                        .ok_or_else(|| {
                            format!("`{w}` is not a number, true/false, a quoted string or a list")
                        }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(c: &str, args: Value) -> bool {
        Constraint::parse(c).unwrap().violation(&args).is_none()
    }

    #[test]
    fn numbers_strings_lists() {
        assert!(check("amount <= 500", json!({"amount": 500})));
        assert!(!check("amount <= 500", json!({"amount": 500.01})));
        assert!(check("amount <= 500", json!({"amount": "42"})));
        assert!(!check("amount <= 500", json!({})));
        assert!(check(
            "currency in ['USD', \"EUR\"]",
            json!({"currency": "EUR"})
        ));
        assert!(!check(
            "currency not_in ['USD']",
            json!({"currency": "USD"})
        ));
        assert!(check(
            "customer.tier != 'enterprise'",
            json!({"customer": {"tier": "free"}})
        ));
        assert!(check(
            "items[1].qty < 3",
            json!({"items": [{}, {"qty": 2}]})
        ));
        assert!(check("dry_run == true", json!({"dry_run": true})));
        assert!(check(
            "query matches '^SELECT '",
            json!({"query": "SELECT 1"})
        ));
    }

    #[test]
    fn paths_cannot_escape_their_prefix() {
        let c = "path starts_with '/srv/exports/'";
        assert!(check(c, json!({"path": "/srv/exports/a.csv"})));
        assert!(!check(c, json!({"path": "/srv/exports/../../etc/passwd"})));
        assert!(!check(c, json!({"path": "/srv/exportsX/a"})));
    }

    #[test]
    fn hosts_come_from_urls() {
        let c = "url host_in ['api.stripe.com', '*.example.com']";
        assert!(check(
            c,
            json!({"url": "https://api.stripe.com/v1/refunds"})
        ));
        assert!(check(c, json!({"url": "https://eu.example.com:8443/x"})));
        assert!(!check(c, json!({"url": "https://api.stripe.com.evil.io/"})));
        assert!(!check(c, json!({"url": "https://api.stripe.com@evil.io/"})));
        assert!(!check(
            c,
            json!({"url": "https://evil.io\\@api.stripe.com/"})
        ));
        assert!(!check(c, json!({"url": "https://example.com/"})));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = |s: &str| Constraint::parse(s).unwrap_err();
        assert!(e("amount <== 500").contains("unknown operator `<==`"));
        assert!(e("amount <= 'x'").contains("compare with a number"));
        assert!(e("currency in 'USD'").contains("need a list"));
        assert!(e("path starts_with '/srv").contains("unterminated"));
        assert!(e("<= 5").contains("argument name"));
        assert!(e("a == 1 extra").contains("unexpected"));
    }
}
