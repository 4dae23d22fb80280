"""The store at scale: wildcard labels through an index, totals kept, streaming, a cheap start.

Timings live in ``benchmarks/bench_store.py``; these tests check what makes them
hold on any machine (the query plans, which table answers) and that nothing
changes what the queries return.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from carbon_jupyter.store import Store, open_store, query, schema
from carbon_jupyter.store.query import RunFilter
from carbon_jupyter.store.rows import RUN_COLUMNS
from tests.test_store_support import dead_pid, make_run, make_samples, run_python

SUMS = ("count", "duration_s", "energy_j", "cpu_energy_j", "gpu_energy_j", "ram_energy_j",
        "co2_g")  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "carbon.db")
    yield s
    s.close()


def _plan(store: Store, flt: RunFilter, limit: int | None) -> str:
    conn = store._conn()
    sql, params = query.runs_sql(conn, flt, limit, RUN_COLUMNS)
    return " / ".join(str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


# -- wildcard labels ------------------------------------------------------------------------
def test_a_wildcard_label_is_read_through_an_index(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(12):
        store.finish_run(make_run(label=f"fine-{n}", started_at=f"2024-05-01T10:{n:02d}:00+00:00"))
        store.finish_run(make_run(label=f"eval-{n}", started_at=f"2024-05-01T11:{n:02d}:00+00:00"))
    few = _plan(store, RunFilter(label="fine-*"), 50)
    assert "INDEX runs_label_started_at (label>? AND label<?)" in few
    monkeypatch.setattr(query, "FEW_MATCHES", 10)  # now 12 runs are many
    many = _plan(store, RunFilter(label="fine-*"), 50)
    assert "INDEX runs_started_at_label" in many
    assert "TEMP B-TREE" not in many  # newest first as read: no sort before the first run
    assert "TEMP B-TREE" not in _plan(store, RunFilter(label="fine-*"), None)
    assert "INDEX runs_label_started_at (label=?)" in _plan(store, RunFilter(label="fine-3"), 50)
    for plan in (few, many):
        assert "SCAN runs" not in plan.replace("SCAN runs USING INDEX", "")
    assert [r.label for r in store.runs(label="fine-1*")] == ["fine-11", "fine-10", "fine-1"]


LABELS = [
    "fine-1", "fine-2", "fine", "fine-", "fine-*", "fine?x", "fine-[1]", "fine%_", "fine_1",
    "FINE-1", "xfine-1", "finé-1", "fine-\U0010ffff", "fine-\U0010ffffz", "\U0010ffff", "",
    "a'b", 'a"b', "a\\b", "日本-1", None,
]  # fmt: skip
PATTERNS = [
    "fine-*", "fine?*", "fine-[[]*", "fin*-1", "fin?", "finé*", "fine-\U0010ffff*", "*", "?",
    "fine%*", "fine_*", "[f]ine-1", "fine-[12]", "fine-[^1]*", "f*", "a\\*", "a'*", 'a"*',
    "日本*", "\U0010ffff*", "fine-1?", "*1",
]  # fmt: skip


@pytest.mark.parametrize("few_matches", [0, 10**9], ids=["newest-first", "label-index"])
def test_wildcard_labels_match_exactly_what_glob_matches(
    store: Store, monkeypatch: pytest.MonkeyPatch, few_matches: int
) -> None:
    for n, label in enumerate(LABELS):
        store.finish_run(make_run(label=label, started_at=f"2024-05-01T10:{n:02d}:00+00:00"))
    monkeypatch.setattr(query, "FEW_MATCHES", few_matches)
    conn = store._conn()
    for pattern in PATTERNS:
        expected = [
            str(r[0])
            for r in conn.execute(
                "SELECT id FROM runs NOT INDEXED WHERE label GLOB ? ORDER BY started_at DESC",
                (pattern,),
            )
        ]
        assert [r.id for r in store.runs(label=pattern, limit=None)] == expected, pattern
        assert [r.id for r in store.runs(label=pattern, limit=3)] == expected[:3], pattern
        assert [r.id for r in store.iter_runs(label=pattern)] == expected, pattern
    for label in LABELS:
        if label is not None and not query.is_wildcard(label):
            assert [r.label for r in store.runs(label=label)] == [label]


# -- totals ---------------------------------------------------------------------------------
def _stored(path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    columns = ("label", "notebook", "phase", "started_at", "status", *SUMS[1:])
    rows = [dict(zip(columns, r, strict=True)) for r in conn.execute(
        f"SELECT {', '.join(columns)} FROM runs")]  # fmt: skip
    conn.close()
    return rows


def _reference(rows: list[dict[str, Any]], by: str, flt: dict[str, Any]) -> dict[Any, list[Any]]:
    """Totals added up in Python, each sum exactly rounded."""
    bound = query.since_iso(flt.get("since"))
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        label, notebook = row["label"], row["notebook"]
        if "label" in flt and (label is None or not fnmatchcase(label, flt["label"])):
            continue
        if (
            "notebook" in flt
            and notebook not in (flt["notebook"],)
            and not (notebook or "").endswith("/" + flt["notebook"])
        ):
            continue
        if "phase" in flt and row["phase"] != flt["phase"]:
            continue
        if "status" in flt and row["status"] != flt["status"]:
            continue
        if bound is not None and row["started_at"] < bound:
            continue
        key = row["started_at"][:10] if by == "day" else row[by]
        groups.setdefault(key, []).append(row)
    return {
        key: [len(members)] + [math.fsum(m[c] for m in members) for c in SUMS[1:]]
        for key, members in groups.items()
    }


def _check_totals(store: Store, by: str, flt: dict[str, Any]) -> None:
    got = store.totals(by, **flt)
    expected = _reference(_stored(store.path), by, flt)
    assert {g[by] for g in got} == set(expected), (by, flt)
    for group in got:
        want = expected[group[by]]
        assert group["count"] == want[0], (by, flt, group)
        for name, value in zip(SUMS[1:], want[1:], strict=True):
            # Sums of floats added in another order differ in their last bits only.
            assert group[name] == pytest.approx(value, rel=1e-12, abs=1e-9), (by, flt, name)
    if by == "day":
        assert [g["day"] for g in got] == sorted(g["day"] for g in got)
    else:
        energies = [g["energy_j"] for g in got]
        assert energies == sorted(energies, reverse=True)


def _random_run(rng: random.Random, **fields: Any) -> Any:
    day, hour = rng.randint(1, 5), rng.randint(0, 23)
    return make_run(
        label=rng.choice(["fine-a", "fine-b", "eval", "", None, "a%b_c", "fine-[x]"]),
        phase=rng.choice(["train", "inference", None]),
        notebook=rng.choice(["/home/ada/train.ipynb", "/srv/b/train.ipynb", "eval.ipynb", None]),
        started_at=f"2024-05-0{day}T{hour:02d}:{rng.randint(0, 59):02d}:07.250+00:00",
        gpu_j=rng.uniform(0, 5000) * rng.choice([1, 1e-6, 1e6]),
        cpu_j=rng.uniform(0, 900),
        ram_j=rng.choice([0.0, 0.1, 100.0]),
        duration_s=rng.uniform(0.1, 99.0),
        **fields,
    )


def _fill_randomly(store: Store, tmp_path: Path, rng: random.Random) -> None:
    """Runs that finish, stay live, are lost, imported twice, deleted, moved and relabelled."""
    for _ in range(60):
        store.finish_run(_random_run(rng, status=rng.choice(["ok", "error", "interrupted"])))
    live = [_random_run(rng, status="running") for _ in range(8)]
    for run in live:
        store.begin_run(run)
        store.add_samples(run.id, make_samples(1, rng.randint(1, 4)))
    for run in live[:3]:  # these finish; the next three are lost; the last two stay running
        store.add_samples(run.id, make_samples(5, 2))
        store.finish_run(replace(run, status="ok", duration_s=6.0))
    conn = sqlite3.connect(store.path)
    with conn:
        conn.executemany(
            "UPDATE runs SET pid = ? WHERE id = ?", [(dead_pid(), r.id) for r in live[3:6]]
        )
    assert len(store.mark_lost_runs()) == 3
    with open_store(tmp_path / "other.db") as other:
        for _ in range(15):
            other.finish_run(_random_run(rng))
        other.export_json(tmp_path / "runs.json", samples=True)
        other.export_codecarbon(tmp_path / "emissions.csv")
    assert store.import_json(tmp_path / "runs.json") == 15
    assert store.import_json(tmp_path / "runs.json") == 0
    store.import_codecarbon(tmp_path / "emissions.csv")
    store.import_codecarbon(tmp_path / "emissions.csv")
    with conn:
        ids = [str(r[0]) for r in conn.execute("SELECT id FROM runs ORDER BY id")]
        conn.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in ids[::7]])
        conn.executemany(
            "UPDATE runs SET label = ?, started_at = replace(started_at, '-05-0', '-04-2') "
            "WHERE id = ?",
            [(rng.choice(["moved", None, "fine-a"]), i) for i in ids[1::9]],
        )
        conn.executemany("UPDATE runs SET phase = 'other' WHERE id = ?", [(i,) for i in ids[2::5]])
    conn.close()


FILTERS: list[dict[str, Any]] = [
    {},
    {"since": "2024-05-02T13:30"},
    {"since": "2024-05-03"},
    {"label": "fine-*"},
    {"label": "fine-a", "since": "2024-05-02T06:00"},
    {"notebook": "train.ipynb"},
    {"phase": "train"},
    {"status": "ok"},  # not kept added up: the runs are added up
    {"label": "fine-*", "phase": "train"},
]


def test_totals_equal_the_sums_of_the_runs_whatever_was_written(
    store: Store, tmp_path: Path
) -> None:
    _fill_randomly(store, tmp_path, random.Random(20240501))
    for flt in FILTERS:
        for by in query.TOTALS_BY:
            _check_totals(store, by, flt)
    conn = store._conn()
    kept = conn.execute("SELECT dim, SUM(count), COUNT(*) FROM run_totals GROUP BY dim").fetchall()
    runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert {dim: count for dim, count, _ in kept} == dict.fromkeys(schema.TOTAL_DIMENSIONS, runs)
    assert conn.execute("SELECT COUNT(*) FROM run_totals WHERE count <= 0").fetchone()[0] == 0


def test_totals_come_from_the_kept_table_and_one_day_of_runs(store: Store) -> None:
    store.finish_run(make_run(started_at="2024-05-01T10:00:00+00:00"))
    store.finish_run(make_run(started_at="2024-05-02T10:00:00+00:00"))
    statements: list[str] = []
    store._conn().set_trace_callback(statements.append)
    assert [t["count"] for t in store.totals("label")] == [2]
    assert [t["count"] for t in store.totals("day", since="2024-05-01T11:00+00:00")] == [1]
    assert [t["count"] for t in store.totals("phase", status="ok")] == [2]
    store._conn().set_trace_callback(None)
    reads = [s for s in statements if "FROM run" in s]
    assert ["FROM run_totals" in s for s in reads] == [True, True, False, False]
    assert "started_at < '2024-05-02'" in reads[2]  # only the day that ``since`` falls in


def test_an_old_file_gets_its_totals_on_upgrade(tmp_path: Path) -> None:
    from tests.test_store_files import _write_v1

    path = tmp_path / "carbon.db"
    _write_v1(path, [f"0000000{n}-0000-0000-0000-000000000000" for n in range(3)])
    conn = sqlite3.connect(path)  # as a reader that cannot upgrade the file sees it
    assert [t["count"] for t in query.select_totals(conn, "phase", RunFilter())] == [3]
    conn.close()
    with open_store(path) as store:
        for by in query.TOTALS_BY:
            _check_totals(store, by, {})
        assert store.totals("label")[0]["energy_j"] == pytest.approx(1000.0)


# -- the schema without sqlite-utils ----------------------------------------------------------
def _schema(path: Path) -> set[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    found = {(str(t), str(n), str(s)) for t, n, s in conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL")}  # fmt: skip
    conn.close()
    return found


def test_the_file_reads_the_same_to_sqlite_utils_both_ways(tmp_path: Path) -> None:
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

    def migrations() -> Migrations:
        found = Migrations(schema.MIGRATION_SET)
        for step in schema.STEPS:
            found(name=step.__name__)(step)
        return found

    fresh = tmp_path / "fresh.db"
    open_store(fresh).close()
    db = Database(fresh)
    assert [m.name for m in migrations().applied(db)] == list(schema.STEP_NAMES)
    assert migrations().pending(db) == []
    db.close()
    # A file whose first steps sqlite-utils applied is brought up to date by the store.
    older = tmp_path / "older.db"
    db = Database(older)
    first = Migrations(schema.MIGRATION_SET)
    for step in schema.STEPS[:3]:
        first(name=step.__name__)(step)
    first.apply(db)
    db.close()
    open_store(older).close()
    assert _schema(older) == _schema(fresh)
    names = {name for kind, name, _ in _schema(fresh) if kind == "trigger"}
    assert names == {"run_totals_insert", "run_totals_delete", "run_totals_update",
                     "run_totals_move"}  # fmt: skip


def test_a_fresh_store_in_a_fresh_process_imports_neither_pandas_nor_sqlite_utils(
    tmp_path: Path,
) -> None:
    code = (
        "import json, sys\n"
        "from carbon_jupyter.store import open_store\n"
        "from tests.test_store_support import make_run\n"
        "store = open_store(sys.argv[1])\n"
        "store.finish_run(make_run())\n"
        "store.runs(label='fine-*'); store.totals('day'); list(store.iter_runs())\n"
        "print(json.dumps([m for m in ('pandas', 'sqlite_utils') if m in sys.modules]))\n"
    )
    done = run_python(code, str(tmp_path / "new" / "carbon.db"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


# -- streaming ------------------------------------------------------------------------------
def test_streamed_runs_come_from_one_snapshot_while_others_write(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query, "FIRST_BATCH", 2)
    monkeypatch.setattr(query, "BATCH", 3)
    for n in range(10):
        store.finish_run(make_run(label=f"sweep-{n}", started_at=f"2024-05-01T10:{n:02d}:00+00:00"))
    listed = store.runs(label="sweep-*", limit=None)
    streamed = store.iter_runs(label="sweep-*")
    first = next(streamed)
    store.finish_run(make_run(label="sweep-new", started_at="2024-06-01T00:00:00+00:00"))
    store.get_run(first.id)  # the thread's own connection still reads and writes
    assert [first, *streamed] == listed
    assert [r.label for r in store.iter_runs(label="sweep-*", limit=2)] == ["sweep-new", "sweep-9"]
    closed = store.iter_runs()
    next(closed)
    closed.close()
    with pytest.raises(StopIteration):
        next(closed)
