"""uvicorn's httptools protocol with a deadline for request headers (slow-loris protection).

uvicorn times out idle keep-alive connections but not a client that trickles its request
headers forever. This protocol arms a timer when a connection opens and when each new request
begins; the connection is closed unless the headers are complete before it fires. Bodies are
bounded separately by the receiver (limits.request_timeout).
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def guarded_protocol(header_timeout: float) -> type[HttpToolsProtocol]:
    """An HttpToolsProtocol subclass that closes connections slower than ``header_timeout``."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedHttpToolsProtocol
