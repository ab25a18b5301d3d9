"""Every SQL example in the manual runs (issue 19, item 8): the README's own example of the last
hour was a binder error on the pinned DuckDB, and nothing noticed.

The examples are taken from README.md and docs/*.md:

* fenced ```sql blocks, one example per statement (``;`` ends one; ``--`` lines are comments);
* ``roomscope … sql QUERY`` command lines in console/shell blocks (``$`` prompt or not,
  ``\\`` continuations, shell quoting, ``echo '…' | roomscope sql -``), which also run as the
  documented command, with the documented ``--db`` file swapped for the test's store;
* ``curl … /api/v1/sql … -d '{"sql": …}'`` lines;
* inline code that is a statement (it starts with SELECT, WITH, FROM, …), a ``WHERE …`` clause
  (run over ``spans``; a trailing ``AND …`` is dropped) or an ``attributes[…]`` expression.

An example the docs show failing is marked so, explicitly: ``# refused`` after the command (its
next line, the ``Error: …`` the docs print, must be the error exactly) or a ``-- refused: TEXT``
comment before the statement (TEXT must be in the error). A ``?`` is a parameter: the demo's
session ``lobby-standup-1`` is put in its place. Placeholders (``"..."``, ``…`` inside a
statement) are no examples.

They run against a store filled by the demo's workload (query.cli.demo.send_workload) through
the API, through ``roomscope --server`` and, with the collector stopped, ``roomscope --db``.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import DEFAULTS, make_reader
from test_query_fixtures import World

from collector.store.reads import open_reader
from query.cli import main
from query.cli.demo import send_workload
from query.library.errors import QueryError

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SESSION = "lobby-standup-1"  # an explicit session of the demo workload

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELLS = {"console", "sh", "shell", "bash", "zsh", "text", ""}
READ_WORDS = (
    "SELECT", "WITH", "FROM", "VALUES", "TABLE", "PIVOT", "UNPIVOT", "DESCRIBE", "SUMMARIZE",
    "SHOW", "PRAGMA", "EXPLAIN",
)  # fmt: skip
STATEMENT = re.compile(rf"^(?:{'|'.join(READ_WORDS)})\s+\S", re.IGNORECASE)
ATTRIBUTE_EXPRESSION = re.compile(r"^(?:resource_)?attributes\[")
SHELL_REFUSED = re.compile(r"\s#\s*refused\b[^'\"]*$")
SQL_REFUSED = re.compile(r"^\s*--\s*refused\b:?\s*(.*)$")


@dataclass(frozen=True)
class Example:
    where: str  # page:line
    sql: str
    argv: tuple[str, ...] | None = None  # the documented roomscope command, if it is one
    stdin: str | None = None  # what the command reads for "sql -"
    refused: str | None = None  # the error the docs show (a refused example), else None


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _is_placeholder(sql: str) -> bool:
    return sql.strip() in ("", "...", "…") or "…" in sql or "..." in sql


def _bind(sql: str) -> str:
    return sql.replace("?", f"'{SESSION}'") if "?" in sql else sql


def sql_block(body: str, where: str, first: int) -> Iterator[Example]:
    """One example per statement of a fenced sql block."""
    lines: list[str] = []
    refused: str | None = None
    start = first
    for n, line in enumerate(body.splitlines(), start=first):
        marker = SQL_REFUSED.match(line)
        if marker:
            refused = marker.group(1) or "refused"
            continue
        if line.strip().startswith("--") or not line.strip():
            continue
        if not lines:
            start = n
        lines.append(line)
        if line.rstrip().endswith(";"):
            yield Example(
                f"{where}:{start}", _bind("\n".join(lines).rstrip()[:-1]), None, None, refused
            )
            lines, refused = [], None
    if lines:
        yield Example(f"{where}:{start}", _bind("\n".join(lines)), None, None, refused)


def _command_lines(body: str, first: int) -> Iterator[tuple[int, str, str | None]]:
    """(line number, command, the line after it) of a shell block; continuations joined."""
    raw = body.splitlines()
    i = 0
    while i < len(raw):
        n, line = first + i, raw[i]
        while line.endswith("\\") and i + 1 < len(raw):
            i += 1
            line = line[:-1] + " " + raw[i].strip()
        i += 1
        yield n, line, raw[i] if i < len(raw) else None


def shell_block(body: str, where: str, first: int) -> Iterator[Example]:
    """``roomscope … sql QUERY`` and ``curl … /api/v1/sql`` lines of a console block."""
    for n, line, after in _command_lines(body, first):
        command = line.strip().removeprefix("$").strip()
        if not re.search(r"\broomscope\b.*\bsql\b|/api/v1/sql\b", command):
            continue
        refused = None
        if SHELL_REFUSED.search(command):
            assert after and after.startswith("Error: "), f"{where}:{n}: show the refusal"
            refused = after
        try:
            words = shlex.split(command, comments=True)
        except ValueError:
            continue  # prose, not a command
        stdin = None
        if "|" in words:
            left, words = words[: words.index("|")], words[words.index("|") + 1 :]
            stdin = left[-1] if left[:1] in (["echo"], ["printf"]) else None
        if words[:1] == ["roomscope"] and "sql" in words:
            rest = [w for w in words[words.index("sql") + 1 :]]
            while rest and rest[0] in ("-o", "--output"):
                rest = rest[2:]
            query = stdin if rest[:1] == ["-"] else (rest[0] if rest else None)
            if query is None or _is_placeholder(query):
                continue
            yield Example(f"{where}:{n}", _bind(query), tuple(words[1:]), stdin, refused)
        elif words[:1] == ["curl"]:
            data = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-d", "--data")]
            for body_text in data:
                query = json.loads(body_text).get("sql")
                if query and not _is_placeholder(query):
                    yield Example(f"{where}:{n}", _bind(query), None, None, refused)


def inline_code(text: str, where: str) -> Iterator[Example]:
    """Statements, WHERE clauses and attribute expressions in `inline code` outside fences."""
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", prose):
        code = " ".join(m.group(1).split())
        at = f"{where}:{_line(prose, m.start())}"
        if code.upper().startswith("WHERE "):
            clause = re.sub(r"\s+(AND|OR)\s+…$|\s*…$", "", code)
            if not _is_placeholder(clause):
                yield Example(at, _bind(f"SELECT count(*) FROM spans {clause}"))
        elif STATEMENT.match(code) and not _is_placeholder(code):
            yield Example(at, _bind(code))
        elif ATTRIBUTE_EXPRESSION.match(code):
            yield Example(at, _bind(f"SELECT {code} FROM spans"))


def page_examples(path: Path) -> list[Example]:
    text = path.read_text()
    where = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    found: list[Example] = []
    for m in FENCE.finditer(text):
        lang, first = m.group(1).lower(), _line(text, m.start(2))
        if lang == "sql":
            found.extend(sql_block(m.group(2), where, first))
        elif lang in SHELLS:
            found.extend(shell_block(m.group(2), where, first))
    found.extend(inline_code(text, where))
    return found


EXAMPLES = [e for page in PAGES for e in page_examples(page)]
COMMANDS = [e for e in EXAMPLES if e.argv is not None]


def test_the_extractor_finds_the_manuals_examples() -> None:
    """The known examples are found (so a change of the docs' format cannot silence the test)."""
    places = {e.where.split(":")[0] for e in EXAMPLES}
    assert {"README.md", "docs/tables.md"} <= places, places
    assert any(e.argv and e.refused for e in COMMANDS), "README's refused DELETE"
    assert any("timezone('UTC', now())" in e.sql for e in EXAMPLES)
    assert len([e for e in EXAMPLES if e.where.startswith("docs/tables.md")]) >= 4
    assert len(EXAMPLES) >= 10


def test_the_extractor_reads_each_form(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Run `SELECT 1 AS one` or filter `WHERE room = 'x' AND …`, see `attributes['k']`;\n"
        'not `roomscope sql "..."`, `INSERT … SELECT` or `SELECT`.\n'
        "```sql\n-- two statements\nSELECT 2\n  AS two;\n"
        "-- refused: read-only\nDELETE FROM spans;\nSELECT 'a;b' AS c\n```\n"
        "```console\n$ roomscope --db demo.duckdb sql 'SELECT '\"'\"'x'\"'\"' AS q' -o json\n"
        "x\n$ roomscope --db demo.duckdb sql \\\n"
        '    "SELECT count(*) FROM spans WHERE session_id = ?"\n'
        "$ roomscope --db demo.duckdb sql 'DROP TABLE spans'  # refused\n"
        "Error: refused: nope\n$ echo 'SELECT 3' | roomscope sql -\n"
        '$ curl -s http://h/api/v1/sql -d \'{"sql": "SELECT 4"}\'\n'
        '  roomscope --db x.duckdb sql "SELECT 5"\n```\n'
    )
    got = [(e.sql, e.argv is not None, e.stdin, e.refused) for e in page_examples(page)]
    assert got == [
        ("SELECT 2\n  AS two", False, None, None),
        ("DELETE FROM spans", False, None, "read-only"),
        ("SELECT 'a;b' AS c", False, None, None),
        ("SELECT 'x' AS q", True, None, None),
        (f"SELECT count(*) FROM spans WHERE session_id = '{SESSION}'", True, None, None),
        ("DROP TABLE spans", True, None, "Error: refused: nope"),
        ("SELECT 3", True, "SELECT 3", None),
        ("SELECT 4", False, None, None),
        ("SELECT 5", True, None, None),
        ("SELECT 1 AS one", False, None, None),
        ("SELECT count(*) FROM spans WHERE room = 'x'", False, None, None),
        ("SELECT attributes['k'] FROM spans", False, None, None),
    ]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A collector on free ports over a store filled with the demo's workload."""
    world = World(tmp_path_factory.mktemp("docs-sql") / "demo.duckdb")
    try:
        send_workload(world.grpc_endpoint)
        yield world
    finally:
        world.stop()


def _check(example: Example, ok: bool, error: str, rows: list | None) -> None:
    if example.refused is None:
        assert ok, f"{example.where}: {example.sql!r} fails: {error}"
        assert rows, f"{example.where}: {example.sql!r} finds nothing in the demo's data"
    else:
        assert not ok, f"{example.where}: {example.sql!r} is marked refused but runs"
        expected = example.refused.removeprefix("Error: ")
        if example.argv is not None:  # --server prefixes "server at URL: "
            assert error.endswith(expected), f"{example.where}: the docs show {expected!r}"
        else:
            assert expected in error or expected == "refused", (example.where, error)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_every_sql_example_runs_through_the_api(demo: World, example: Example) -> None:
    r = httpx.post(demo.api_url + "/api/v1/sql", json={"sql": example.sql}, timeout=60)
    assert r.status_code in (200, 400), r.text
    body = r.json()
    _check(example, r.status_code == 200, body.get("error", ""), body.get("rows"))


def _swap_source(argv: tuple[str, ...], source: list[str]) -> list[str]:
    """The documented command with its store (``--db FILE``) replaced by ``source``."""
    args = list(argv)
    if "--db" in args:
        i = args.index("--db")
        del args[i : i + 2]
    return [*source, *args]


def _run_commands(source: list[str]) -> None:
    runner = CliRunner()
    for e in COMMANDS:
        assert e.argv is not None
        result = runner.invoke(main, _swap_source(e.argv, source), input=e.stdin)
        error = result.stderr.strip().removeprefix("Error: ")
        _check(e, result.exit_code == 0, error, [result.stdout] if result.stdout else None)
        assert result.exit_code in (0, 1), (e.where, result.output)


def test_every_sql_command_runs_as_documented_with_server(demo: World) -> None:
    _run_commands(["--server", demo.api_url])


def test_every_sql_command_runs_as_documented_with_a_store_file(demo: World) -> None:
    with demo.offline() as db:
        _run_commands(["--db", db])


def test_comparing_times_with_now_says_how(demo: World) -> None:
    """DuckDB will not compare the tables' TIMESTAMP_NS with now()'s TIMESTAMP WITH TIME ZONE
    (a binder error); the answer names the form that works, which the docs use."""
    sql = "SELECT count(*) FROM spans WHERE start_time > now() - INTERVAL 1 HOUR"
    with demo.offline() as db:
        reader = make_reader(open_reader(db, DEFAULTS.get("store.memory_limit")))
        try:
            with pytest.raises(QueryError, match=r"timezone\('UTC', now\(\)\) - INTERVAL 1 HOUR"):
                reader.sql(sql)
        finally:
            reader.close()
    r = httpx.post(demo.api_url + "/api/v1/sql", json={"sql": sql}, timeout=60)
    assert r.status_code == 400 and "timezone('UTC', now())" in r.json()["error"], r.text
