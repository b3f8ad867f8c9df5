"""The HTTP/1.1 server's own limits, which uvicorn + httptools lack.

uvicorn reads headers without bound (6.7 M headers were parsed into +830 MB and answered 200) and
keeps a connection that sends nothing, or half a header, open forever (1,008 idle sockets exhausted
a 1,024-fd limit). :func:`uvicorn_limits` gives the ``uvicorn.Config`` arguments that close both
holes, for ``python -m service`` and for the tests' in-process servers alike:

* at most ``max_header_count`` headers and ``max_header_bytes`` of request line + headers, counted
  while httptools parses them (and, for one endless header value, as raw bytes read): the request
  gets 431 and the connection is closed at once, after at most one read buffer (64 KB) beyond the limit;
* ``header_timeout_s`` from the connection's start (or from a keep-alive request's first byte) to
  the end of its headers: a silent connection is closed, a half-sent request gets 408 and is closed;
* ``keep_alive_timeout_s``: an idle keep-alive connection is closed (uvicorn's own timer);
* ``max_connections``: beyond it uvicorn answers 503 and closes (its ``limit_concurrency``; in the
  multi-process server each front end gets its share).
Request bodies have their own timeout in the app (``body_timeout_s``).
"""
from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["uvicorn_limits", "bounded_protocol"]

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_READ_SLACK = 64 * 1024     # one transport read: a chunk may end one request and begin the next


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request that was already answered."""


def bounded_protocol(max_header_count: int, max_header_bytes: int, header_timeout_s: float) -> type:
    """An httptools protocol class for uvicorn (``Config(http=...)``) that enforces these limits."""

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._refused = False
            self._header_count = self._header_bytes = self._raw_bytes = 0
            self._header_timer: asyncio.TimerHandle | None = None
            self._in_request = False
            self._arm_header_timer()

        # ------------------------------------------------------------------ header read timeout
        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(header_timeout_s, self._on_header_timeout)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _on_header_timeout(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self._in_request:      # a request began but its headers never ended
                self._refuse(408, f"the request headers did not arrive within {header_timeout_s:g} s "
                                  "(TPSERVE_HEADER_TIMEOUT_S)")
            else:                     # nothing was sent: there is nobody to answer
                self.transport.close()

        # ------------------------------------------------------------------ size limits
        def _count(self, n_bytes: int, n_headers: int = 0) -> None:
            self._header_bytes += n_bytes
            self._header_count += n_headers
            if self._header_count > max_header_count:
                self._refuse(431, f"more than {max_header_count} request headers (TPSERVE_MAX_HEADER_COUNT)")
                raise _Refused("header count")     # stop the parser mid-headers
            if self._header_bytes > max_header_bytes:
                self._refuse(431, f"the request line and headers exceed {max_header_bytes} bytes "
                                  "(TPSERVE_MAX_HEADER_BYTES)")
                raise _Refused("header bytes")

        def _refuse(self, status: int, message: str) -> None:
            if not self._refused and not self.transport.is_closing():
                body = orjson.dumps({"error": message})
                self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                                     b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body))
                self.transport.close()
            self._refused = True
            self._cancel_header_timer()

        # ------------------------------------------------------------------ parser callbacks
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_request = True
            self._header_count = self._header_bytes = self._raw_bytes = 0
            if self._header_timer is None:
                self._arm_header_timer()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4, 1)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            self._in_request = False
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            if self._refused:          # after a refusal the rest of what the client sends is dropped
                return
            super().data_received(data)
            if self._in_request and not self._refused:
                # Still inside a request's headers after this read. httptools hands a header to
                # on_header only once its value is complete, so one endless value is bounded here, by
                # the raw bytes read since the request began (one read buffer of slack for pipelining).
                self._raw_bytes += len(data)
                if self._raw_bytes > max_header_bytes + _READ_SLACK:
                    self._refuse(431, f"the request line and headers exceed {max_header_bytes} bytes "
                                      "(TPSERVE_MAX_HEADER_BYTES)")

        def send_400_response(self, msg: str) -> None:
            if not self._refused:      # our own refusal already answered (the parser reports it as an error)
                super().send_400_response(msg)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

    return BoundedHttpToolsProtocol


def uvicorn_limits(settings) -> dict:
    """``uvicorn.Config`` keyword arguments for the limits in ``settings`` (see the module docstring)."""
    return {
        "http": bounded_protocol(settings.max_header_count, settings.max_header_bytes, settings.header_timeout_s),
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "limit_concurrency": settings.max_connections,
        # no X-Forwarded-* rewriting: tpserve never uses the client's address, and the middleware cost
        # a few percent of the front end's CPU per request
        "proxy_headers": False,
    }
