"""Optional API keys: ``Authorization: Bearer <key>`` on every path except ``settings.open_paths``
(and the docs, when they are served: see :mod:`service.docs`).

A pure ASGI middleware (no per-request overhead when no keys are configured). Keys are compared in
constant time and never logged.
"""
from __future__ import annotations

import hmac

import orjson

__all__ = ["ApiKeyMiddleware"]


class ApiKeyMiddleware:
    def __init__(self, app, keys: list[str], open_paths: list[str], open_prefixes: tuple[str, ...] = ()):
        """``open_paths``: exact paths that need no key; ``open_prefixes``: path prefixes that need none."""
        self.app = app
        self._keys = [k.encode() for k in keys]
        self._open = set(open_paths)
        self._open_prefixes = tuple(open_prefixes)

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if (scope["type"] != "http" or not self._keys or path in self._open
                or (path.startswith(self._open_prefixes) and "/.." not in path)):   # no way out of the prefix
            return await self.app(scope, receive, send)
        token = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, rest = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    token = rest.strip()
                break
        if token is None:
            return await _reject(send, 401, "missing API key: send 'Authorization: Bearer <key>'")
        ok = False
        for key in self._keys:          # no early exit: every key is compared
            ok |= hmac.compare_digest(token, key)
        if not ok:
            return await _reject(send, 403, "invalid API key")
        return await self.app(scope, receive, send)


async def _reject(send, status: int, message: str):
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="tpserve"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
