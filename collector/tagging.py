"""Project, room and explicit-session tagging rules (SPEC 1).

A resource's tags are computed once per resource; a record overrides them only when one of its
own attributes carries a tag key (record-level attributes win over resource attributes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Tags:
    project: str
    room: str | None
    session: str | None


class Tagger:
    def __init__(
        self,
        *,
        project_keys: Sequence[str],
        room_keys: Sequence[str],
        session_keys: Sequence[str],
        default_project: str,
    ):
        self.project_keys = tuple(project_keys)
        self.room_keys = tuple(room_keys)
        self.session_keys = tuple(session_keys)
        self.default_project = default_project
        # Every key that can change a tag: records are only re-tagged when they carry one.
        self.all_keys = frozenset(self.project_keys + self.room_keys + self.session_keys)
        self._forced: dict[str, Tagger] = {}

    @classmethod
    def from_settings(cls, settings) -> Tagger:
        return cls(
            project_keys=settings.get("tagging.project_keys"),
            room_keys=settings.get("tagging.room_keys"),
            session_keys=settings.get("tagging.session_keys"),
            default_project=settings.get("tagging.default_project"),
        )

    def forced(self, project: str) -> Tagger:
        """This tagger with ``project`` stamped on every record: no attribute can name another
        (an ingest token's project, SPEC 5). Cached per project."""
        tagger = self._forced.get(project)
        if tagger is None:
            tagger = Tagger(
                project_keys=(),
                room_keys=self.room_keys,
                session_keys=self.session_keys,
                default_project=project,
            )
            self._forced[project] = tagger
        return tagger

    @staticmethod
    def _first(attrs: Mapping[str, str | None], keys: Sequence[str]) -> str | None:
        for key in keys:
            value = attrs.get(key)
            if value:
                return value
        return None

    def resource_tags(self, resource_attrs: Mapping[str, str | None]) -> Tags:
        return Tags(
            self._first(resource_attrs, self.project_keys) or self.default_project,
            self._first(resource_attrs, self.room_keys),
            self._first(resource_attrs, self.session_keys),
        )

    def record_tags(self, record_attrs: Mapping[str, str | None], base: Tags) -> Tags:
        """Tags of a record whose own attributes hold at least one tag key."""
        return Tags(
            self._first(record_attrs, self.project_keys) or base.project,
            self._first(record_attrs, self.room_keys) or base.room,
            self._first(record_attrs, self.session_keys) or base.session,
        )
