"""The docs cannot drift: generated references are current, every command and setting is
documented, and the README stays a manual (short, no dated diary lines).

Regenerate the references after changing a command's help or a setting::

    ROOMSCOPE_UPDATE_DOCS=1 python -m pytest tests/test_docs.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from docs_reference import (
    CLI_REFERENCE,
    GENERATED,
    ROOT,
    SETTINGS,
    SETTINGS_REFERENCE,
    UPDATE_COMMAND,
    command_name,
    walk_commands,
)

README = ROOT / "README.md"
README_MAX_LINES = 500
UPDATING = os.environ.get("ROOMSCOPE_UPDATE_DOCS") == "1"

# A commit hash is hex with at least one letter and one digit, 7-40 characters long.
HEX_ID = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
COMMIT_WORD = re.compile(r"\bcommit\b", re.IGNORECASE)
DIARY_PHRASES = re.compile(r"\bthis stop\b|\bprevious stop\b", re.IGNORECASE)


def manual_pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", list(GENERATED), ids=lambda p: p.name)
def test_generated_reference_is_current(path: Path) -> None:
    rendered = GENERATED[path]()
    if UPDATING:
        path.write_text(rendered)
        return
    name = path.relative_to(ROOT).as_posix()
    if not path.exists():
        pytest.fail(f"{name} is missing: run {UPDATE_COMMAND}", pytrace=False)
    if path.read_text() != rendered:
        pytest.fail(f"{name} is stale: run {UPDATE_COMMAND}", pytrace=False)


def test_every_command_has_help() -> None:
    for path, command, ctx in walk_commands():
        name = command_name(path)
        assert (command.help or "").strip(), f"{name} has no help text"
        assert command.get_help(ctx).startswith(f"Usage: {name}"), name


def test_every_command_is_in_the_readme_tour_or_the_cli_reference() -> None:
    readme = README.read_text()
    reference = CLI_REFERENCE.read_text()
    for path, _command, _ctx in walk_commands():
        name = command_name(path)
        in_tour = f"### {name}\n" in readme
        assert in_tour or f"## {name}\n" in reference, f"{name} is documented nowhere"
    assert "docs/cli-reference.md" in readme, "the README does not link the CLI reference"


def test_every_setting_is_in_the_settings_reference() -> None:
    reference = SETTINGS_REFERENCE.read_text()
    for s in SETTINGS:
        assert f"| `{s.key}` | `{s.env}` |" in reference, f"{s.key} is missing from settings.md"
    assert "docs/settings.md" in README.read_text(), "the README does not link settings.md"


def test_readme_is_a_short_manual() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) < README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES - 1}):"
        " move details into docs/"
    )


def test_docs_are_not_a_diary() -> None:
    found = []
    for page in manual_pages():
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if DIARY_PHRASES.search(line) or (COMMIT_WORD.search(line) and HEX_ID.search(line)):
                found.append(f"{page.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "dated diary lines in the docs (state current facts instead):\n" + "\n".join(
        found
    )


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings (lowercase, punctuation dropped, spaces to -)."""
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_links_between_pages_resolve() -> None:
    link = re.compile(r"\]\(((?:\.\./|docs/)?[\w./-]*?\.(?:md|png))?(?:#([\w-]+))?\)")
    broken = []
    for page in manual_pages():
        for target, anchor in link.findall(page.read_text()):
            path = (page.parent / target).resolve() if target else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{page.relative_to(ROOT)} -> {target}#{anchor}")
    assert not broken, "broken links:\n" + "\n".join(broken)
