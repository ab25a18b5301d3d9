"""The collector with the query port: what ``roomscope serve``, the demo and the tests run.

The collector knows nothing of the query side; this is where the two are composed.
"""

from __future__ import annotations

from collector.server import Collector, CollectorThread
from collector.settings import Settings
from collector.store import Store

from .api import create_app


def serving_collector(settings: Settings, *, store: Store | None = None) -> Collector:
    """A collector whose query port serves the REST API and the console."""
    return Collector(settings, api=lambda side: create_app(side, settings), store=store)


def serving_thread(settings: Settings, *, store: Store | None = None) -> CollectorThread:
    """:func:`serving_collector` on a background thread (tests, the demo)."""
    return CollectorThread(serving_collector(settings, store=store))
