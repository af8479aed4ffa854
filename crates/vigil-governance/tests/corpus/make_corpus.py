#!/usr/bin/env python3
"""Generate the labelled redaction corpus for Vigil's PII / secret detectors.

Stdlib only, fixed seed: running it twice produces byte-identical output.
Writes ``redaction_corpus.jsonl`` next to this file. Each line is

    {"text": "...", "labels": [{"type": "<detector>", "value": "<exact substring>"}]}

Every label value occurs verbatim in ``text``; labels are ordered by position.
Lines without sensitive data have ``"labels": []`` (hard negatives). Many
positive lines also contain hard-negative distractors that must NOT be flagged
(dates, UUIDs, versions, Luhn-failing numbers, invalid SSNs, ...).

Before writing, the script self-checks the corpus: every card/IBAN/SSN value is
valid, and no unlabelled Luhn-valid card number, valid IBAN, valid SSN, IPv4
address, email address or key-shaped secret is left in any text.

Usage: python3 make_corpus.py
"""

import base64
import ipaddress
import json
import os
import random
import re
import string
import sys
import uuid

SEED = 20251124
N_PER_TYPE = 20  # lines whose primary subject is each detector type
N_NEGATIVE = 145  # lines with no sensitive data at all

rng = random.Random(SEED)

DIGITS = string.digits
UPPER = string.ascii_uppercase
LOWER = string.ascii_lowercase
ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = UPPER + DIGITS
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"

TYPES = [
    "email",
    "phone",
    "payment_card",
    "iban",
    "us_ssn",
    "ip_address",
    "openai_key",
    "anthropic_key",
    "aws_access_key",
    "github_token",
    "slack_token",
    "jwt",
    "private_key",
]


# ---------------------------------------------------------------------------
# primitive helpers
# ---------------------------------------------------------------------------


def rs(alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def rd(n):
    return rs(DIGITS, n)


def rbytes(n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def pick(seq):
    return rng.choice(seq)


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64(data):
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------------------
# checksums
# ---------------------------------------------------------------------------


def luhn_valid(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_complete(partial):
    for c in DIGITS:
        if luhn_valid(partial + c):
            return partial + c
    raise AssertionError("unreachable")


def iban_to_int(s):
    return int("".join(str(int(c, 36)) for c in s))


def iban_valid(iban):
    s = iban.replace(" ", "")
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", s):
        return False
    return iban_to_int(s[4:] + s[:4]) % 97 == 1


def iban_check_digits(country, bban):
    return "%02d" % (98 - iban_to_int(bban + country + "00") % 97)


def ssn_valid(s):
    m = re.fullmatch(r"(\d{3})-(\d{2})-(\d{4})", s)
    if not m:
        return False
    area, group, serial = (int(x) for x in m.groups())
    return area not in (0, 666) and area < 900 and group != 0 and serial != 0


# ---------------------------------------------------------------------------
# filler / distractor generators (never sensitive)
# ---------------------------------------------------------------------------

FIRST = [
    "james", "maria", "wei", "aisha", "lukas", "sofia", "daniel", "priya", "omar",
    "emma", "noah", "chloe", "mateo", "yuki", "fatima", "liam", "olivia", "arjun",
    "hannah", "jonas", "elena", "kofi", "sarah", "tomasz", "ines", "ravi", "grace",
]
LAST = [
    "smith", "garcia", "chen", "khan", "muller", "rossi", "okafor", "nguyen",
    "patel", "johnson", "kowalski", "dubois", "tanaka", "silva", "hughes",
    "fischer", "moreau", "jansen", "lopez", "bianchi", "wright", "schmidt",
]
DOMAINS = [
    "example.com", "example.co.uk", "mail.example.org", "acme-corp.io",
    "eu.acme-corp.io", "globex.de", "initech.com", "us.mail.initech.com",
    "gmail.com", "outlook.com", "protonmail.ch", "fastmail.fm",
    "uni-heidelberg.de", "cs.stanford.edu", "hooli.xyz", "billing.umbrella.net",
]
MODELS = [
    "gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-mini",
    "claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022",
    "claude-sonnet-4-20250514", "o3-mini-2025-01-31", "text-embedding-3-small",
    "gemini-1.5-pro-002", "llama-3.1-70b-instruct",
]
TOOLS = [
    "lookup_customer", "create_refund", "send_email", "update_billing",
    "search_orders", "http_request", "run_sql", "read_file", "kyc_verify",
    "create_ticket", "charge_card", "get_account",
]


def name():
    return f"{pick(FIRST).title()} {pick(LAST).title()}"


def date():
    return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def ts():
    return f"{date()} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"


def iso_ts():
    return ts().replace(" ", "T") + f".{rng.randint(0, 999):03d}Z"


def uuid4():
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def sha40():
    return rs(HEX, 40)


def sha7():
    return rs(HEX, 7)


def hex64():
    return rs(HEX, 64)


def order_no():
    return pick([f"ORD-{rd(6)}", f"#{rng.randint(100000, 999999)}", f"A{rd(8)}", f"SO-{rd(4)}-{rd(5)}"])


def sku():
    return f"SKU-{rng.randint(2019, 2026)}-{rng.randint(1000, 9999)}"


def price():
    return pick([
        f"${rng.randint(1, 2999):,}.{rng.randint(0, 99):02d}",
        f"€{rng.randint(1, 999)}.{rng.randint(0, 99):02d}",
        f"USD {rng.randint(1000, 99999):,}.00",
        f"£{rng.randint(1, 500)}.{rng.randint(0, 99):02d}",
    ])


def version():
    return pick([
        f"v{rng.randint(0, 4)}.{rng.randint(0, 20)}.{rng.randint(0, 30)}",
        f"python {pick(['3.10', '3.11', '3.12'])}.{rng.randint(0, 14)}",
        f"node {pick(['18', '20', '22'])}.{rng.randint(0, 19)}.{rng.randint(0, 9)}",
        f"rustc 1.{rng.randint(75, 86)}.{rng.randint(0, 2)}",
    ])


def duration():
    return pick([
        f"{rng.randint(5, 9999)}ms",
        f"{rng.randint(1, 59)}.{rng.randint(0, 9)}s",
        f"{rng.randint(1, 59)}m{rng.randint(0, 59)}s",
        f"00:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
    ])


def ups():
    return "1Z" + rs(DIGITS, 3) + rs(UPPER, 3) + rd(10)


def usps():
    return "9400" + rd(18)


def fedex():
    return rd(12)


def isbn13():
    while True:
        core = pick(["978", "979"]) + rd(9)
        s = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(core))
        full = core + str((10 - s % 10) % 10)
        if not luhn_valid(full):  # make sure it is not also a Luhn-valid number
            return full


def isbn13_dashed():
    d = isbn13()
    return f"{d[:3]}-{d[3]}-{d[4:6]}-{d[6:12]}-{d[12]}"


def not_luhn(digits_len, prefix):
    while True:
        n = prefix + rd(digits_len - len(prefix))
        if not luhn_valid(n):
            return n


def bad_card():
    n = not_luhn(16, pick(["4", "51", "55", "6011", "2223"]))
    return pick([n, " ".join(n[i:i + 4] for i in range(0, 16, 4)), "-".join(n[i:i + 4] for i in range(0, 16, 4))])


def long_id():
    """Long numeric id (e.g. snowflake / offset) that fails Luhn."""
    return not_luhn(rng.randint(13, 19), str(rng.randint(1, 9)))


def bad_ssn():
    area = pick(["000", "666", str(rng.randint(900, 999)), f"{rng.randint(1, 899):03d}", f"{rng.randint(1, 899):03d}"])
    if area not in ("000", "666") and int(area) < 900:
        # valid area -> break group or serial instead
        if rng.random() < 0.5:
            s = f"{area}-00-{rng.randint(1, 9999):04d}"
        else:
            s = f"{area}-{rng.randint(1, 99):02d}-0000"
    else:
        s = f"{area}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    assert not ssn_valid(s)
    return s


def b64blob(n=None):
    while True:
        s = b64(rbytes(n or rng.randint(24, 60)))
        if "eyJ" not in s:
            return s


def mac():
    return ":".join("%02X" % rng.randint(0, 255) for _ in range(6))


def path():
    return pick([
        f"/var/log/vigil/{date()}.log",
        f"/home/{pick(FIRST)}/projects/agent/src/tools/{pick(TOOLS)}.py",
        f"/srv/data/exports/{date()}/batch-{rd(4)}.parquet",
        f"C:\\Users\\{pick(FIRST)}\\AppData\\Local\\Temp\\vigil-{rs(HEX, 4)}.tmp",
        f"./crates/vigil-store/src/segment_{rd(3)}.rs",
        f"s3://acme-agent-traces/{date()}/{uuid4()}.json.gz",
    ])


def stripe_id(prefix):
    return prefix + "_" + rs(ALNUM, 24)


# ---------------------------------------------------------------------------
# sensitive value generators
# ---------------------------------------------------------------------------


def gen_email(first=None, last=None):
    f = first or pick(FIRST)
    l = last or pick(LAST)
    local = pick([
        f"{f}.{l}",
        f"{f[0]}{l}",
        f"{f}.{l}+{pick(['billing', 'shop', 'news', 'agent', 'test', 'vigil'])}",
        f"{f}_{l}{rng.randint(1, 99)}",
        f"{f}",
        f"{f}.{l[0]}",
        f"{l}.{f}{rng.randint(70, 99)}",
    ])
    return f"{local}@{pick(DOMAINS)}"


def gen_role_email():
    return f"{pick(['support', 'billing', 'noreply', 'ops-alerts', 'security', 'accounts'])}@{pick(DOMAINS)}"


US_AREAS = ["415", "212", "646", "312", "206", "512", "617", "303", "213", "305", "404", "702"]


PHONE_STYLES = ["e164_us", "e164_intl", "uk", "paren", "dash", "dot", "plus1", "intl", "intl"]
_phone_cycle = []


def gen_phone(style=None):
    if style is None:
        # cycle through the styles so every format is represented
        if not _phone_cycle:
            _phone_cycle.extend(PHONE_STYLES)
            rng.shuffle(_phone_cycle)
        style = _phone_cycle.pop()
    area = pick(US_AREAS)
    exch = str(rng.randint(200, 999))
    line = rd(4)
    if style == "e164_us":
        return f"+1{area}{exch}{line}"
    if style == "e164_intl":
        return pick([
            f"+44207946{rng.randint(0, 999):04d}",
            f"+447700900{rd(3)}",
            f"+4915{rng.randint(1, 9)}{rd(8)}",
            f"+336{rd(8)}",
            f"+3161{rd(7)}",
        ])
    if style == "uk":
        return pick([
            f"+44 20 7946 0{rd(3)}",
            f"+44 7700 900{rd(3)}",
            f"+44 161 496 0{rd(3)}",
        ])
    if style == "paren":
        return f"({area}) {exch}-{line}"
    if style == "dash":
        return f"{area}-{exch}-{line}"
    if style == "dot":
        return f"{area}.{exch}.{line}"
    if style == "plus1":
        return pick([f"+1 {area}-{exch}-{line}", f"+1 ({area}) {exch}-{line}", f"+1 {area} {exch} {line}"])
    # international with spaces
    return pick([
        f"+49 30 {rd(4)} {rd(4)}",
        f"+49 151 {rd(4)} {rd(4)}",
        f"+33 1 {rd(2)} {rd(2)} {rd(2)} {rd(2)}",
        f"+33 6 {rd(2)} {rd(2)} {rd(2)} {rd(2)}",
        f"+61 2 {rd(4)} {rd(4)}",
        f"+91 98{rd(3)} {rd(5)}",
        f"+81 3 {rd(4)} {rd(4)}",
        f"+34 91{rd(1)} {rd(3)} {rd(3)}",
        f"+39 06 {rd(4)} {rd(4)}",
        f"+31 20 {rd(3)} {rd(4)}",
        f"+41 44 {rd(3)} {rd(2)} {rd(2)}",
    ])


CARD_BRANDS = ["visa16", "visa16", "visa13", "visa19", "mc51", "mc2", "amex", "discover"]
_card_brand_cycle = []


def gen_card_digits(brand=None):
    if brand is None:
        # cycle through the brands so every brand is represented
        if not _card_brand_cycle:
            _card_brand_cycle.extend(CARD_BRANDS)
            rng.shuffle(_card_brand_cycle)
        brand = _card_brand_cycle.pop()
    if brand == "visa16":
        prefix, n = "4", 16
    elif brand == "visa13":
        prefix, n = "4", 13
    elif brand == "visa19":
        prefix, n = "4", 19
    elif brand == "mc51":
        prefix, n = str(rng.randint(51, 55)), 16
    elif brand == "mc2":
        prefix, n = str(rng.randint(2221, 2720)), 16
    elif brand == "amex":
        prefix, n = pick(["34", "37"]), 15
    elif brand == "discover":
        prefix, n = pick(["6011", str(rng.randint(644, 649)), "65"]), 16
    else:
        raise ValueError(brand)
    return luhn_complete(prefix + rd(n - len(prefix) - 1))


def group_card(num, sep):
    n = len(num)
    sizes = {15: [4, 6, 5], 13: [4, 3, 3, 3], 19: [4, 4, 4, 4, 3]}.get(n, [4, 4, 4, 4])
    out, i = [], 0
    for s in sizes:
        out.append(num[i:i + s])
        i += s
    return sep.join(out)


def gen_card(style=None, brand=None):
    num = gen_card_digits(brand)
    style = style or pick(["space", "space", "dash", "none"])
    if style == "none":
        return num
    return group_card(num, " " if style == "space" else "-")


def _bban(country):
    if country == "DE":
        return rd(8) + rd(10)
    if country == "GB":
        return pick(["NWBK", "BARC", "HBUK", "LOYD", "MIDL"]) + rd(6) + rd(8)
    if country == "FR":
        bank, branch, acct = rd(5), rd(5), rd(11)
        key = 97 - ((89 * int(bank) + 15 * int(branch) + 3 * int(acct)) % 97)
        return bank + branch + acct + "%02d" % key
    if country == "NL":
        return pick(["ABNA", "INGB", "RABO", "TRIO", "BUNQ"]) + rd(10)
    if country == "ES":
        return rd(4) + rd(4) + rd(2) + rd(10)
    if country == "IT":
        return pick(UPPER) + rd(5) + rd(5) + rd(12)
    if country == "CH":
        return rd(5) + rd(12)
    raise ValueError(country)


IBAN_COUNTRIES = ["DE", "GB", "FR", "NL", "ES", "IT", "CH"]
_iban_cycle = []


def group4(s):
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))


def gen_iban(country=None, grouped=None):
    if country is None:
        if not _iban_cycle:
            _iban_cycle.extend(IBAN_COUNTRIES)
            rng.shuffle(_iban_cycle)
        country = _iban_cycle.pop()
    bban = _bban(country)
    iban = country + iban_check_digits(country, bban) + bban
    assert iban_valid(iban)
    if grouped is None:
        grouped = rng.random() < 0.5
    return group4(iban) if grouped else iban


def bad_iban():
    iban = gen_iban(grouped=False)
    while iban_valid(iban):
        if rng.random() < 0.5:  # wrong check digits
            iban = iban[:2] + "%02d" % rng.randint(2, 98) + iban[4:]
        else:  # one-digit typo in the account part
            i = rng.randint(len(iban) - 6, len(iban) - 1)
            iban = iban[:i] + str((int(iban[i], 36) + rng.randint(1, 8)) % 10) + iban[i + 1:]
    return group4(iban) if rng.random() < 0.5 else iban


def gen_ssn():
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def gen_ipv4(kind=None):
    kind = kind or pick(["10", "192", "172", "pub", "pub", "doc"])
    if kind == "10":
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if kind == "192":
        return f"192.168.{rng.randint(0, 10)}.{rng.randint(1, 254)}"
    if kind == "172":
        return f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if kind == "doc":
        return pick(["203.0.113", "198.51.100", "192.0.2"]) + f".{rng.randint(1, 254)}"
    return f"{pick([34, 35, 52, 54, 81, 85, 91, 104, 141, 151, 185, 212])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def gen_ipv6(form=None):
    prefix = pick([[0x2001, 0x0DB8], [0x2A02, 0x0C7F], [0xFE80, 0], [0x2606, 0x4700], [0x2001, 0x4860]])
    groups = prefix + [rng.randint(0, 0xFFFF) for _ in range(6)]
    # introduce a run of zero groups so the compressed form uses "::"
    start = rng.randint(2, 4)
    for i in range(start, start + rng.randint(1, 3)):
        groups[i] = 0
    val = 0
    for g in groups:
        val = (val << 16) | g
    addr = ipaddress.IPv6Address(val)
    form = form or pick(["compressed", "compressed", "exploded"])
    return addr.compressed if form == "compressed" else addr.exploded


def gen_ip():
    return gen_ipv6() if rng.random() < 0.25 else gen_ipv4()


def gen_openai(kind=None):
    kind = kind or pick(["legacy", "proj", "proj"])
    if kind == "legacy":
        return "sk-" + rs(ALNUM, 20) + "T3BlbkFJ" + rs(ALNUM, 20)
    n = rng.randint(100, 156)
    half = (n - 8) // 2
    body = rs(URLSAFE, half) + "T3BlbkFJ" + rs(URLSAFE, n - 8 - half - 1) + pick(ALNUM)
    return "sk-proj-" + body


def gen_anthropic():
    return "sk-ant-api03-" + rs(URLSAFE, rng.randint(91, 93)) + "AA"


def gen_aws():
    return pick(["AKIA", "AKIA", "ASIA"]) + rs(UPPER + "234567", 16)


def gen_github():
    kind = pick(["ghp", "ghp", "gho", "ghs", "ghu", "pat", "pat"])
    if kind == "pat":
        return "github_pat_" + rs(ALNUM, 22) + "_" + rs(ALNUM, 59)
    return kind + "_" + rs(ALNUM, 36)


def gen_slack():
    kind = pick(["xoxb", "xoxb", "xoxp", "xoxa"])
    if kind == "xoxb":
        return f"xoxb-{rd(rng.randint(11, 13))}-{rd(13)}-{rs(ALNUM, 24)}"
    if kind == "xoxp":
        return f"xoxp-{rd(12)}-{rd(12)}-{rd(13)}-{rs(HEX, 32)}"
    return f"xoxa-2-{rd(12)}-{rd(12)}-{rd(13)}-{rs(HEX, 32)}"


def compact_json(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def gen_jwt():
    alg = pick(["HS256", "HS256", "RS256", "ES256"])
    header = {"alg": alg, "typ": "JWT"}
    if alg != "HS256" and rng.random() < 0.6:
        header["kid"] = rs(HEX, 16)
    iat = rng.randint(1767225600, 1798761600)  # 2026
    payload = pick([
        {"sub": f"user_{rd(6)}", "name": name(), "iat": iat},
        {"sub": uuid4(), "email": gen_email(), "role": pick(["admin", "member", "viewer"]), "iat": iat, "exp": iat + 3600},
        {"iss": "https://auth.example.com/", "sub": f"auth0|{rs(HEX, 24)}", "aud": "vigil-api", "iat": iat, "exp": iat + 86400, "scope": "openid profile email"},
        {"session_id": rs(ALNUM, 20), "org_id": f"org_{rs(ALNUM, 12)}", "iat": iat, "exp": iat + 900},
    ])
    sig_len = {"HS256": 32, "RS256": 256, "ES256": 64}[alg]
    return f"{b64u(compact_json(header))}.{b64u(compact_json(payload))}.{b64u(rbytes(sig_len))}"


PEM_KINDS = {
    "rsa": ("RSA PRIVATE KEY", bytes.fromhex("308204a40201000282010100"), 64),
    "pkcs8": ("PRIVATE KEY", bytes.fromhex("308204bd020100300d06092a864886f70d0101010500048204a7"), 64),
    "openssh": (
        "OPENSSH PRIVATE KEY",
        b"openssh-key-v1\x00\x00\x00\x00\x04none\x00\x00\x00\x04none\x00\x00\x00\x00\x00\x00\x00\x01"
        b"\x00\x00\x00\x33\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20",
        70,
    ),
}
_pem_cycle = []


def gen_pem(kind=None, indent=""):
    if kind is None:
        if not _pem_cycle:
            _pem_cycle.extend(["rsa", "pkcs8", "openssh"])
            rng.shuffle(_pem_cycle)
        kind = _pem_cycle.pop()
    label, der_prefix, width = PEM_KINDS[kind]
    n_lines = rng.randint(4, 8)
    raw = der_prefix + rbytes(width * 3 // 4 * n_lines - len(der_prefix) - rng.randint(3, 20))
    body = b64(raw)
    lines = [body[i:i + width] for i in range(0, len(body), width)]
    sep = "\n" + indent
    return f"-----BEGIN {label}-----" + sep + sep.join(lines) + sep + f"-----END {label}-----"


def fake_pem(label):
    """Public material in PEM armour -- not a private key."""
    n_lines = rng.randint(3, 6)
    body = b64(b"\x30\x82" + rbytes(48 * n_lines - 5))
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


# ---------------------------------------------------------------------------
# line builder
# ---------------------------------------------------------------------------

GEN = {
    "email": gen_email,
    "phone": gen_phone,
    "payment_card": gen_card,
    "iban": gen_iban,
    "us_ssn": gen_ssn,
    "ip_address": gen_ip,
    "openai_key": gen_openai,
    "anthropic_key": gen_anthropic,
    "aws_access_key": gen_aws,
    "github_token": gen_github,
    "slack_token": gen_slack,
    "jwt": gen_jwt,
    "private_key": gen_pem,
}


class B:
    """Collects labels while a template renders its text."""

    def __init__(self):
        self.labels = []

    def L(self, typ, value):
        assert typ in TYPES, typ
        self.labels.append((typ, value))
        return value

    def __getattr__(self, typ):
        # b.email(), b.phone(style="dash"), b.payment_card(), ...
        if typ in GEN:
            return lambda *a, **k: self.L(typ, GEN[typ](*a, **k))
        raise AttributeError(typ)

    def ipv4(self, kind=None):
        return self.L("ip_address", gen_ipv4(kind))

    def ipv6(self, form=None):
        return self.L("ip_address", gen_ipv6(form))

    def role_email(self):
        return self.L("email", gen_role_email())

    def json_pem(self, kind=None):
        """PEM as it appears inside a JSON string (newlines escaped as \\n)."""
        pem = gen_pem(kind)
        return pem, self.L("private_key", json.dumps(pem)[1:-1])


def J(obj):
    return json.dumps(obj, ensure_ascii=False)


# ---------------------------------------------------------------------------
# positive templates, grouped by primary detector type
# ---------------------------------------------------------------------------

def t_email_git(b):
    f, l = pick(FIRST), pick(LAST)
    return (f"commit {sha40()}\nAuthor: {f.title()} {l.title()} <{b.L('email', gen_email(f, l))}>\n"
            f"Date:   {ts()} +0100\n\n    fix(tools): retry {pick(TOOLS)} on 429 (closes #{rng.randint(100, 4999)})")


def t_email_header(b):
    f, l = pick(FIRST), pick(LAST)
    return (f"From: {f.title()} {l.title()} <{b.L('email', gen_email(f, l))}>\nTo: {b.role_email()}\n"
            f"Subject: Refund request for order {order_no()}\nX-Ticket-Id: {uuid4()}")


def t_email_code(b):
    return f"ADMIN_EMAILS = [\"{b.email()}\", \"{b.email()}\"]  # TODO move to settings.toml before {version()} release"


EMAIL_T = [
    lambda b: f"Hi, I changed my email to {b.email()} last week but the receipts still go to my old address. Order {order_no()}.",
    lambda b: J({"email": b.email(), "amount": pick([120, 49.99, 15, 300]), "currency": "USD", "reason": "duplicate_charge"}),
    lambda b: f"{iso_ts()} INFO  mailer.send queued message_id={uuid4()} to={b.email()} template=password_reset latency_ms={rng.randint(3, 90)}",
    lambda b: f"smtplib.SMTPRecipientsRefused: {{'{b.email()}': (550, b'5.1.1 Recipient address rejected: User unknown in virtual mailbox table')}}",
    lambda b: "tool_result: " + J({"customers": [{"id": stripe_id("cus"), "email": b.email(), "name": name(), "created": date()}], "has_more": False}),
    t_email_header,
    t_email_code,
    lambda b: f"{rng.randint(1000, 9999)},{pick(FIRST).title()},{pick(LAST).title()},{b.email()},{date()},active,{price()}",
    t_email_git,
    lambda b: f"Ping @{pick(FIRST)} on Slack, or email her directly at {b.email()} if it's urgent.",
    lambda b: f"@app.post(\"/v1/invite\")\ndef invite():\n    send_invite(to=\"{b.email()}\", role=\"viewer\")  # hardcoded for the demo",
    lambda b: f"ValueError: user with email '{b.email()}' already exists (tenant_id={uuid4()})",
    lambda b: f"can you unsubscribe {b.email()} and {b.email()} from the weekly digest? they both left in {date()[:7]}",
    lambda b: f"[{ts()}] auth: login failed for {b.email()} from {b.ipv4()} (attempt 3/5)",
    lambda b: f"tool_call {pick(['send_email', 'create_ticket'])}(" + J({"to": b.email(), "cc": [b.role_email()], "subject": f"Ticket {order_no()} update"}) + ")",
]


def t_phone_twilio(b):
    return (f"{iso_ts()} twilio.sms status=queued to={b.phone(style='e164_us')} from={b.phone(style='e164_us')} "
            f"sid=SM{rs(HEX, 32)} segments=1")


PHONE_T = [
    lambda b: f"Please call me back at {b.phone()}, I'm only available after 3pm EST.",
    lambda b: J({"customer_phone": b.phone(), "order_id": order_no(), "callback": True}),
    t_phone_twilio,
    lambda b: f"Contact: {name()}\nTel: {b.phone()}\nFax: {b.phone(style='uk')}",
    lambda b: f"ValidationError: phone number '{b.phone(style=pick(['dash', 'dot', 'paren']))}' is not in E.164 format (expected e.g. +<country><number>)",
    lambda b: f"BEGIN:VCARD\nVERSION:3.0\nFN:{name()}\nTEL;TYPE=cell:{b.phone(style=pick(['e164_intl', 'plus1', 'uk']))}\nEND:VCARD",
    lambda b: f"Customer (acct #{rd(5)}) says to text {b.phone()} instead of emailing, ticket DESK-{rd(4)}.",
    lambda b: "tool_result: " + J({"contact": {"name": name(), "mobile": b.phone(), "office": b.phone(style="intl"), "updated_at": iso_ts()}}),
    lambda b: f"my new number is {b.phone()} - old one {b.phone()} doesn't work anymore",
    lambda b: f"WARN sms.deliver failed to={b.phone(style='e164_intl')} error_code=30003 \"Unreachable destination handset\" retry_in={duration()}",
    lambda b: f"Hallo, bitte rufen Sie mich unter {b.phone(style='intl')} zurück. Meine Bestellnummer ist {order_no()}.",
    lambda b: f"escalation_contacts:\n  - name: {name()}\n    phone: \"{b.phone(style='plus1')}\"\n    hours: 09:00-17:00",
]


def t_card_json(b):
    return J({"card_number": b.payment_card(style=pick(["none", "space"])), "exp_month": rng.randint(1, 12),
              "exp_year": rng.randint(2026, 2031), "cvc": rd(3), "amount": rng.randint(500, 99999)})


CARD_T = [
    lambda b: f"Hi, my card {b.payment_card()} was charged twice for {price()}, can you refund one of them?",
    t_card_json,
    lambda b: f"{ts()} ERROR payments: charge failed card={b.payment_card(style='none')} reason=insufficient_funds amount={rng.randint(5, 999)}.{rd(2)} order={order_no()}",
    lambda b: f"stripe.error.CardError: Request req_{rs(ALNUM, 14)}: Your card was declined. (card {b.payment_card(style='dash')})",
    lambda b: f"I tried {bad_card()} first and it said invalid, then {b.payment_card()} worked but I got charged {price()}",
    lambda b: f"The full number on my Amex is {b.payment_card(brand='amex')} and the expiry is 0{rng.randint(1, 9)}/{rng.randint(27, 31)}.",
    lambda b: f"Order {order_no()} (UPS {ups()}) paid with card {b.payment_card()} on {date()}",
    lambda b: f"tool_call charge_card(card=\"{b.payment_card(style='none')}\", amount_cents={rng.randint(100, 90000)}, idempotency_key=\"{uuid4()}\")",
    lambda b: f"Traceback (most recent call last):\n  File \"/app/billing/charge.py\", line {rng.randint(20, 300)}, in charge\n    gateway.authorize(pan)\nbilling.errors.GatewayTimeout: authorize timed out after {duration()} for pan={b.payment_card(style='none')}",
    lambda b: f"card 1: {b.payment_card()}\ncard 2: {b.payment_card()}\nboth declined, please advise",
    lambda b: f"payment_method: visa\nnumber: {b.payment_card(brand=pick(['visa13', 'visa16', 'visa19']))}\nbilling_zip: {rd(5)}",
    lambda b: f"Mastercard {b.payment_card(brand=pick(['mc51', 'mc2']))} keeps failing 3-D Secure, reference {long_id()}",
    lambda b: f"Discover card {b.payment_card(brand='discover', style='space')} added to wallet {uuid4()}",
]


IBAN_T = [
    lambda b: f"Please send the refund to my IBAN {b.iban()} (account holder {name()}).",
    lambda b: J({"iban": b.iban(grouped=False), "bic": pick(["DEUTDEFFXXX", "NWBKGB2L", "BNPAFRPP", "INGBNL2A", "CAIXESBB", "UNCRITMM", "UBSWCHZH80A"]), "amount": f"{rng.randint(10, 9000)}.00", "currency": "EUR"}),
    lambda b: f"{ts()} INFO sepa.payout created id=po_{rs(ALNUM, 16)} creditor_iban={b.iban(grouped=False)} amount={price()}",
    lambda b: f"Invoice INV-{rd(4)}-{rd(5)}\nBank: {pick(['Deutsche Bank', 'Barclays', 'ING', 'BNP Paribas', 'UBS', 'UniCredit', 'CaixaBank'])}\nIBAN: {b.iban(grouped=True)}\nDue: {date()}",
    lambda b: f"The IBAN {bad_iban()} you have on file bounced (invalid checksum). The correct one is {b.iban()}.",
    lambda b: f"sepa_mandate:\n  debtor_name: {name()}\n  debtor_iban: \"{b.iban(grouped=False)}\"\n  mandate_ref: MNDT-{rd(8)}",
    lambda b: f"Meine neue Bankverbindung: {b.iban(country='DE', grouped=True)}, bitte ab {date()} verwenden.",
    lambda b: f"RAISE EXCEPTION payout_rejected: beneficiary {b.iban(grouped=False)} blocked by sanctions screening (case {uuid4()})",
    lambda b: f"tool_call update_billing(customer_id=\"{stripe_id('cus')}\", iban=\"{b.iban()}\")",
]


SSN_T = [
    lambda b: f"My SSN is {b.us_ssn()}, do you need anything else for the background check?",
    lambda b: J({"ssn": b.us_ssn(), "dob": f"19{rng.randint(50, 99)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", "name": name()}),
    lambda b: f"{iso_ts()} DEBUG kyc.verify subject_ssn={b.us_ssn()} result={pick(['match', 'no_match', 'partial'])} provider_latency={duration()}",
    lambda b: f"Name: {name()}\nSSN: {b.us_ssn()}\nDOB: {rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/19{rng.randint(50, 99)}\nEmployer ID: {rd(2)}-{rd(7)}",
    lambda b: f"{bad_ssn()} was rejected as invalid, the correct number is {b.us_ssn()}",
    lambda b: "tool_result: " + J({"document": "W-2", "employee_ssn": b.us_ssn(), "wages": f"{rng.randint(20000, 200000)}.00", "ocr_confidence": round(rng.random(), 2)}),
    lambda b: f"psycopg.errors.UniqueViolation: duplicate key value violates unique constraint \"applicants_ssn_key\"\nDETAIL:  Key (ssn)=({b.us_ssn()}) already exists.",
    lambda b: f"hey, for the tax form it's {b.us_ssn()} (mine) and {b.us_ssn()} (my spouse)",
    lambda b: f"Applicant {uuid4()} ssn {b.us_ssn()} flagged; test value {bad_ssn()} ignored",
]


def t_ip_nginx(b):
    return (f'{b.ipv4(pick(["pub", "doc"]))} - - [{rng.randint(1, 28):02d}/Nov/2026:{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} +0000] '
            f'"GET /api/v1/orders/{rd(6)} HTTP/1.1" {pick([200, 404, 500, 302])} {rng.randint(100, 9999)} "-" "Mozilla/5.0 (X11; Linux x86_64)"')


def t_ip_inet(b):
    ip = gen_ipv4("192")
    brd = ip.rsplit(".", 1)[0] + ".255"
    return f"inet {b.L('ip_address', ip)}/24 brd {b.L('ip_address', brd)} scope global eth0\ninet6 {b.ipv6('compressed')}/64 scope link"


IP_T = [
    t_ip_nginx,
    lambda b: f"psycopg2.OperationalError: connection to server at \"{b.ipv4(pick(['10', '172']))}\", port 5432 failed: Connection refused",
    lambda b: f"DB_HOST={b.ipv4('10')}\nDB_PORT=5432\nDB_NAME=orders\nREDIS_URL=redis://{b.ipv4('192')}:6379/0",
    lambda b: f"X-Forwarded-For: {b.ipv4('pub')}, {b.ipv4('10')}\nX-Request-Id: {uuid4()}",
    lambda b: "tool_result: " + J({"ip": b.ipv4("pub"), "country": pick(["DE", "US", "GB", "FR", "NL"]), "asn": rng.randint(1000, 65000), "is_proxy": False}),
    lambda b: f"{iso_ts()} WARN ratelimit: client {b.ipv6()} exceeded 100 req/min on /v1/chat/completions",
    lambda b: f"agent {version()} connected from {b.ipv4()} using {pick(MODELS)}",
    t_ip_inet,
    lambda b: f"curl: (7) Failed to connect to {b.ipv4('doc')} port 443 after {rng.randint(1, 9000)} ms: Couldn't connect to server",
    lambda b: f"allowlist:\n  - {b.ipv4('pub')}/32\n  - {b.ipv6('exploded')}/128",
    lambda b: f"ssh: connect to host {b.ipv4()} port 22: Connection timed out (tried for {duration()})",
    lambda b: f"why does my server at {b.ipv4('pub')} keep returning 502? deployed build {sha7()} at {ts()}",
]


def t_env_dump(b):
    """A .env dump with several secrets at once."""
    return (f"# .env ({path()})\nOPENAI_API_KEY={b.openai_key()}\nANTHROPIC_API_KEY={b.anthropic_key()}\n"
            f"AWS_ACCESS_KEY_ID={b.aws_access_key()}\nAWS_REGION=eu-central-1\nLOG_LEVEL=debug\nMODEL={pick(MODELS)}")


def t_cfg_dump(b):
    return "config: " + J({"provider": pick(["openai", "azure-openai"]), "model": pick(MODELS), "api_key": b.openai_key(),
                           "timeout_s": rng.randint(10, 120), "max_retries": 3})


OPENAI_T = [
    lambda b: f"POST /v1/chat/completions HTTP/1.1\nHost: api.openai.com\nAuthorization: Bearer {b.openai_key()}\nContent-Type: application/json",
    lambda b: f"OPENAI_API_KEY={b.openai_key()}\nOPENAI_MODEL={pick(MODELS)}\nOPENAI_TIMEOUT=30",
    lambda b: f"from openai import OpenAI\nclient = OpenAI(api_key=\"{b.openai_key()}\")\nresp = client.chat.completions.create(model=\"{pick(MODELS)}\", messages=msgs)",
    lambda b: f"openai.AuthenticationError: Error code: 401 - {{'error': {{'message': 'Incorrect API key provided: {b.openai_key()}. You can find your API key at https://platform.openai.com/account/api-keys.', 'type': 'invalid_request_error', 'code': 'invalid_api_key'}}}}",
    lambda b: f"here's my key {b.openai_key()} can you check why it's failing with {pick(MODELS)}?",
    lambda b: f"curl https://api.openai.com/v1/models -H \"Authorization: Bearer {b.openai_key()}\"",
    t_cfg_dump,
    t_env_dump,
    lambda b: f"{ts()} DEBUG httpx: request headers={{'authorization': 'Bearer {b.openai_key()}', 'x-request-id': '{uuid4()}'}}",
]


ANTHROPIC_T = [
    lambda b: f"POST /v1/messages HTTP/1.1\nHost: api.anthropic.com\nx-api-key: {b.anthropic_key()}\nanthropic-version: 2023-06-01\ncontent-type: application/json",
    lambda b: f"ANTHROPIC_API_KEY={b.anthropic_key()}\nANTHROPIC_MODEL={pick(['claude-3-5-sonnet-20241022', 'claude-sonnet-4-20250514'])}",
    lambda b: f"import anthropic\nclient = anthropic.Anthropic(api_key=\"{b.anthropic_key()}\")",
    lambda b: f"anthropic.AuthenticationError: Error code: 401 - invalid x-api-key (key: {b.anthropic_key()})",
    lambda b: f"llm:\n  provider: anthropic\n  model: {pick(['claude-3-5-haiku-20241022', 'claude-sonnet-4-20250514'])}\n  api_key: \"{b.anthropic_key()}\"\n  max_tokens: 4096",
    lambda b: f"curl https://api.anthropic.com/v1/messages -H \"x-api-key: {b.anthropic_key()}\" -H \"anthropic-version: 2023-06-01\" -d @body.json",
    lambda b: f"Can you rotate this? I accidentally pasted {b.anthropic_key()} into the public channel at {ts()}",
    lambda b: "tool_args: " + J({"name": "set_secret", "key": "ANTHROPIC_API_KEY", "value": b.anthropic_key(), "scope": "production"}),
    t_env_dump,
]


def t_sts(b):
    return J({"Credentials": {"AccessKeyId": b.L("aws_access_key", "ASIA" + rs(UPPER + "234567", 16)),
                              "SecretAccessKey": "<redacted>", "Expiration": iso_ts()},
              "AssumedRoleUser": {"Arn": f"arn:aws:sts::{rd(12)}:assumed-role/agent-runner/session-{rd(6)}"}})


AWS_T = [
    lambda b: f"AWS_ACCESS_KEY_ID={b.aws_access_key()}\nAWS_DEFAULT_REGION={pick(['us-east-1', 'eu-west-1', 'eu-central-1'])}",
    lambda b: f"[default]\naws_access_key_id = {b.aws_access_key()}\nregion = us-west-2\noutput = json",
    lambda b: f"botocore.exceptions.ClientError: An error occurred (InvalidClientTokenId) when calling the GetCallerIdentity operation: The security token included in the request is invalid. AccessKeyId: {b.aws_access_key()}",
    t_sts,
    lambda b: "cloudtrail: " + J({"eventTime": iso_ts(), "eventName": "PutObject", "userIdentity": {"type": "IAMUser", "accessKeyId": b.aws_access_key()}, "sourceIPAddress": b.ipv4("pub")}),
    lambda b: f"s3 = boto3.client(\"s3\", aws_access_key_id=\"{b.aws_access_key()}\", aws_secret_access_key=os.environ[\"AWS_SECRET\"])",
    lambda b: f"found leaked key {b.aws_access_key()} in commit {sha40()} ({path()})",
    lambda b: f"{ts()} ERROR uploader: s3 put failed key_id={b.aws_access_key()} bucket=acme-traces status=403 AccessDenied",
    t_env_dump,
]


GITHUB_T = [
    lambda b: f"GET /repos/acme/agent/pulls HTTP/1.1\nAuthorization: token {b.github_token()}\nAccept: application/vnd.github+json",
    lambda b: f"GITHUB_TOKEN={b.github_token()}\nGH_REPO=acme/vigil",
    lambda b: f"gh auth login --with-token <<< \"{b.github_token()}\"",
    lambda b: f"HttpError: Bad credentials (401) for token {b.github_token()} at {iso_ts()}",
    lambda b: "tool_args: " + J({"tool": "github.create_issue", "repo": "acme/vigil", "title": f"Flaky test in {sha7()}", "token": b.github_token()}),
    lambda b: f"- name: checkout\n  uses: actions/checkout@v4\n  with:\n    token: {b.github_token()}",
    lambda b: f"here's a PAT for the bot: {b.github_token()} (expires {date()})",
    lambda b: f"from github import Github\ng = Github(\"{b.github_token()}\")\nrepo = g.get_repo(\"acme/agent\")",
    lambda b: f"{ts()} DEBUG octokit request headers={{\"authorization\": \"Bearer {b.github_token()}\", \"user-agent\": \"vigil-agent/{rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}\"}}",
]


SLACK_T = [
    lambda b: f"SLACK_BOT_TOKEN={b.slack_token()}\nSLACK_CHANNEL=#alerts-prod",
    lambda b: f"POST https://slack.com/api/chat.postMessage\nAuthorization: Bearer {b.slack_token()}\nContent-type: application/json; charset=utf-8",
    lambda b: f"from slack_sdk import WebClient\nclient = WebClient(token=\"{b.slack_token()}\")",
    lambda b: f"slack_sdk.errors.SlackApiError: The request to the Slack API failed. (url: https://slack.com/api/conversations.history, token: {b.slack_token()})\nThe server responded with: {{'ok': False, 'error': 'invalid_auth'}}",
    lambda b: "tool_args: " + J({"tool": "slack.post_message", "channel": "C0" + rs(UPPER_ALNUM, 9), "text": f"Deploy {sha7()} finished", "token": b.slack_token()}),
    lambda b: f"notifications:\n  slack:\n    token: {b.slack_token()}\n    channel: \"#agent-alerts\"",
    lambda b: f"use this token for the integration: {b.slack_token()} -- remove it after testing",
    lambda b: f"{ts()} WARN notifier: slack rate limited (retry after {duration()}) token={b.slack_token()}",
]


JWT_T = [
    lambda b: f"GET /v1/me HTTP/1.1\nHost: api.example.com\nAuthorization: Bearer {b.jwt()}",
    lambda b: f"Set-Cookie: session={b.jwt()}; Path=/; HttpOnly; Secure; SameSite=Lax",
    lambda b: "tool_result: " + J({"access_token": b.jwt(), "token_type": "Bearer", "expires_in": 3600, "scope": "read write"}),
    lambda b: f"{iso_ts()} WARN auth: jwt verification failed (TokenExpiredError: jwt expired) token={b.jwt()}",
    lambda b: f"https://app.example.com/callback?token={b.jwt()}&state={rs(ALNUM, 16)}",
    lambda b: f"why does this token not decode? {b.jwt()}",
    lambda b: f"jwt.exceptions.InvalidSignatureError: Signature verification failed\n  token: {b.jwt()}\n  key_id: {uuid4()}",
    lambda b: f"const token = \"{b.jwt()}\";\nfetch(\"/api/orders\", {{ headers: {{ Authorization: `Bearer ${{token}}` }} }});",
]


def t_pem_gcp(b):
    pem, escaped = b.json_pem("pkcs8")
    project = f"acme-agents-{rd(6)}"
    doc = {"type": "service_account", "project_id": project, "private_key_id": rs(HEX, 40),
           "private_key": pem + "\n", "client_email": f"agent-runner@{project}.iam.gserviceaccount.com"}
    b.L("email", doc["client_email"])
    text = J(doc)
    assert escaped in text
    return text


PEM_T = [
    lambda b: f"$ cat ~/.ssh/id_rsa\n{b.private_key()}",
    t_pem_gcp,
    lambda b: f"I pasted my deploy key below, why does ssh say 'invalid format'?\n\n{b.private_key()}",
    lambda b: f"PRIVATE_KEY = \"\"\"{b.private_key()}\n\"\"\"",
    lambda b: f"tool_result (read_file {path()}):\n{b.private_key()}\n",
    lambda b: f"apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nstringData:\n  tls.key: |\n    {b.L('private_key', gen_pem(indent='    '))}",
    lambda b: f"ValueError: Could not deserialize key data. The data may be in an incorrect format: {b.private_key()}",
    lambda b: f"JWT_SIGNING_KEY=\"{b.json_pem()[1]}\"",
]


POSITIVE_TEMPLATES = {
    "email": EMAIL_T,
    "phone": PHONE_T,
    "payment_card": CARD_T,
    "iban": IBAN_T,
    "us_ssn": SSN_T,
    "ip_address": IP_T,
    "openai_key": OPENAI_T,
    "anthropic_key": ANTHROPIC_T,
    "aws_access_key": AWS_T,
    "github_token": GITHUB_T,
    "slack_token": SLACK_T,
    "jwt": JWT_T,
    "private_key": PEM_T,
}


# ---------------------------------------------------------------------------
# hard-negative templates (no labels)
# ---------------------------------------------------------------------------

def n_base64_json():
    payload = compact_json({"event": pick(["order.created", "user.login", "refund.issued"]), "id": rd(7), "ts": rng.randint(1767225600, 1798761600)})
    return f"X-Webhook-Payload: {b64u(payload)}\nX-Signature: sha256={hex64()}"


NEG_T = [
    # order / tracking / SKU / ids
    lambda: f"Order {order_no()} shipped via UPS, tracking {ups()}. ETA {date()}.",
    lambda: f"FedEx tracking {fedex()}, USPS {usps()} -- both show 'label created' since {date()}.",
    lambda: f"{sku()} restocked: {rng.randint(10, 900)} units at warehouse WH-{rd(2)}, bin A-{rng.randint(1, 40)}-{rng.randint(1, 9)}.",
    lambda: f"Order #{rng.randint(100000, 999999)}: 2x {sku()} at {price()} each, shipping {price()}",
    lambda: f"ticket DESK-{rd(4)} assigned to @{pick(FIRST)}; related TASK-{rd(3)} and task-{rd(4)}",
    lambda: J({"order_id": order_no(), "sku": sku(), "qty": rng.randint(1, 9), "total": price(), "created_at": iso_ts()}),
    lambda: f"Invoice INV-{date()[:4]}-{rd(5)} total {price()} (VAT {price()}), due {date()}",
    lambda: f"refund {stripe_id('re')} for charge {stripe_id('ch')} succeeded, amount={rng.randint(100, 99999)} currency=usd",
    # numbers that look like cards / ids
    lambda: f"Customer typed {bad_card()} which fails the Luhn check -- asked them to re-enter the card.",
    lambda: f"kafka consumer lag: partition {rng.randint(0, 11)} offset {long_id()} (committed {long_id()})",
    lambda: f"Discord message id {long_id()} in channel {long_id()}",
    lambda: f"Card ending in {rd(4)} declined (code 51). Reference {long_id()}.",
    lambda: f"Test card {bad_card()} rejected: invalid number",
    lambda: f"processed {long_id()} bytes in {duration()} across {rng.randint(2, 64)} workers",
    # uuids / hashes / git
    lambda: f"request_id={uuid4()} trace_id={rs(HEX, 32)} span_id={rs(HEX, 16)} duration_ms={rng.randint(3, 9000)}",
    lambda: f"commit {sha40()}\nMerge: {sha7()} {sha7()}\n\n    Merge pull request #{rng.randint(100, 9999)} from acme/feature/desk-booking",
    lambda: f"sha256:{hex64()}  vigil-agent-linux-amd64.tar.gz",
    lambda: f"md5 {rs(HEX, 32)}  {path()}",
    lambda: f"HEAD is now at {sha7()} fix: handle empty tool results ({version()})",
    lambda: f"docker pull ghcr.io/acme/vigil:{rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}  # digest sha256:{hex64()}",
    lambda: f"idempotency_key={uuid4()} session={uuid4()} step={rng.randint(1, 40)}",
    # timestamps / durations / versions
    lambda: f"[{ts()}] WARN worker task-{rd(4)} exceeded timeout after {duration()} (attempt {rng.randint(1, 4)}/5)",
    lambda: f"Upgraded from {version()} to {version()}; runtime {version()}.",
    lambda: f"Python {pick(['3.11.4', '3.12.1', '3.10.13'])} (main, Jun  7 2023, 12:45:48) [GCC 11.3.0] on linux",
    lambda: f"Meeting moved to {date()} at {rng.randint(8, 18)}:{pick(['00', '15', '30', '45'])} (UTC+01:00); agenda in /docs/q4-planning.md",
    lambda: f"latency p50={rng.randint(20, 200)}ms p95={rng.randint(300, 900)}ms p99={rng.randint(1, 9)}.{rd(1)}s over {rng.randint(1000, 99999):,} requests",
    lambda: f"Build {date().replace('-', '.')} finished in {duration()}, cache hit rate {rng.randint(40, 99)}%",
    lambda: f"{iso_ts()} INFO scheduler: next run at {ts()} (cron '*/15 * * * *'), last run took {duration()}",
    lambda: f"chart version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}, appVersion {version()}",
    lambda: f"Due date: {rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/2026 (or {rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.2026 in the EU invoice)",
    # model names / sk / AKIA / prefixes in prose / placeholders
    lambda: f"model={pick(MODELS)} fallback={pick(MODELS)} tokens_in={rng.randint(100, 9000)} tokens_out={rng.randint(10, 2000)} latency={duration()}",
    lambda: f"Switching the summariser from {pick(MODELS)} to {pick(MODELS)} cut cost by {rng.randint(5, 60)}%.",
    lambda: "OpenAI API keys start with sk- (or sk-proj- for project keys) and must never be logged.",
    lambda: "AWS access key IDs begin with AKIA (long-term) or ASIA (temporary); rotate them every 90 days.",
    lambda: "GitHub classic tokens are prefixed ghp_, fine-grained ones github_pat_; Slack bot tokens start with xoxb-.",
    lambda: f"Redacted key: sk-proj-{'*' * rng.randint(20, 40)}{rs(ALNUM, 4)} (last used {date()})",
    lambda: f"openai.AuthenticationError: Incorrect API key provided: sk-{rs(ALNUM, 4)}****************{rs(ALNUM, 4)}.",
    lambda: "Set OPENAI_API_KEY=<your-key-here> and ANTHROPIC_API_KEY=<your-key-here> in .env; never commit real keys.",
    lambda: "env:\n  GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n  SLACK_BOT_TOKEN: ${SLACK_BOT_TOKEN}\n  AWS_ACCESS_KEY_ID: ${AWS_ACCESS_KEY_ID}",
    lambda: "SLACK_BOT_TOKEN=xoxb-YOUR-TOKEN-HERE  # replace before deploying",
    lambda: f"The sk column is the surrogate key; join on sk, not on the natural key (see task-{rd(3)}).",
    lambda: f"risk-score={rng.randint(0, 100)} desk-{rd(2)} whisk-{rd(2)} task-{rd(4)} ask-{pick(FIRST)}",
    lambda: f"x-api-key: [REDACTED]\nauthorization: Bearer ***\nx-request-id: {uuid4()}",
    lambda: "The token must start with eyJ; got 'Bearer null' from the client.",
    lambda: f"AKIA keys found: 0. Scanned {rng.randint(100, 9999)} files in {duration()}.",
    # invalid IBANs / SSNs
    lambda: f"IBAN {bad_iban()} failed checksum validation; please double-check the digits.",
    lambda: f"rejected payout: iban={bad_iban()} error=INVALID_CHECKSUM",
    lambda: f"SSN {bad_ssn()} rejected: number is not a valid US SSN",
    lambda: f"test fixtures use SSNs like {bad_ssn()} and {bad_ssn()} which can never be issued",
    lambda: J({"ssn": bad_ssn(), "valid": False, "reason": "invalid area/group/serial"}),
    # phone-like but too short / not phones
    lambda: f"Call extension {rng.randint(100, 9999)} or dial 0 for the front desk.",
    lambda: f"Your verification code is {rd(6)}. It expires in 10 minutes.",
    lambda: f"Room {rng.randint(100, 999)}, floor {rng.randint(1, 9)}; door code {rd(4)}#",
    lambda: f"PIN reset for account ending {rd(4)} -- call 911 only in emergencies, not for billing.",
    lambda: f"release {version()} -- build {rd(3)}-{rd(2)}, {rng.randint(10, 99)} tests, {rng.randint(1, 9)} skipped",
    # ISBN
    lambda: f"Reading list: ISBN {isbn13_dashed()}; also ISBN-13: {isbn13()}",
    lambda: J({"title": pick(["Designing Data-Intensive Applications", "Clean Code", "The Rust Programming Language"]), "isbn13": isbn13(), "price": price()}),
    # @ decorators / handles / npm scopes
    lambda: "@pytest.fixture\ndef client(app):\n    return app.test_client()",
    lambda: f"@app.route(\"/users/<int:user_id>\", methods=[\"GET\"])\n@login_required\ndef get_user(user_id): ...",
    lambda: f"Thanks @{pick(FIRST)} and @{pick(FIRST)}_dev for the review! cc @platform-team",
    lambda: "npm i -D @types/node @typescript-eslint/parser  # added in task-1182",
    lambda: "class Config:\n    @property\n    def timeout(self) -> float:\n        return self._timeout\n\n    @staticmethod\n    def default(): ...",
    lambda: f"follow us @acme_support on X for status updates ({date()})",
    # paths / stack traces
    lambda: f"FileNotFoundError: [Errno 2] No such file or directory: '{path()}'",
    lambda: f"Traceback (most recent call last):\n  File \"/app/worker.py\", line {rng.randint(10, 400)}, in run\n    result = task.execute(timeout=30)\nTimeoutError: task-{rd(4)} did not finish within {duration()}",
    lambda: f"thread 'tokio-runtime-worker' panicked at crates/vigil-ingest/src/lib.rs:{rng.randint(10, 900)}:{rng.randint(1, 80)}:\ncalled `Result::unwrap()` on an `Err` value: Timeout",
    lambda: f"wrote {rng.randint(1, 999)} spans to {path()}",
    # base64 / hex / encoded blobs that are not JWTs
    lambda: f"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA{b64blob()}",
    lambda: f"payload (base64): {b64blob(rng.randint(60, 120))}",
    n_base64_json,
    lambda: f"cursor={b64u(compact_json({'offset': rng.randint(0, 9999), 'id': uuid4()}))}&limit=50",
    lambda: f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{b64(rbytes(32))[:43]} {pick(FIRST)}@laptop",
    lambda: f"-----BEGIN PUBLIC KEY-----\n{b64(rbytes(60))}\n-----END PUBLIC KEY-----",
    lambda: f"server certificate:\n{fake_pem('CERTIFICATE')}",
    lambda: f"etag: \"{rs(HEX, 32)}\"  x-amz-request-id: {rs(UPPER_ALNUM, 16)}",
    # network-ish non-IPs
    lambda: f"eth0 link/ether {mac().lower()} brd ff:ff:ff:ff:ff:ff mtu 1500",
    lambda: f"bluetooth device {mac()} paired at {ts()}",
    lambda: f"coordinates {rng.randint(-89, 89)}.{rd(4)}, {rng.randint(-179, 179)}.{rd(4)}; accuracy {rng.randint(3, 50)}m",
    lambda: f"listening on port {rng.randint(1024, 65535)} (pid {rng.randint(100, 99999)}), {version()}",
    # prices / plain chat
    lambda: f"Total: {price()} (incl. VAT {price()}). Thanks for shopping with us!",
    lambda: f"Hi, I was charged {price()} instead of {price()} for order {order_no()}. Can you check?",
    lambda: f"The agent called {pick(TOOLS)} {rng.randint(2, 9)} times in {duration()} and then gave up.",
    lambda: "tool_result: " + J({"status": "ok", "results": [], "took_ms": rng.randint(1, 900), "cursor": None}),
    lambda: "tool_args: " + J({"query": "refund policy", "top_k": rng.randint(3, 10), "filters": {"lang": "en", "updated_after": date()}}),
]


# ---------------------------------------------------------------------------
# self-checks
# ---------------------------------------------------------------------------

RE_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
RE_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
RE_DIGIT_RUN = re.compile(r"\d(?:[ -]?\d)*")
RE_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
RE_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])")
RE_SECRETS = [
    re.compile(r"sk-[A-Za-z0-9_-]{20,}"),
    re.compile(r"A[KS]IA[A-Z0-9]{16}"),
    re.compile(r"gh[pousr]_[A-Za-z0-9]{30,}"),
    re.compile(r"github_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"xox[abpr]-\d"),
    re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"),
    re.compile(r"-----BEGIN (?:RSA |OPENSSH |EC |DSA |ENCRYPTED )?PRIVATE KEY-----"),
]


def spans_of(text, labels):
    """Assign each label to a distinct occurrence; return [(start, end, type, value)]."""
    taken, out = set(), []
    for typ, value in labels:
        start = text.find(value)
        while start != -1 and start in taken:
            start = text.find(value, start + 1)
        if start == -1:
            raise AssertionError(f"label {typ}={value!r} not found in text {text!r}")
        taken.add(start)
        out.append((start, start + len(value), typ, value))
    out.sort()
    return out


def covered(spans, s, e):
    return any(a <= s and e <= b for a, b, _, _ in spans)


def check_line(text, spans):
    problems = []
    for a, b_, typ, v in spans:
        if typ == "payment_card":
            d = re.sub(r"[ -]", "", v)
            if not (d.isdigit() and 13 <= len(d) <= 19 and luhn_valid(d)):
                problems.append(f"bad card {v}")
        elif typ == "iban" and not iban_valid(v):
            problems.append(f"bad iban {v}")
        elif typ == "us_ssn" and not ssn_valid(v):
            problems.append(f"bad ssn {v}")
        elif typ == "ip_address":
            try:
                ipaddress.ip_address(v)
            except ValueError:
                problems.append(f"bad ip {v}")
    for m in RE_EMAIL.finditer(text):
        if not covered(spans, m.start(), m.end()):
            problems.append(f"unlabelled email {m.group()}")
    for m in RE_IPV4.finditer(text):
        if all(int(o) <= 255 for o in m.group().split(".")) and not covered(spans, m.start(), m.end()):
            problems.append(f"unlabelled ipv4 {m.group()}")
    for m in RE_DIGIT_RUN.finditer(text):
        s, e = m.start(), m.end()
        if (s > 0 and (text[s - 1].isalnum() or text[s - 1] == "_")) or (e < len(text) and (text[e].isalnum() or text[e] == "_")):
            continue
        d = re.sub(r"[ -]", "", m.group())
        if 13 <= len(d) <= 19 and luhn_valid(d) and not covered(spans, s, e):
            problems.append(f"unlabelled luhn-valid number {m.group()}")
    for m in RE_SSN.finditer(text):
        if ssn_valid(m.group()) and not covered(spans, m.start(), m.end()):
            problems.append(f"unlabelled ssn {m.group()}")
    for m in RE_IBAN.finditer(text):
        if iban_valid(m.group()) and not covered(spans, m.start(), m.end()):
            problems.append(f"unlabelled iban {m.group()}")
    for rx in RE_SECRETS:
        for m in rx.finditer(text):
            if not covered(spans, m.start(), m.end()):
                problems.append(f"unlabelled secret {m.group()[:40]}")
    return problems


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def render_positive(typ, i, seen):
    # round-robin over a shuffled template list so that every template is used
    order = _template_order.setdefault(typ, rng.sample(POSITIVE_TEMPLATES[typ], len(POSITIVE_TEMPLATES[typ])))
    for attempt in range(50):
        b = B()
        text = order[(i + attempt) % len(order)](b)
        if text in seen:
            continue
        return text, b.labels
    raise AssertionError(f"could not render a unique line for {typ}")


_template_order = {}


def render_negative(seen):
    for _ in range(50):
        text = pick(NEG_T)()
        if text not in seen:
            return text, []
    raise AssertionError("could not render a unique negative line")


def main():
    rows, seen = [], set()
    for typ in TYPES:
        for i in range(N_PER_TYPE):
            text, labels = render_positive(typ, i, seen)
            seen.add(text)
            rows.append((text, labels))
    for _ in range(N_NEGATIVE):
        text, labels = render_negative(seen)
        seen.add(text)
        rows.append((text, labels))
    rng.shuffle(rows)

    out_lines, problems = [], []
    counts = {t: 0 for t in TYPES}
    for text, labels in rows:
        spans = spans_of(text, labels)
        for p in check_line(text, spans):
            problems.append(f"{p}\n    in: {text[:160]!r}")
        for _, _, typ, _ in spans:
            counts[typ] += 1
        rec = {"text": text, "labels": [{"type": t, "value": v} for _, _, t, v in spans]}
        out_lines.append(json.dumps(rec, ensure_ascii=False))

    if problems:
        print("self-check FAILED:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        sys.exit(1)

    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "redaction_corpus.jsonl")
    with open(out_path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(out_lines) + "\n")

    n_neg = sum(1 for _, labels in rows if not labels)
    print(f"wrote {len(rows)} lines to {out_path}")
    for t in TYPES:
        print(f"  {t:<16} {counts[t]}")
    print(f"  {'(total labels)':<16} {sum(counts.values())}")
    print(f"negative lines (no labels): {n_neg} ({100.0 * n_neg / len(rows):.1f}%)")
    low = [t for t in TYPES if counts[t] < 20]
    if low:
        print(f"WARNING: fewer than 20 examples for {low}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
