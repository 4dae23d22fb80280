"""Request bodies larger than ``--max-body`` are refused before anything reads them.

A body announced larger (``Content-Length``) is answered 413 at once; a body
sent without a length (chunked) is read up to the limit and refused as soon
as it goes over. The 413 answer names the limit and the option that sets it.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _answer(status: int, loc: list[str], msg: str, kind: str) -> tuple[dict[str, Any], bytes]:
    body = json.dumps({"detail": [{"loc": loc, "msg": msg, "type": kind}]}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, body


class BodyLimit:
    """ASGI middleware refusing request bodies above ``max_body_b`` bytes with 413."""

    def __init__(self, app: ASGIApp, max_body_b: int) -> None:
        self.app = app
        self.max_body_b = max_body_b

    async def _refuse(self, send: Send, status: int, msg: str, kind: str) -> None:
        start, body = _answer(status, ["body"], msg, kind)
        await send(start)
        await send({"type": "http.response.body", "body": body})

    def _too_large(self, size: str) -> str:
        return (
            f"the request body is {size}; this server takes at most {self.max_body_b} bytes "
            "(send smaller batches, or start the server with a larger --max-body)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                declared = value
                break
        if declared is not None:
            if not declared.isdigit():
                await self._refuse(
                    send, 400, "Content-Length must be a number of bytes", "bad_content_length"
                )
                return
            if int(declared) > self.max_body_b:
                await self._refuse(
                    send, 413, self._too_large(f"{int(declared)} bytes"), "body_too_large"
                )
                return
            await self.app(scope, receive, send)
            return
        # No length given: read the body here, up to the limit, then hand it on.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_b:
                await self._refuse(
                    send, 413, self._too_large(f"over {self.max_body_b} bytes"), "body_too_large"
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
