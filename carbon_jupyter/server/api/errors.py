"""Error answers in one shape: ``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}``.

It is the shape FastAPI gives validation errors (422), so a client finds the
field at fault in ``loc`` whatever the status: ``["path", "run_id"]``,
``["body", "samples", 3, "power_w"]``, ``["header", "authorization"]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse


def problem(
    status: int,
    loc: Sequence[str | int],
    msg: str,
    kind: str,
    headers: Mapping[str, str] | None = None,
) -> HTTPException:
    """An ``HTTPException`` whose detail names the field ``loc`` and says what to do."""
    return HTTPException(
        status_code=status,
        detail=[{"loc": list(loc), "msg": msg, "type": kind}],
        headers=dict(headers) if headers else None,
    )


class SafeJSONResponse(JSONResponse):
    """JSON written as ASCII (any character escaped) and without NaN: valid whatever it holds."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode()
