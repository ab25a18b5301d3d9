"""Routes whose ``{parameters}`` are matched on the raw, still percent-encoded path (SPEC 3:
session ids are opaque text, ``/``, ``..``, ``#``, ``?``, spaces and any Unicode included).

Starlette routes on ``scope["path"]``, which the server has already percent-decoded: a session
id ``room/42``, sent as ``room%2F42``, would arrive as two segments and match nothing (or the
wrong route). :class:`RawPathRoute` splits ``scope["raw_path"]`` at its literal slashes first
and decodes each segment after, so ``/api/v1/sessions/room%2F42/events`` is the events of
``room/42``, and ``/api/v1/sessions/x%2Fevents`` the summary of ``x/events``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.routing import Match, Route


class RawPathRoute(Route):
    """A :class:`starlette.routing.Route` matched segment by segment on the raw path; each
    ``{name}`` is exactly one non-empty segment, percent-decoded as UTF-8."""

    def __init__(
        self, path: str, endpoint: Callable[..., Any], *, methods: Collection[str] | None = None
    ):
        super().__init__(path, endpoint, methods=methods)
        self.segments = path.split("/")

    def matches(self, scope: dict[str, Any]) -> tuple[Match, dict[str, Any]]:
        raw = scope.get("raw_path")
        if scope["type"] != "http" or raw is None or scope.get("root_path"):
            return super().matches(scope)
        parts = raw.split(b"/")
        if len(parts) != len(self.segments):
            return Match.NONE, {}
        params: dict[str, Any] = {}
        for template, part in zip(self.segments, parts, strict=True):
            text = unquote_to_bytes(part).decode("utf-8", errors="replace")
            if template.startswith("{") and template.endswith("}"):
                if not text:
                    return Match.NONE, {}
                params[template[1:-1]] = text
            elif text != template:
                return Match.NONE, {}
        child = {
            "endpoint": self.endpoint,
            "path_params": {**scope.get("path_params", {}), **params},
        }
        if self.methods and scope["method"] not in self.methods:
            return Match.PARTIAL, child
        return Match.FULL, child
