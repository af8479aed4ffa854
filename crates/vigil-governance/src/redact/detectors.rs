//! What counts as sensitive: one regular expression per detector to find candidates, and a
//! validator where a pattern alone would flag innocent text (Luhn for cards, mod-97 for IBANs,
//! number ranges for SSNs, a real parse for IP addresses).

use std::net::Ipv6Addr;

use regex::{Regex, RegexSet};

/// A kind of sensitive value. The string names are stable: they appear in redaction markers,
/// configuration and the stored counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    PrivateKey,
    Jwt,
    AnthropicKey,
    OpenaiKey,
    AwsAccessKey,
    GithubToken,
    SlackToken,
    Email,
    Iban,
    PaymentCard,
    UsSsn,
    IpAddress,
    Phone,
    /// A long random-looking value under a key-like name (`api_key`, `token`, `password`…).
    HighEntropySecret,
}

impl Detector {
    /// In priority order: when two detectors claim overlapping text, the earlier one wins
    /// (an `sk-ant-…` key is an Anthropic key, not an OpenAI one).
    pub const ALL: [Detector; 14] = [
        Self::PrivateKey,
        Self::Jwt,
        Self::AnthropicKey,
        Self::OpenaiKey,
        Self::AwsAccessKey,
        Self::GithubToken,
        Self::SlackToken,
        Self::Email,
        Self::Iban,
        Self::PaymentCard,
        Self::UsSsn,
        Self::IpAddress,
        Self::Phone,
        Self::HighEntropySecret,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrivateKey => "private_key",
            Self::Jwt => "jwt",
            Self::AnthropicKey => "anthropic_key",
            Self::OpenaiKey => "openai_key",
            Self::AwsAccessKey => "aws_access_key",
            Self::GithubToken => "github_token",
            Self::SlackToken => "slack_token",
            Self::Email => "email",
            Self::Iban => "iban",
            Self::PaymentCard => "payment_card",
            Self::UsSsn => "us_ssn",
            Self::Phone => "phone",
            Self::IpAddress => "ip_address",
            Self::HighEntropySecret => "high_entropy_secret",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Secrets are credentials; the rest is personal data.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            Self::PrivateKey
                | Self::Jwt
                | Self::AnthropicKey
                | Self::OpenaiKey
                | Self::AwsAccessKey
                | Self::GithubToken
                | Self::SlackToken
                | Self::HighEntropySecret
        )
    }

    /// The candidate pattern, or `None` for detectors that look at attribute names instead.
    fn pattern(self) -> Option<&'static str> {
        Some(match self {
            Self::PrivateKey => {
                r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
            }
            Self::Jwt => r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{16,}",
            Self::AnthropicKey => r"\bsk-ant-[A-Za-z0-9]{2,8}-[A-Za-z0-9_-]{20,}",
            Self::OpenaiKey => r"\bsk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{20,}",
            Self::AwsAccessKey => r"\b(?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA)[A-Z0-9]{16}\b",
            Self::GithubToken => {
                r"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})\b"
            }
            Self::SlackToken => r"\bxox[abposre]-[0-9A-Za-z]+(?:-[0-9A-Za-z]+){1,6}",
            Self::Email => {
                r"\b[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b"
            }
            Self::Iban => r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
            Self::PaymentCard => r"\b[0-9](?:[ -]?[0-9]){12,18}\b",
            Self::UsSsn => r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
            Self::Phone => {
                r"\+[0-9]{1,3}(?:[ .-]?\(?[0-9]{1,6}\)?){1,6}\b|(?:\b1[ .-])?(?:\([0-9]{3}\)[ .-]?|\b[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}\b"
            }
            Self::IpAddress => {
                r"\b(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}\b|(?i:[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7})"
            }
            Self::HighEntropySecret => return None,
        })
    }

    /// Whether a candidate the pattern found really is one of these.
    fn validate(self, text: &str, start: usize, end: usize) -> bool {
        let m = &text[start..end];
        match self {
            Self::PaymentCard => valid_card(m),
            Self::Iban => valid_iban(m),
            Self::UsSsn => valid_ssn(m),
            Self::Phone => valid_phone(text, start, end),
            Self::IpAddress => valid_ip(text, start, end),
            // Placeholders (`xoxb-YOUR-TOKEN-HERE`) have no digits; real tokens have many.
            Self::SlackToken => m.len() >= 24 && m.bytes().filter(u8::is_ascii_digit).count() >= 10,
            _ => true,
        }
    }
}

/// A validated sensitive value in a string: byte range and what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub detector: Detector,
}

/// The compiled detectors. One `RegexSet` pass tells which detectors have candidates at all, so
/// clean text (the common case) is scanned once.
pub struct Detectors {
    set: RegexSet,
    /// `None` only if it failed to build, in which case nothing is skipped.
    prefixes: Option<aho_corasick::AhoCorasick>,
    /// Parallel to `set`: the detector and its own regex for locating matches.
    each: Vec<(Detector, Regex)>,
}

impl Detectors {
    pub fn new(enabled: &[Detector]) -> Self {
        let each: Vec<(Detector, Regex)> = enabled
            .iter()
            .filter_map(|d| d.pattern().map(|p| (*d, p)))
            .filter_map(|(d, p)| Regex::new(p).ok().map(|r| (d, r)))
            .collect();
        let set = RegexSet::new(each.iter().map(|(_, r)| r.as_str())).unwrap_or_else(|_| {
            // Unreachable: every pattern above compiled on its own line. An empty set is safe.
            RegexSet::empty()
        });
        let prefixes = aho_corasick::AhoCorasick::new(TOKEN_PREFIXES).ok();
        Self {
            set,
            prefixes,
            each,
        }
    }

    /// Validated findings in `text`, non-overlapping, in order.
    pub fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        out.clear();
        if text.len() < 6 || self.each.is_empty() {
            return;
        }
        // Text without a digit, an `@` or a token prefix (the bulk of prose) skips the regex pass.
        if !text.bytes().any(|b| b.is_ascii_digit() || b == b'@')
            && self.prefixes.as_ref().is_some_and(|p| !p.is_match(text))
        {
            return;
        }
        for i in self.set.matches(text).iter() {
            let (detector, re) = &self.each[i];
            for m in re.find_iter(text) {
                let (start, end) = trim_match(text, *detector, m.start(), m.end());
                if start < end && detector.validate(text, start, end) {
                    out.push(Finding {
                        start,
                        end,
                        detector: *detector,
                    });
                }
            }
        }
        resolve_overlaps(out);
    }
}

/// The fixed prefixes of keys and tokens, for the pre-check: every detector's match holds a digit,
/// an `@`, or one of these (an AWS key id has no digit one time in 28).
const TOKEN_PREFIXES: [&str; 16] = [
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
    "AROA",
    "AIDA",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "ghr_",
    "github_pat_",
    "xox",
    "-----BEGIN",
    "sk-",
    "eyJ",
];

/// Phone and IPv6 candidates can carry separators at their edges.
fn trim_match(text: &str, d: Detector, start: usize, end: usize) -> (usize, usize) {
    if !matches!(d, Detector::Phone | Detector::IpAddress) {
        return (start, end);
    }
    let s = &text[start..end];
    let lead = s.len() - s.trim_start_matches([' ', '.', '-']).len();
    let trail = s.len() - s.trim_end_matches([' ', '.', '-']).len();
    (start + lead, end - trail.min(s.len() - lead))
}

/// Keeps the highest-priority finding among overlapping ones (earlier in `Detector::ALL`), then the
/// longest, so `sk-ant-…` is one Anthropic key and a card number is not also a phone number.
/// O(k log k) in the number of candidates: adversarial text with a candidate at every position
/// must not turn this into a quadratic loop.
fn resolve_overlaps(found: &mut Vec<Finding>) {
    if found.len() < 2 {
        return;
    }
    found.sort_by_key(|f| (f.detector, f.start, std::cmp::Reverse(f.end)));
    // Kept intervals, non-overlapping, by start.
    let mut kept: std::collections::BTreeMap<usize, Finding> = std::collections::BTreeMap::new();
    for f in found.drain(..) {
        let before = kept
            .range(..=f.start)
            .next_back()
            .map(|(_, k)| k.end > f.start);
        let after = kept.range(f.start..).next().map(|(_, k)| k.start < f.end);
        if before != Some(true) && after != Some(true) {
            kept.insert(f.start, f);
        }
    }
    *found = kept.into_values().collect();
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

pub fn luhn_ok(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn valid_card(m: &str) -> bool {
    // One separator style throughout (`4111 1111 …` or `4111-1111-…`), not a mix.
    if m.contains(' ') && m.contains('-') {
        return false;
    }
    let d = digits(m);
    if !(13..=19).contains(&d.len()) || !luhn_ok(&d) {
        return false;
    }
    let prefix = |n: usize| d.iter().take(n).fold(0u32, |a, &x| a * 10 + u32::from(x));
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    p1 == 4
        || (51..=55).contains(&p2)
        || (2221..=2720).contains(&p4)
        || p2 == 34
        || p2 == 37
        || p4 == 6011
        || p2 == 65
        || (644..=649).contains(&p3)
        || p2 == 35
        || p2 == 36
        || p2 == 38
        || (300..=305).contains(&p3)
        || p2 == 62
}

fn valid_iban(m: &str) -> bool {
    let compact: Vec<u8> = m.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    // Move the first four characters to the end, letters become 10..35, and the number mod 97 is 1.
    let mut rem: u32 = 0;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn valid_ssn(m: &str) -> bool {
    let d = digits(m);
    let area = d[..3].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let group = d[3..5].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn valid_phone(text: &str, start: usize, end: usize) -> bool {
    let m = &text[start..end];
    let d = digits(m);
    let international = m.starts_with('+');
    let plausible = if international {
        (8..=15).contains(&d.len())
    } else {
        (10..=11).contains(&d.len())
    };
    if !plausible {
        return false;
    }
    // Dates and times are digit groups too: `2026-11-24 10:15` has the wrong shape, but keep
    // out anything glued to more digits, letters or dots (versions, ids, decimals).
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let dotted = |c: Option<char>| c == Some('.');
    if glued(before)
        || glued(after)
        || (dotted(after) && text[end + 1..].starts_with(|c: char| c.is_ascii_digit()))
    {
        return false;
    }
    // A leading year-like group followed by a two-digit group is a date (`2026-11-…`).
    let groups: Vec<&str> = m
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    if groups.len() >= 2 && groups[0].len() == 4 && groups[1].len() == 2 && !international {
        return false;
    }
    true
}

fn valid_ip(text: &str, start: usize, end: usize) -> bool {
    let m = &text[start..end];
    if m.contains('.') {
        // IPv4: not part of a longer dotted run (`1.2.3.4.5`) or a version string (`v1.2.3.4`).
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        // Only the few bytes before the match are looked at (never the whole prefix: that would
        // make a text full of addresses quadratic).
        let prefix = text[..start].trim_end().as_bytes();
        let version_like =
            prefix.len() >= 7 && prefix[prefix.len() - 7..].eq_ignore_ascii_case(b"version");
        let versioned = matches!(before, Some('.') | Some('v') | Some('V'));
        let dotted_on =
            after == Some('.') && text[end + 1..].starts_with(|c: char| c.is_ascii_digit());
        return !(versioned || dotted_on || version_like);
    }
    // IPv6: must parse, and look like an address rather than a path (`a::b`) or a time (`10:15:00`).
    let Ok(addr) = m.parse::<Ipv6Addr>() else {
        return false;
    };
    let groups: Vec<&str> = m.split(':').filter(|g| !g.is_empty()).collect();
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    !glued(before)
        && !glued(after)
        && !addr.is_unspecified()
        && (groups.len() >= 3 || groups.iter().any(|g| g.len() == 4))
}

/// Bits of entropy per character: random tokens score above 3.5, words and ids below.
pub fn shannon_entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The part of a dotted or slashed name after its last separator (`llm.api_key` → `api_key`).
/// Byte-wise: it runs for every string value, and a `char`-pattern split from the end was a
/// tenth of redaction's time.
fn last_segment(name: &str) -> &[u8] {
    let b = name.as_bytes();
    match b.iter().rposition(|c| matches!(c, b'.' | b'/')) {
        Some(i) => &b[i + 1..],
        None => b,
    }
}

/// Attribute or JSON field names under which a value is a credential. Case-insensitive, without
/// allocating: it runs for every string attribute that could be a token.
pub fn key_like_name(name: &str) -> bool {
    let last = last_segment(name);
    const WORDS: [&[u8]; 12] = [
        b"secret",
        b"token",
        b"password",
        b"passwd",
        b"api_key",
        b"apikey",
        b"api-key",
        b"authorization",
        b"credential",
        b"private_key",
        b"access_key",
        b"signature",
    ];
    let contains = |w: &[u8]| last.windows(w.len()).any(|win| win.eq_ignore_ascii_case(w));
    // Token *counts* (`gen_ai.usage.input_tokens`) are not tokens.
    WORDS.iter().any(|w| contains(w)) && !contains(b"tokens") && !contains(b"token_count")
}

/// Names under which any value is a secret, random-looking or not (`Summer2024!` is a password).
pub fn password_name(name: &str) -> bool {
    let last = last_segment(name);
    [&b"password"[..], b"passwd", b"passphrase"]
        .iter()
        .any(|w| last.windows(w.len()).any(|win| win.eq_ignore_ascii_case(w)))
}

/// A value under a key-like name that looks random enough to be a secret.
pub fn high_entropy_secret(value: &str) -> bool {
    looks_like_token(value) && {
        let v = value.trim();
        let v = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("Basic "))
            .unwrap_or(v);
        shannon_entropy(v) >= 3.5
    }
}

/// The cheap half of `high_entropy_secret`: long enough and a single word (after an auth scheme).
pub fn looks_like_token(value: &str) -> bool {
    let v = value.trim();
    let v = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("Basic "))
        .unwrap_or(v);
    v.len() >= 16
        && v.len() <= 4096
        && !v.contains(char::is_whitespace)
        && shannon_entropy(v) >= 3.5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(Detector, String)> {
        let d = Detectors::new(&Detector::ALL);
        let mut out = Vec::new();
        d.scan(text, &mut out);
        out.iter()
            .map(|f| (f.detector, text[f.start..f.end].to_string()))
            .collect()
    }

    #[test]
    fn every_pattern_compiles() {
        for d in Detector::ALL {
            if let Some(p) = d.pattern() {
                assert!(Regex::new(p).is_ok(), "{d:?}");
            }
        }
    }

    #[test]
    fn cards_need_luhn() {
        assert_eq!(
            found("card 4111 1111 1111 1111 ok"),
            vec![(Detector::PaymentCard, "4111 1111 1111 1111".into())]
        );
        assert!(found("order 4111 1111 1111 1112").is_empty());
    }

    #[test]
    fn anthropic_key_beats_openai() {
        let k = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789";
        assert_eq!(found(k), vec![(Detector::AnthropicKey, k.into())]);
    }

    #[test]
    fn ibans_and_ssns_are_checked() {
        assert_eq!(found("IBAN DE89 3704 0044 0532 0130 00").len(), 1);
        assert!(found("IBAN DE88 3704 0044 0532 0130 00").is_empty());
        assert_eq!(found("ssn 123-45-6789").len(), 1);
        assert!(found("ssn 000-45-6789").is_empty());
    }

    #[test]
    fn dates_versions_and_paths_are_not_pii() {
        assert!(found("at 2026-11-24 10:15:00 version 1.2.3.4 std::io::Error a::b").is_empty());
        assert_eq!(found("from 10.0.0.12 and 2001:db8::8a2e:370:7334").len(), 2);
    }

    #[test]
    fn adversarial_megabyte_strings_finish() {
        // Candidates at every position must stay linear-ish (a quadratic pass would take minutes).
        let d = Detectors::new(&Detector::ALL);
        let mut out = Vec::new();
        let started = std::time::Instant::now();
        for unit in [
            "4111 ",
            "a@b.co ",
            "1.2.3.4 ",
            "+1 ",
            "AKIA",
            "-----BEGIN PRIVATE KEY-----",
            "eyJhbGciOi.",
        ] {
            let text = unit.repeat(1_000_000 / unit.len());
            let t = std::time::Instant::now();
            d.scan(&text, &mut out);
            println!("{unit:?}: {:?}, {} findings", t.elapsed(), out.len());
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn aws_key_ids_without_digits_are_found() {
        assert_eq!(found("key AKIAQWERTYUIOPASDFGH here").len(), 1);
    }

    #[test]
    fn entropy_separates_tokens_from_words() {
        assert!(high_entropy_secret("x9F2kLq8ZpR4tW7mB3nC"));
        assert!(!high_entropy_secret("correct horse battery staple"));
        assert!(key_like_name("http.request.header.authorization"));
        assert!(!key_like_name("gen_ai.usage.input_tokens"));
    }
}
