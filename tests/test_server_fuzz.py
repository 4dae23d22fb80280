"""Property-based fuzzing of the whole API from its own OpenAPI description (schemathesis).

Valid and invalid requests to every operation, with an admin token, against
a real server: no answer is a 5xx, and a refused request (any 4xx) leaves the
row count of every table as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from sqlalchemy import Engine, text, update

from carbon_jupyter.server.db.engine import open_database
from carbon_jupyter.server.db.schema import tokens
from tests.server_fixtures import TABLES, ServerHandle, bearer, make_token, start_server

pytestmark = pytest.mark.slow

#: The admin token's id: far from the small ids the fuzzer tries on DELETE /tokens/{id}.
ADMIN_TOKEN_ID = 1_234_567_891
EXAMPLES = 30


@dataclass
class Target:
    server: ServerHandle
    token: str
    engine: Engine

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("fuzz")
    set_hypothesis_home_dir(str(folder / "hypothesis"))  # not .hypothesis in the checkout
    db = str(folder / "server.db")
    token = make_token(db, "fuzzer", "fuzzing", "admin")
    engine = open_database(db)
    with engine.begin() as conn:
        conn.execute(update(tokens).values(id=ADMIN_TOKEN_ID))
    # Sweeps are refused (409): valid ones would otherwise run the fuzzer's random code.
    with start_server(folder, db=db, args=["--executor", "none"]) as server:
        yield Target(server, token, engine)
    engine.dispose()


def _fuzz(target: Target, operation: Any, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        before = target.counts()
        response = case.call(headers=bearer(target.token), timeout=30)
        case.validate_response(response, checks=[not_a_server_error])
        if 400 <= response.status_code < 500:
            assert target.counts() == before, (case.method, case.path, response.status_code)

    check()


def test_no_request_is_a_server_error_and_refused_ones_store_nothing(target: Target) -> None:
    schema = schemathesis.openapi.from_url(f"{target.server.url}/openapi.json")
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if re.match(r"^/(api/|metrics|healthz)", result.ok().path)
    ]
    assert len(operations) >= 14
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(target, operation, mode)
            except Unsatisfiable:  # nothing to get wrong: an operation without parameters
                assert mode is GenerationMode.NEGATIVE and not operation.path_parameters
            except Exception as exc:  # every operation is fuzzed; failures reported together
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    stored = target.counts()
    assert stored["runs"] > 0 and stored["tokens"] > 1  # valid requests got through too
