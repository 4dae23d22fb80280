"""The shapes the API accepts and answers, with their limits (pydantic).

Request bodies mirror :mod:`carbon_jupyter.forward.wire`. Every string has a
length limit and may not hold NUL or characters that cannot be written as
UTF-8; every physical figure is a finite number, at least 0 and below a bound
no real run reaches; ``status``, ``phase``, ``attribution``, device ``kind``
and ``method`` are enumerations. Unknown fields are refused (422 naming
them); an unknown ``wire_version`` is answered 400 naming ``wire_version``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from carbon_jupyter.server import times
from carbon_jupyter.server.config import MAX_BATCH_RANGE

#: The largest figure accepted for any energy (J) or CO2 (g): far above any real run.
MAX_FIGURE = 1e15
#: The longest run, in seconds (about 30 years).
MAX_DURATION_S = 1e9
#: The highest power of one device or run, in watts.
MAX_POWER_W = 1e8
#: The largest integer a database column takes (64-bit signed).
MAX_INT = 2**63 - 1
#: How many devices one run may list.
MAX_DEVICES = 256
#: How many tags, and warnings, one run may carry.
MAX_TAGS = 200
MAX_WARNINGS = 200
#: How many metrics (``log_metric``) one run may carry.
MAX_METRICS = 200
#: The largest ``hardware`` or ``versions`` object, as JSON text, in characters.
MAX_JSON_CHARS = 65_536
#: What a run id may look like: the client's UUIDs, and ids from imports.
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+~-]{0,63}$"


def check_storable(text: str) -> str:
    """``text`` if a database can store it (no NUL, valid Unicode), else ValueError."""
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return text


#: Strings of at most N characters that the databases can store.
Str40 = Annotated[str, Field(max_length=40), AfterValidator(check_storable)]
Str64 = Annotated[str, Field(max_length=64), AfterValidator(check_storable)]
Str80 = Annotated[str, Field(max_length=80), AfterValidator(check_storable)]
Str128 = Annotated[str, Field(max_length=128), AfterValidator(check_storable)]
Str200 = Annotated[str, Field(max_length=200), AfterValidator(check_storable)]
Str255 = Annotated[str, Field(max_length=255), AfterValidator(check_storable)]
Str500 = Annotated[str, Field(max_length=500), AfterValidator(check_storable)]
Str1000 = Annotated[str, Field(max_length=1000), AfterValidator(check_storable)]
Str2000 = Annotated[str, Field(max_length=2000), AfterValidator(check_storable)]
Str4000 = Annotated[str, Field(max_length=4000), AfterValidator(check_storable)]
Str10000 = Annotated[str, Field(max_length=10000), AfterValidator(check_storable)]
#: A non-empty name of at most 64 or 200 characters.
Name64 = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(check_storable)]
Name200 = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_storable)]


def check_iso(text: str) -> str:
    """``text`` as stored UTC ISO-8601 text, or ValueError naming the form expected."""
    try:
        return times.canonical(text)
    except (ValueError, OverflowError):
        raise ValueError("must be an ISO-8601 time such as 2024-05-01T12:00:00+00:00") from None


IsoTime = Annotated[
    str,
    Field(min_length=10, max_length=40, json_schema_extra={"format": "date-time"}),
    AfterValidator(check_iso),
]
Energy = Annotated[float, Field(ge=0, le=MAX_FIGURE, allow_inf_nan=False)]
Power = Annotated[float, Field(ge=0, le=MAX_POWER_W, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, le=MAX_DURATION_S, allow_inf_nan=False)]
#: A user's metric: any finite number.
Metric = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN, max_length=64)]
Status = Literal["running", "ok", "error", "interrupted", "lost"]
Phase = Literal["train", "inference", "other"]
Kind = Literal["cpu", "gpu", "ram"]
Method = Literal[
    "rapl", "nvml-energy", "nvml-power", "cpu-model", "ram-model", "replay", "codecarbon"
]


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    try:
        text = json.dumps(value, allow_nan=False, sort_keys=True, ensure_ascii=False)
    except (ValueError, TypeError):
        raise ValueError("must be a JSON object without NaN or infinite numbers") from None
    check_storable(text)
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"must be at most {MAX_JSON_CHARS} characters as JSON")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class IntensityBody(_Strict):
    """The carbon-intensity factor and PUE the client used for the run's CO2."""

    intensity_g_per_kwh: Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False)]
    source: Str500
    year: Annotated[int, Field(ge=1900, le=2200)] | None = None
    pue: Annotated[float, Field(ge=1.0, le=10.0, allow_inf_nan=False)]
    pue_source: Str500
    chosen_by: Str40 = "default"
    key: Str80 = "World"


class DeviceBody(_Strict):
    """One device of a run and what it drew (see ``wire.device_body``)."""

    device_id: Name64
    kind: Kind
    name: Str500
    method: Method
    uuid: Str128 | None = None
    power_limit_w: Power | None = None
    detail: Str4000 = ""
    energy_j: Energy
    process_energy_j: Energy | None = None
    mean_power_w: Power | None = None
    error: Str4000 | None = None


class RunBody(_Strict):
    """The body of ``PUT /api/v1/runs/{run_id}``: the run as it stands (see ``wire.run_body``)."""

    wire_version: Literal[1]
    id: RunId
    label: Str1000 | None = None
    phase: Phase | None = None
    items: Count | None = None
    status: Status
    started_at: IsoTime
    ended_at: IsoTime | None = None
    duration_s: Seconds
    attribution: Literal["device", "process"]
    energy_j: Energy
    cpu_energy_j: Energy
    gpu_energy_j: Energy
    ram_energy_j: Energy
    co2_g: Energy
    intensity: IntensityBody
    devices: Annotated[list[DeviceBody], Field(max_length=MAX_DEVICES)] = []
    tags: Annotated[dict[Str200, Str2000], Field(max_length=MAX_TAGS)] = {}
    notebook: Str2000 | None = None
    cell: Str200 | None = None
    kernel: Str200 | None = None
    client_user: Str200 | None = None
    host: Str255 | None = None
    error: Str10000 | None = None
    warnings: Annotated[list[Str2000], Field(max_length=MAX_WARNINGS)] = []
    metrics: Annotated[dict[Str200, Metric], Field(max_length=MAX_METRICS)] = {}
    hardware: JsonObject = {}
    versions: JsonObject = {}

    @field_validator("devices")
    @classmethod
    def _devices_unique(cls, value: list[DeviceBody]) -> list[DeviceBody]:
        seen: set[str] = set()
        for device in value:
            if device.device_id in seen:
                raise ValueError(f"device_id {device.device_id!r} is listed twice")
            seen.add(device.device_id)
        return value


class SampleBody(_Strict):
    """One live reading (see ``wire.sample_body``); ``seq`` numbers it in its run, from 1."""

    seq: Annotated[int, Field(ge=1, le=MAX_INT)]
    t_s: Seconds
    device_id: Name64
    power_w: Power | None = None
    energy_j: Energy
    utilization_pct: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    memory_used_b: Count | None = None
    process_energy_j: Energy | None = None


class SamplesBody(_Strict):
    """The body of ``POST /api/v1/runs/{run_id}/samples``: a batch of samples.

    The batch may hold at most ``--max-batch`` samples (1000 by default) and
    no ``seq`` twice.
    """

    samples: Annotated[list[SampleBody], Field(max_length=MAX_BATCH_RANGE[1])]

    @field_validator("samples")
    @classmethod
    def _seq_unique(cls, value: list[SampleBody]) -> list[SampleBody]:
        if len({s.seq for s in value}) != len(value):
            raise ValueError("a seq appears twice in one batch")
        return value


class PutRunAnswer(BaseModel):
    """What a run PUT did: ``created``, ``updated``, or ``unchanged`` (a late start)."""

    id: str
    result: Literal["created", "updated", "unchanged"]


class SamplesAnswer(BaseModel):
    """How many samples arrived, and how many were new (the rest were stored before)."""

    received: int
    stored: int


class Me(BaseModel):
    """The user, project and scope of the request's token."""

    user: str
    project: str
    scope: str
    open: bool = Field(description="true when the server has no tokens and lets everyone in")


class TokenCreate(_Strict):
    """A token to create: for ``user`` in ``project`` with ``scope``."""

    user: Name200
    project: Name200
    scope: Literal["read", "ingest", "admin"] = "ingest"


class TokenInfo(BaseModel):
    """A token as listed: never its clear text, only its first characters."""

    id: int
    prefix: str
    user: str
    project: str
    scope: str
    created_at: str
    revoked_at: str | None = None


class NewToken(TokenInfo):
    """A token just created; ``token`` is shown this once."""

    token: str
