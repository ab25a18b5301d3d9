"""TraceQL spanset filters (SPEC 9): a small recursive-descent parser into a condition tree.

Grammar of the supported subset::

    query  := "{" [or] "}"
    or     := and ("||" and)*
    and    := unary ("&&" unary)*
    unary  := "(" or ")" | field OP value
    field  := resource.NAME | span.NAME | .NAME | INTRINSIC | span:NAME | trace:NAME
    OP     := = != > >= < <= =~ !~
    value  := "string" | number | duration (1.5s, 250ms) | error|ok|unset | a span kind
              | true | false | nil

Everything else Tempo knows (pipelines ``|``, structural operators ``>>`` ``~`` ``<<``, spanset
operators between ``{}``, aggregates like ``count()``, arithmetic) raises :class:`TraceQLError`
naming what is unsupported and where (1-based character position). The planner that turns the
tree into SQL is :mod:`query.library.traceql_sql`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import duckdb

from collector import durations

from .errors import QueryError

OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "=~", "!~")
STATUSES = ("error", "ok", "unset")
KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
# Intrinsic → its canonical name; span:/trace: spellings of Tempo 2.5+ included.
INTRINSICS = {
    "name": "name",
    "status": "status",
    "duration": "duration",
    "kind": "kind",
    "statusMessage": "statusMessage",
    "rootName": "rootName",
    "rootServiceName": "rootServiceName",
    "traceDuration": "traceDuration",
    "room": "room",
    "session": "session",
    "project": "project",
    "span:name": "name",
    "span:status": "status",
    "span:duration": "duration",
    "span:kind": "kind",
    "span:statusMessage": "statusMessage",
    "trace:rootName": "rootName",
    "trace:rootService": "rootServiceName",
    "trace:duration": "traceDuration",
}
AGGREGATES = ("count", "avg", "min", "max", "sum", "quantile_over_time", "rate", "select", "by")


class TraceQLError(QueryError):
    """A query outside the supported subset, or not TraceQL at all (HTTP 400, usage error)."""

    def __init__(self, message: str, position: int):
        super().__init__(f"TraceQL: {message} at position {position + 1}")
        self.position = position + 1


@dataclass(frozen=True)
class Field:
    scope: str  # "resource", "span", "any" (.X) or "intrinsic"
    name: str


@dataclass(frozen=True)
class Value:
    type: str  # "string", "number", "duration", "status", "kind", "bool", "nil"
    value: Any  # str, float/int, int ns, "error", "server", bool, None


@dataclass(frozen=True)
class Cond:
    field: Field
    op: str
    value: Value


@dataclass(frozen=True)
class Group:
    op: str  # "&&" or "||"
    items: tuple[Node, ...]


Node = Cond | Group

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
    |(?P<duration>\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h)(?![\w.]))
    |(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.]))
    |(?P<op>&&|\|\||!~|=~|!=|>=|<=|>>|<<|!>>|!<<|!~|[{}()=<>|~!+\-*/%^,])
    |(?P<scoped>(?:resource|span|event|link|instrumentation)\.(?:"(?:[^"\\]|\\.)*"|[^\s{}()=!<>~&|,"]+))
    |(?P<colon>(?:span|trace|event|link|instrumentation):[A-Za-z_]+)
    |(?P<dotted>\.(?:"(?:[^"\\]|\\.)*"|[^\s{}()=!<>~&|,"]+))
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "/": "/"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise TraceQLError(f"unexpected character {text[pos]!r}", pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


def _unquote(text: str, pos: int) -> str:
    if text.startswith("`"):
        return text[1:-1]
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise TraceQLError(f"unknown escape \\{nxt} in a string", pos + i + 1)
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _attr_name(text: str, pos: int) -> str:
    return _unquote(text, pos) if text[:1] in '"`' else text


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str, what: str) -> _Tok:
        tok = self.tok
        if tok.text != text or tok.kind not in ("op",):
            self.fail(f"expected {what}", tok)
        return self.take()

    def fail(self, message: str, tok: _Tok) -> None:
        raise TraceQLError(f"{message}, found {_describe(tok)}", tok.pos)

    def query(self) -> Node | None:
        tok = self.tok
        if tok.kind == "word" and tok.text in AGGREGATES:
            raise TraceQLError(f"aggregates ({tok.text}()) are not supported", tok.pos)
        self.expect("{", "'{' to start a spanset filter")
        node = None if self.tok.text == "}" else self.or_()
        self.expect("}", "'&&', '||' or '}'")
        tail = self.tok
        if tail.kind != "end":
            _unsupported_tail(tail)
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.tok.text == "||":
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else Group("||", tuple(items))

    def and_(self) -> Node:
        items = [self.unary()]
        while self.tok.text == "&&":
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else Group("&&", tuple(items))

    def unary(self) -> Node:
        if self.tok.text == "(" and self.tok.kind == "op":
            self.take()
            node = self.or_()
            self.expect(")", "')'")
            return node
        field = self.field()
        op = self.tok
        if op.kind != "op" or op.text not in OPERATORS:
            if op.text in ("+", "-", "*", "/", "%", "^"):
                raise TraceQLError(f"arithmetic ({op.text}) is not supported", op.pos)
            self.fail("expected a comparison (= != > >= < <= =~ !~)", op)
        self.take()
        value = self.value()
        return _checked(Cond(field, op.text, value), op)

    def field(self) -> Field:
        tok = self.take()
        if tok.kind == "scoped":
            scope, _, name = tok.text.partition(".")
            if scope not in ("resource", "span"):
                raise TraceQLError(f"{scope}. attributes are not supported", tok.pos)
            return Field(scope, _attr_name(name, tok.pos))
        if tok.kind == "dotted":
            return Field("any", _attr_name(tok.text[1:], tok.pos))
        if tok.kind in ("word", "colon") and tok.text in INTRINSICS:
            return Field("intrinsic", INTRINSICS[tok.text])
        if tok.kind == "word" and self.tok.text == "(":
            raise TraceQLError(
                f"functions and aggregates ({tok.text}()) are not supported", tok.pos
            )
        if tok.kind in ("word", "colon"):
            raise TraceQLError(
                f"unknown intrinsic {tok.text!r} (attributes need a scope: span.{tok.text},"
                f" resource.{tok.text} or .{tok.text})",
                tok.pos,
            )
        self.i -= 1
        self.fail("expected a field (span.X, resource.X, .X or an intrinsic)", tok)
        raise AssertionError  # fail raised

    def value(self) -> Value:
        tok = self.take()
        if tok.kind == "string":
            return Value("string", _unquote(tok.text, tok.pos))
        if tok.kind == "duration":
            ns = durations.duration_ns(tok.text, "ms")
            if ns >= 2**63:
                raise TraceQLError("duration out of range", tok.pos)
            return Value("duration", ns)
        if tok.kind == "number":
            return Value("number", float(tok.text))
        if tok.kind == "word":
            word = tok.text
            if word in STATUSES:
                return Value("status", word)
            if word in KINDS:
                return Value("kind", word)
            if word in ("true", "false"):
                return Value("bool", word == "true")
            if word == "nil":
                return Value("nil", None)
        self.i -= 1
        self.fail("expected a value (a string, number, duration, status, kind, true/false)", tok)
        raise AssertionError


def _describe(tok: _Tok) -> str:
    return "the end of the query" if tok.kind == "end" else repr(tok.text)


def _unsupported_tail(tok: _Tok) -> None:
    if tok.text == "|":
        raise TraceQLError("pipelines (|) are not supported", tok.pos)
    if tok.text in (">>", "<<", ">", "<", "~", "!>>", "!<<"):
        raise TraceQLError(f"structural operators ({tok.text}) are not supported", tok.pos)
    if tok.text in ("&&", "||"):
        raise TraceQLError(
            f"spanset operators ({tok.text} between {{}}) are not supported; put all"
            " conditions in one {}",
            tok.pos,
        )
    raise TraceQLError(f"unexpected {_describe(tok)} after '}}'", tok.pos)


_INTRINSIC_TYPES = {
    "status": ("status",),
    "kind": ("kind",),
    "duration": ("duration",),
    "traceDuration": ("duration",),
}


_REGEX_CHECK: list[duckdb.DuckDBPyConnection] = []
_REGEX_LOCK = threading.Lock()


def regex_problem(pattern: str) -> str | None:
    """Why DuckDB's regular expressions (RE2) refuse ``pattern``, else None: checked here so a
    bad pattern is the user's 400, not a failed query."""
    with _REGEX_LOCK:
        if not _REGEX_CHECK:
            _REGEX_CHECK.append(duckdb.connect())
        cur = _REGEX_CHECK[0].cursor()
    try:
        cur.execute("SELECT regexp_full_match('', ?)", [pattern]).fetchone()
    except duckdb.Error as exc:
        return str(exc).splitlines()[0].removeprefix("Invalid Input Error: ")
    finally:
        cur.close()
    return None


def _checked(cond: Cond, op: _Tok) -> Cond:
    """Types the planner can compare: intrinsics take their own kind of value; regexes strings."""
    f, v = cond.field, cond.value
    if cond.op in ("=~", "!~"):
        if v.type != "string":
            raise TraceQLError(f"{cond.op} needs a string regular expression", op.pos)
        problem = regex_problem(v.value)
        if problem is not None:
            raise TraceQLError(f"invalid regular expression: {problem}", op.pos)
    if v.type == "nil" and cond.op not in ("=", "!="):
        raise TraceQLError("nil compares only with = or !=", op.pos)
    if f.scope == "intrinsic":
        wanted = _INTRINSIC_TYPES.get(f.name, ("string",))
        if v.type not in wanted:
            raise TraceQLError(f"{f.name} compares with a {wanted[0]}, not a {v.type}", op.pos)
        if f.name in ("status", "kind") and cond.op not in ("=", "!="):
            raise TraceQLError(f"{f.name} compares only with = or !=", op.pos)
    return cond


def parse(text: str) -> Node | None:
    """A TraceQL spanset filter → its condition tree; ``{}`` → None (every span)."""
    if not isinstance(text, str) or not text.strip():
        raise TraceQLError("empty query: expected a spanset filter like { status = error }", 0)
    return _Parser(text).query()


def fields_of(node: Node | None) -> list[Field]:
    """Every field the tree compares, in order."""
    if node is None:
        return []
    if isinstance(node, Cond):
        return [node.field]
    return [f for item in node.items for f in fields_of(item)]


def checked(text: str) -> str:
    """``text`` when it parses (a parameter's check); else TraceQLError with the position."""
    parse(text)
    return text
