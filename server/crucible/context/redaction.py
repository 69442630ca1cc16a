"""Redaction: obvious secrets in prompt text replaced by placeholders before any provider sees it.

What counts as a secret follows the rule sets of gitleaks (``config/gitleaks.toml``: fixed
token prefixes, AWS key ids, JWTs, private-key blocks, and its ``generic-api-key`` rule, a
key-like name followed by a value of entropy >= 3.5) and detect-secrets (keyword and
high-entropy plugins). Each secret is replaced by ``<redacted>`` in place, so the text around
it, quotes included, keeps its shape: ``password = "hunter22"`` becomes
``password = "<redacted>"``. A whole private-key block becomes ``<redacted private key>``.

Rules, each run only when one of its needles (a literal, as gitleaks's ``keywords``) is in the
text, so text without a candidate costs a few substring searches (``str.__contains__``, in C);
every pattern starts with a literal, which ``re`` finds with a fast search instead of trying
each position (an IGNORECASE pattern or one opening with a look-behind costs 10-50 times
more), so case-insensitive rules run on a lower-cased copy and boundaries are checked in code:

* provider tokens: OpenAI / Anthropic ``sk-…``, GitHub ``ghp_ gho_ ghu_ ghs_ ghr_
  github_pat_…``, GitLab ``glpat-…``, Slack ``xox[abposr]-…`` and webhook URLs, Stripe
  ``sk_live_ rk_live_ sk_test_…``, Google ``AIza…``, Hugging Face ``hf_…``, npm ``npm_…``,
  PyPI ``pypi-AgEI…``, Groq ``gsk_…``;
* AWS access key ids ``AKIA… ASIA… ABIA… ACCA… A3T…``;
* JWTs (``eyJ….eyJ….…``);
* private-key blocks ``-----BEGIN … PRIVATE KEY-----`` to ``-----END … PRIVATE KEY-----``, and
  a block cut by the text's edge up to that edge;
* passwords in URLs (``scheme://user:password@host``) and ``Bearer`` tokens;
* assignments: a name ending in a key-like word (password, passwd, pwd, passphrase, secret,
  token, api_key, access_key, private_key, secret_key, auth_key, client_secret, credentials)
  then ``=``, ``:``, ``:=``, ``=>`` or ``==`` and a value: a quoted value of 4+ characters
  always, an unquoted one when it looks random (8+ characters with letters and digits, or
  16+ with mixed case and entropy >= 3.5). ``aws_secret_access_key = …`` is one of these.

``contains_private_key`` says whether text carries any private-key marker (the completion
path sends no prompt whose window does). Pure and fast: a full 8000-character window is
redacted in well under a millisecond (``tests/unit/test_redaction.py`` measures it).
Never raises; ``redact`` is idempotent (placeholders match no rule).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

PLACEHOLDER = "<redacted>"
KEY_PLACEHOLDER = "<redacted private key>"

Span = tuple[int, int]  # [start, end) of a secret in the text


@dataclass(frozen=True, slots=True)
class Redacted:
    """Text with its secrets replaced, and how many were."""

    text: str
    count: int


@dataclass(frozen=True, slots=True)
class RedactedWindow:
    """The text before and after the cursor, redacted."""

    prefix: str
    suffix: str
    count: int


# -- the rules: each finds the spans of secrets in (text, lower-cased text) -------------------

_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "_-")


def _tokens(pattern: str) -> Callable[[str, str], Iterator[Span]]:
    """A fixed-prefix token: the whole match, unless a token character precedes it (then it
    is the middle of something longer, not a token)."""
    compiled = re.compile(pattern)

    def find(text: str, folded: str) -> Iterator[Span]:
        for match in compiled.finditer(text):
            start = match.start()
            if start == 0 or text[start - 1] not in _TOKEN_CHARS:
                yield match.span()

    return find


def _group(pattern: str, *, fold: bool = False) -> Callable[[str, str], Iterator[Span]]:
    """Group ``secret`` of each match (the words around it stay)."""
    compiled = re.compile(pattern)

    def find(text: str, folded: str) -> Iterator[Span]:
        for match in compiled.finditer(folded if fold else text):
            yield match.span("secret")

    return find


_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9_]+ )*PRIVATE KEY(?: BLOCK)?-----")
_END = re.compile(r"-----END (?:[A-Z0-9_]+ )*PRIVATE KEY(?: BLOCK)?-----")
_ANY_MARKER = re.compile(r"-----(?:BEGIN|END) (?:[A-Z0-9_]+ )*PRIVATE KEY(?: BLOCK)?-----")


def _private_keys(text: str, folded: str) -> Iterator[Span]:
    """Whole blocks, and blocks cut by the text's edges: the start up to the last END before
    the first BEGIN, each BEGIN up to the last END before the next BEGIN (or up to that BEGIN,
    or the end, when there is none). JSON and PEM strings written on one line with \\n
    escapes are blocks too."""
    begins = [match.span() for match in _BEGIN.finditer(text)]
    ends = [match.span() for match in _END.finditer(text)]
    limits = [start for start, _ in begins] + [len(text)]
    head = [end for start, end in ends if end <= limits[0]]
    if head:
        yield 0, head[-1]
    for (start, after), limit in zip(begins, limits[1:], strict=True):
        inner = [end for s, end in ends if s >= after and end <= limit]
        yield start, inner[-1] if inner else limit


# The key-like word must end the name (``password_hash`` and ``tokenizer`` are not secrets);
# ``key`` alone is too common in code (dictionary keys): only its compound forms count.
_KEYWORDS = ("password", "passwd", "pwd", "passphrase", "secret", "token", "credential", "key")
_KEY_QUALIFIER = re.compile(
    r"(?:api|access|private|secret|auth|client|signing|encryption|master)[_.-]?\Z"
)
# What follows the name: the end of a quoted name, a type annotation, the operator, a value.
_ASSIGNED = re.compile(
    r"""
    s?(?![A-Za-z0-9_])                      # credentials; the word ends the name
    ["'`]?                                  # the end of a quoted name (JSON, dicts)
    (?:[ \t]*:[ \t]*[A-Za-z_][\w\[\]., |]*?(?=[ \t]*=))?   # a type annotation: name: str = …
    [ \t]*(?:=>|:=|==?|:)[ \t]*
    (?:
        (?P<q>["'`])(?P<quoted>[^"'`\r\n\\]{4,200})(?:(?P=q)|(?=[\r\n]|\Z))  # or unterminated
      | (?P<bare>[^\s"'`,;&()\[\]{}<>]{8,200})
    )
    """,
    re.VERBOSE,
)
_REFERENCE = re.compile(r"(?:\$\{?|%|\{\{|@)")  # $VAR, ${VAR}, %VAR%, {{ var }}, @var@
_IDENTIFIER_PATH = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*(?:\(\))?")


def _entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character."""
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _looks_random(value: str) -> bool:
    """Whether an unquoted value is a literal secret rather than an expression or a word."""
    if _REFERENCE.match(value):
        return False
    letters = any(c.isalpha() for c in value)
    digits = any(c.isdigit() for c in value)
    if _IDENTIFIER_PATH.fullmatch(value) and not digits:
        # self.token, os.environ, get_password(): code, unless it reads like random bytes.
        mixed = any(c.isupper() for c in value) and any(c.islower() for c in value)
        return len(value) >= 16 and mixed and "." not in value and _entropy(value) >= 3.5
    return (letters and digits) or (len(value) >= 16 and _entropy(value) >= 3.5)


def _assignments(text: str, folded: str) -> Iterator[Span]:
    """Values assigned to key-like names; found from each keyword (``str.find``, fast)."""
    for word in _KEYWORDS:
        at = folded.find(word)
        while at != -1:
            after = at + len(word)
            if word != "key" or _KEY_QUALIFIER.search(folded, max(0, at - 12), at):
                match = _ASSIGNED.match(text, after)
                if match is not None:
                    span = _value_span(match)
                    if span is not None:
                        yield span
            at = folded.find(word, after)


def _value_span(match: re.Match[str]) -> Span | None:
    quoted, bare = match.group("quoted"), match.group("bare")
    if quoted is not None:
        if PLACEHOLDER in quoted or quoted.strip() != quoted or _REFERENCE.match(quoted):
            return None
        return match.span("quoted")
    if bare is None or PLACEHOLDER in bare or not _looks_random(bare):
        return None
    return match.span("bare")


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    needles: tuple[str, ...]  # the rule runs only if one is in the text; () always
    find: Callable[[str, str], Iterator[Span]]
    placeholder: str = PLACEHOLDER
    fold: bool = False  # needles are looked for in the lower-cased text


# Each starts with a literal, so ``re`` finds candidates as fast as a substring search: these
# rules need no needles.
_TOKEN_PATTERNS = (
    # OpenAI (sk-, sk-proj-, sk-svcacct-, sk-admin-) and Anthropic (sk-ant-api03-, admin01)
    r"sk-[A-Za-z0-9_-]{20,}",
    r"gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub classic tokens
    r"github_pat_[A-Za-z0-9_]{22,}",  # GitHub fine-grained
    r"glpat-[A-Za-z0-9_-]{20,}",  # GitLab
    r"xox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
    r"sk_(?:live|test|prod)_[A-Za-z0-9]{10,}",  # Stripe secret
    r"rk_(?:live|test|prod)_[A-Za-z0-9]{10,}",  # Stripe restricted
    r"AIza[A-Za-z0-9_-]{35}",  # Google API key
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"npm_[A-Za-z0-9]{36}",  # npm
    r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",  # PyPI
    r"gsk_[A-Za-z0-9]{40,}",  # Groq
    r"A(?:3T[A-Z0-9]|KIA|SIA|BIA|CCA)[A-Z2-7]{16}(?![A-Za-z0-9])",  # AWS access key id
    r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
)

_RULES: tuple[_Rule, ...] = (
    # Private keys first: a key body goes whole, before other rules cut it into pieces.
    _Rule("private_key", ("PRIVATE KEY",), _private_keys, KEY_PLACEHOLDER),
    *(_Rule(f"token {pattern[:6]}", (), _tokens(pattern)) for pattern in _TOKEN_PATTERNS),
    _Rule(
        "slack_webhook",
        ("hooks.slack.com",),
        _group(r"hooks\.slack\.com/services/(?P<secret>[A-Za-z0-9/_+-]{20,})"),
    ),
    _Rule("url_password", ("://",), _group(r"://[^\s:/@\"'<>]+:(?P<secret>[^\s/@\"'<>]+)@")),
    _Rule(
        "bearer",
        ("bearer",),
        _group(r"bearer[ \t]+(?P<secret>[a-z0-9._~+/-]{16,}=*)", fold=True),
        fold=True,
    ),
    _Rule(
        "assignment",
        ("pass", "pwd", "secret", "token", "key", "credential"),
        _assignments,
        fold=True,
    ),
)

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _fold(text: str) -> str:
    """Lower case with the same length as ``text``, so spans found in it fit ``text``."""
    folded = text.lower()  # fast; a few characters ("İ") lower to two
    return folded if len(folded) == len(text) else text.translate(_ASCII_LOWER)


def redact(text: str) -> Redacted:
    """``text`` with every secret the rules find replaced, and how many were."""
    count = 0
    folded: str | None = None
    for rule in _RULES:
        if rule.fold and folded is None:
            folded = _fold(text)
        haystack = folded if rule.fold and folded is not None else text
        if rule.needles and not any(needle in haystack for needle in rule.needles):
            continue
        spans = _disjoint(rule.find(text, folded if folded is not None else text))
        if spans:
            count += len(spans)
            text = _apply(text, spans, rule.placeholder)
            folded = None
    return Redacted(text, count)


def _disjoint(found: Iterator[Span]) -> list[Span]:
    """Non-empty spans in order, each starting after the previous one ends."""
    spans: list[Span] = []
    for start, end in sorted(found):
        if end > start and (not spans or start >= spans[-1][1]):
            spans.append((start, end))
    return spans


def _apply(text: str, spans: list[Span], placeholder: str) -> str:
    parts: list[str] = []
    pos = 0
    for start, end in spans:
        parts.append(text[pos:start])
        parts.append(placeholder)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def contains_private_key(text: str) -> bool:
    """Whether ``text`` holds a private-key marker (a BEGIN or END line), whole block or not."""
    return "PRIVATE KEY" in text and _ANY_MARKER.search(text) is not None


_NEAR_CURSOR = 512  # characters each side searched for a secret the cursor splits


def redact_window(prefix: str, suffix: str) -> RedactedWindow | None:
    """The text before and after the cursor, each redacted; ``None`` when the cursor is in
    or at the end of a secret: the user is typing one, nothing there is worth a suggestion,
    and the model must not be asked to go on (nor be shown the half after the cursor)."""
    if _touches_cursor(prefix[-_NEAR_CURSOR:], suffix[:_NEAR_CURSOR]):
        return None
    before, after = redact(prefix), redact(suffix)
    return RedactedWindow(before.text, after.text, before.count + after.count)


def _touches_cursor(before: str, after: str) -> bool:
    """Whether a secret found in ``before + after`` covers the point between them."""
    text, cursor = before + after, len(before)
    folded = _fold(text)
    for rule in _RULES:
        haystack = folded if rule.fold else text
        if rule.needles and not any(needle in haystack for needle in rule.needles):
            continue
        if any(start < cursor <= end for start, end in rule.find(text, folded)):
            return True
    return False
