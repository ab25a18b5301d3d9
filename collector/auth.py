"""Per-project bearer tokens (SPEC 5): an ingest token stamps its project on every record, a
query token sees only its project.

Tokens live in ``auth.tokens_file`` (TOML, ``[[tokens]]`` with ``sha256``, ``project``, ``scope``)
as SHA-256 hashes only; ``roomscope token create`` prints the plain token once. The file is
re-read when it changes, so a token created while the collector runs works at once. Nothing here
logs a token: callers get a project or None, never the reason a token was refused.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import SettingsError

SCOPES = ("ingest", "query")
# Same answer for a missing, malformed, unknown or wrong-scope token: nothing about projects leaks.
UNAUTHORIZED = "missing or invalid bearer token"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Token:
    sha256: str
    project: str
    scope: str


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or the password of
    ``Basic <base64(user:token)>`` (what Grafana's data sources send with basic auth), else
    None."""
    if not header:
        return None
    kind, _, token = header.strip().partition(" ")
    token = token.strip()
    if kind.lower() == "basic" and token:
        try:
            _, colon, token = base64.b64decode(token, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return token if colon and token else None
    return token if kind.lower() == "bearer" and token else None


def read_tokens(path: str | Path) -> dict[str, Token]:
    """hash → Token from a tokens file; a missing file holds no tokens."""
    p = Path(path).expanduser()
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read tokens file {p}: {exc}") from None
    tokens: dict[str, Token] = {}
    for i, row in enumerate(data.get("tokens", [])):
        if not isinstance(row, dict):
            raise SettingsError(f"{p}: tokens[{i}] must be a table")
        digest, project, scope = row.get("sha256"), row.get("project"), row.get("scope")
        if not (isinstance(digest, str) and len(digest) == 64):
            raise SettingsError(f"{p}: tokens[{i}].sha256 must be a SHA-256 hex digest")
        if not (isinstance(project, str) and project):
            raise SettingsError(f"{p}: tokens[{i}].project must be a non-empty string")
        if scope not in SCOPES:
            raise SettingsError(f"{p}: tokens[{i}].scope must be 'ingest' or 'query'")
        tokens[digest.lower()] = Token(digest.lower(), project, scope)
    return tokens


def create_token(path: str | Path, project: str, scope: str) -> str:
    """Append a new token's hash to the tokens file (mode 0600) and return the plain token."""
    if scope not in SCOPES:
        raise SettingsError("scope must be 'ingest' or 'query'")
    if not project:
        raise SettingsError("project must not be empty")
    p = Path(path).expanduser()
    read_tokens(p)  # refuse to append to a broken file
    token = "rs_" + secrets.token_urlsafe(32)
    entry = (
        f'\n[[tokens]]\nsha256 = "{hash_token(token)}"\nproject = {_toml_str(project)}\n'
        f'scope = "{scope}"\n'
    )
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(entry)
    return token


def _toml_str(s: str) -> str:
    import json

    return json.dumps(s)  # a JSON string is a valid TOML basic string


class Auth:
    """The token check of a running collector (``auth.enabled``)."""

    def __init__(self, tokens_file: str | Path):
        self.path = Path(tokens_file).expanduser()
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._tokens: dict[str, Token] = {}
        self._refresh()

    @classmethod
    def from_settings(cls, settings) -> Auth | None:
        if not settings.get("auth.enabled"):
            return None
        return cls(settings.get("auth.tokens_file"))

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp == self._stamp and self._stamp is not None:
                return
            self._tokens = read_tokens(self.path) if stamp else {}
            self._stamp = stamp

    def project(self, authorization: str | None, scope: str) -> str | None:
        """The project of a valid ``scope`` token in an Authorization header value, else None."""
        token = bearer(authorization)
        if token is None:
            return None
        # A half-written file keeps the tokens last read rather than locking everyone out.
        with contextlib.suppress(SettingsError):
            self._refresh()
        found = self._tokens.get(hash_token(token))
        if found is None or not secrets.compare_digest(found.scope, scope):
            return None
        return found.project
