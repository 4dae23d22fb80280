"""Sending requests to a team server over HTTP, and what each answer means for the sender.

:class:`Connection` keeps one :class:`httpx.Client` (keep-alive, short
timeouts, the token as ``Authorization: Bearer``). :meth:`Connection.send`
never raises: it returns an :class:`Outcome`:

``ok``
    a 2xx: the request is delivered; its rows leave the outbox.
``retry``
    the server could not be reached, timed out, answered 5xx or 429: the
    request stays in line and is tried again after a backoff
    (:func:`backoff_s`).
``reject``
    any other answer (400, 401, 403, 404, 409, 422, ...): the server will not
    take this request as it is. It is set aside (kept in the outbox, shown by
    ``carbon-jupyter status``) so that it cannot hold up the rest.

A samples batch the server finds too large (413) or too long (422
``batch_too_long``, a server started with a small ``--max-batch``) is split in
halves and sent again, down to single samples.

Consecutive sample batches of one run are sent as one request
(:func:`coalesce`), up to :data:`~carbon_jupyter.forward.wire.MAX_SAMPLES_PER_REQUEST`.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from carbon_jupyter.forward.config import Destination
from carbon_jupyter.forward.outbox import Message
from carbon_jupyter.forward.wire import MAX_SAMPLES_PER_REQUEST

#: Backoff after the first failure, doubled per failure up to BACKOFF_MAX_S, in seconds.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 60.0
#: Seconds to wait for a connection, and for anything else.
CONNECT_TIMEOUT_S = 2.0
TIMEOUT_S = 10.0
#: The longest error text kept (the server's own message, shortened).
MAX_ERROR_CHARS = 300

Kind = Literal["ok", "retry", "reject"]


@dataclass(frozen=True)
class Outcome:
    """What became of one request: ``ok``, ``retry`` or ``reject``, and why."""

    kind: Kind
    status: int | None = None
    error: str = ""
    retry_after_s: float | None = None
    #: A samples batch the server finds too large (413) or too long: send it in parts.
    split: bool = False


def backoff_s(failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``failures`` failures in a row (>= 1), with jitter.

    0.5 s doubling per failure up to 60 s; the wait is drawn from the upper half
    of that (so many clients that failed together do not come back together).
    """
    ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** max(failures - 1, 0))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def dumps(body: Any) -> str:
    """JSON text of a body; numbers that are not finite (NaN, inf) are sent as null."""
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(_finite(body), allow_nan=False, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclass
class Request:
    """One HTTP request made of one or more outbox messages (coalesced sample batches)."""

    method: str
    path: str
    body: str
    messages: list[Message] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(m.samples for m in self.messages)


def coalesce(
    messages: Sequence[Message], limit: int = MAX_SAMPLES_PER_REQUEST
) -> Iterator[Request]:
    """Requests for ``messages`` in order, consecutive sample batches of a run merged."""
    i = 0
    while i < len(messages):
        first = messages[i]
        group = [first]
        total = first.samples
        if first.method == "POST" and first.path.endswith("/samples"):
            while (
                i + len(group) < len(messages)
                and (nxt := messages[i + len(group)]).path == first.path
                and nxt.method == "POST"
                and total + nxt.samples <= limit
            ):
                group.append(nxt)
                total += nxt.samples
        i += len(group)
        if len(group) == 1:
            yield Request(first.method, first.path, first.body, group)
        else:
            merged = [s for m in group for s in json.loads(m.body)["samples"]]
            yield Request(first.method, first.path, dumps({"samples": merged}), group)


def _detail(response: Any) -> str:
    """The server's own words for a refusal: ``detail`` or ``message`` of its JSON, or text."""
    try:
        data = response.json()
    except ValueError:
        data = None
    text: Any = None
    if isinstance(data, dict):
        text = data.get("detail") or data.get("message") or data.get("error")
        if isinstance(text, list):  # validation errors: [{"loc": [...], "msg": ...}, ...]
            text = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', '')}"
                if isinstance(e, dict) else str(e)
                for e in text[:3]
            )  # fmt: skip
    if not text:
        text = (response.text or response.reason_phrase or "").strip()
    return str(text).replace("\n", " ")[:MAX_ERROR_CHARS]


def _retry_after(response: Any) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(value, 0.0), BACKOFF_MAX_S) if math.isfinite(value) else None


class Connection:
    """Requests to one server with one token over a kept-alive connection.

    ``timeout_s`` bounds each wait (connecting within ``min(timeout_s, 2 s)``).
    Not thread-safe: one sender thread uses it (or the ``push`` command).
    """

    def __init__(self, destination: Destination, *, timeout_s: float = TIMEOUT_S) -> None:
        self.destination = destination
        self.timeout_s = timeout_s
        self._client: Any = None

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if self.destination.token:
                headers["Authorization"] = f"Bearer {self.destination.token}"
            self._client = httpx.Client(
                base_url=self.destination.url,
                headers=headers,
                timeout=httpx.Timeout(
                    self.timeout_s, connect=min(self.timeout_s, CONNECT_TIMEOUT_S)
                ),
                trust_env=False,
                follow_redirects=False,
            )
        return self._client

    def set_timeout(self, timeout_s: float) -> None:
        """Wait at most ``timeout_s`` per request from now on (the last tries at exit)."""
        import httpx

        self.timeout_s = timeout_s
        if self._client is not None:
            self._client.timeout = httpx.Timeout(
                timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S)
            )

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def get(self, path: str) -> tuple[Outcome, Any]:
        """``GET path``: the outcome and, when it is ok, the JSON answer."""
        return self._call("GET", path, None)

    def send(self, request: Request) -> Outcome:
        """Send ``request``; see :meth:`request`."""
        return self.request(request)[0]

    def request(self, request: Request) -> tuple[Outcome, Any]:
        """Send ``request``: the outcome and, when it is ok, the JSON answer.

        A samples batch the server finds too large or too long is sent again in
        halves (the answers' ``received`` and ``stored`` added up).
        """
        outcome, answer = self._call(request.method, request.path, request.body)
        if not outcome.split or not request.path.endswith("/samples"):
            return outcome, answer
        samples = json.loads(request.body)["samples"]
        if len(samples) < 2:
            return outcome, answer
        half = len(samples) // 2
        total: dict[str, int] = {"received": 0, "stored": 0}
        for part in (samples[:half], samples[half:]):
            outcome, answer = self.request(
                Request(request.method, request.path, dumps({"samples": part}))
            )
            if outcome.kind != "ok":
                return outcome, None
            for name in total:
                if isinstance(answer, dict) and isinstance(answer.get(name), int):
                    total[name] += answer[name]
        return outcome, total

    def _call(self, method: str, path: str, body: str | None) -> tuple[Outcome, Any]:
        import httpx

        try:
            response = self._http().request(
                method, path, content=body.encode("utf-8") if body is not None else None
            )
        except httpx.TimeoutException:
            error = f"{method} {path}: no answer within {self.timeout_s:g} s"
            return Outcome("retry", error=error), None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            return Outcome("retry", error=f"cannot reach {self.destination.url}: {reason}"), None
        except Exception as exc:  # a broken proxy setting, an SSL library error: never raise
            return Outcome("retry", error=f"{method} {path}: {type(exc).__name__}: {exc}"), None
        status = response.status_code
        if 200 <= status < 300:
            try:
                data = response.json() if response.content else None
            except ValueError:
                data = None
            return Outcome("ok", status), data
        error = f"{status} on {method} {path}: {_detail(response)}"
        if status == 429 or status >= 500:
            return Outcome("retry", status, error, _retry_after(response)), None
        split = status == 413 or (status == 422 and "batch_too_long" in response.text)
        return Outcome("reject", status, error, split=split), None


@dataclass
class Tally:
    """What happened since ``forward_state`` was last written."""

    sent: int = 0
    sent_samples: int = 0
    ok_at: str | None = None
    error: str | None = None
    error_at: str | None = None

    def __bool__(self) -> bool:
        return bool(self.sent or self.ok_at or self.error)


class Health:
    """What a sender knows of its server: whether it answers, the backoff, what happened.

    :meth:`after` takes each request's outcome: a ``retry`` starts or lengthens the
    backoff (``retry_at``, a time of ``clock``); any answer ends it. ``tally``
    holds what is to be written to ``forward_state`` next.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: The server answered the latest request.
        self.up = False
        self.failures = 0
        #: When the next try may go (0: now).
        self.retry_at = 0.0
        self.tally = Tally()
        self.last_error: str | None = None
        self.last_ok_at: str | None = None

    def after(self, outcome: Outcome, samples: int) -> None:
        """Take the outcome of a request that carried ``samples`` samples."""
        from carbon_jupyter.store.rows import now_iso

        if outcome.kind == "retry":
            self.up = False
            self.failures += 1
            wait_s = backoff_s(self.failures)
            if outcome.retry_after_s is not None:
                wait_s = max(wait_s, outcome.retry_after_s)
            self.retry_at = self._clock() + wait_s
            self.error(outcome.error)
            return
        self.up = True
        self.failures = 0
        self.retry_at = 0.0
        if outcome.kind == "ok":
            self.tally.sent += 1
            self.tally.sent_samples += samples
            self.tally.ok_at = self.last_ok_at = now_iso()
        else:
            self.error(outcome.error)

    def error(self, text: str) -> None:
        """Note an error (of the server, or of this side: an outbox that cannot be written)."""
        from carbon_jupyter.store.rows import now_iso

        self.last_error = text
        self.tally.error, self.tally.error_at = text, now_iso()

    def take_tally(self) -> Tally:
        tally, self.tally = self.tally, Tally()
        return tally
