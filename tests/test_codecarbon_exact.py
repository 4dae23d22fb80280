"""CodeCarbon's emissions.csv both ways, checked by CodeCarbon's own classes.

The files here are written by CodeCarbon's ``FileOutput`` from its ``EmissionsData`` (no
tracker, nothing measured, nothing fetched) and read back the way CodeCarbon reads its own
file: ``pandas.read_csv``, then one ``EmissionsData(**row)`` per row.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbon_jupyter.cli.main import main
from carbon_jupyter.model import DeviceEnergy
from carbon_jupyter.store import Store, open_store
from carbon_jupyter.store.codecarbon import COLUMNS, LAYOUT_VERSION
from tests.test_store_support import CPU, RAM, make_run, make_samples

codecarbon = pytest.importorskip(
    "codecarbon", reason="codecarbon (the test extra) is needed to check its file layout"
)
pd = pytest.importorskip("pandas", reason="pandas is how CodeCarbon reads its own file")
from codecarbon.output_methods.emissions_data import EmissionsData  # noqa: E402
from codecarbon.output_methods.file import FileOutput  # noqa: E402

FIELDS = tuple(f.name for f in dataclasses.fields(EmissionsData))
TEXT_FIELDS = {f.name for f in dataclasses.fields(EmissionsData) if f.type in (str, "str")}


def _data(**fields: Any) -> Any:
    """An EmissionsData as CodeCarbon 3.3 fills it on a Linux machine in France."""
    base: dict[str, Any] = {
        "timestamp": "2025-03-01T09:00:30",
        "project_name": "mnist",
        "run_id": "0d6c1b4e-3f5a-4b8e-9a21-7c2f1e0d9b11",
        "experiment_id": "5b0fa12a-3dd7-45bb-9766-cc326314d9f1",
        "duration": 30.01234567891234,
        "emissions": 3.312345678901234e-06,
        "emissions_rate": 1.1036850541470128e-07,
        "cpu_power": 1.5701234567890123,
        "gpu_power": 0.0,
        "ram_power": 5.874345779418945,
        "cpu_energy": 1.3089283905112737e-05,
        "gpu_energy": 0.0,
        "ram_energy": 4.8971358124534e-05,
        "energy_consumed": 6.206064202964674e-05,
        "water_consumed": 0.0,
        "country_name": "France",
        "country_iso_code": "FRA",
        "region": "île-de-france",
        "cloud_provider": "",
        "cloud_region": "",
        "os": "Linux-6.1.0-18-amd64-x86_64-with-glibc2.36",
        "python_version": "3.11.7",
        "codecarbon_version": codecarbon.__version__,
        "cpu_count": 16,
        "cpu_model": "Intel(R) Xeon(R) CPU @ 2.20GHz",
        "gpu_count": 0,
        "gpu_model": "",
        "longitude": 2.3488,
        "latitude": 48.8534,
        "ram_total_size": 15.664764404296875,
        "tracking_mode": "machine",
        "cpu_utilization_percent": 12.5,
        "gpu_utilization_percent": 0.0,
        "ram_utilization_percent": 41.3,
        "ram_used_gb": 6.08935546875,
        "on_cloud": "N",
        "pue": 1.0,
        "wue": 0.0,
    }
    base.update(fields)
    return EmissionsData(**base)


#: Four CodeCarbon runs: one on a French machine that flushed twice, one on a GCP GPU machine
#: with a PUE, one in process mode without location, one with a comma in its project.
RUNS = (
    _data(
        duration=15.0, emissions=1.6e-06, energy_consumed=3.1e-05, timestamp="2025-03-01T09:00:15"
    ),
    _data(),
    _data(
        timestamp="2025-03-02T14:00:00",
        project_name="bert",
        run_id="7e0b9c55-1d2a-4c3b-8f4e-5a6b7c8d9e0f",
        experiment_id="a1b2c3d4-0000-4000-8000-123456789abc",
        duration=120.5,
        emissions=0.0031234,
        emissions_rate=2.5920331950207468e-05,
        cpu_power=46.75,
        gpu_power=275.00000000000006,
        ram_power=6.6000000000000005,
        cpu_energy=0.0015648958333333333,
        gpu_energy=0.009204861111111112,
        ram_energy=0.00022091666666666668,
        energy_consumed=0.010990673611111112,
        water_consumed=0.0021981347222222225,
        country_name="Belgium",
        country_iso_code="BEL",
        region="europe-west1",
        cloud_provider="gcp",
        cloud_region="europe-west1",
        gpu_count=1,
        gpu_model="1 x NVIDIA A100-SXM4-40GB",
        longitude=None,
        latitude=None,
        gpu_utilization_percent=97.25,
        on_cloud="Y",
        pue=1.1,
        wue=0.2,
    ),
    _data(
        timestamp="2025-03-03T08:30:00",
        project_name="sweep, lr=3e-4",
        run_id="c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f",
        region=None,
        longitude=None,
        latitude=None,
        tracking_mode="process",
    ),
)


def _write_with_codecarbon(folder: Path, name: str, rows: tuple[Any, ...]) -> Path:
    output = FileOutput(name, str(folder), on_csv_write="append")
    for row in rows:
        output.out(row, None)
    return folder / name


def _read_with_codecarbon(path: Path) -> list[Any]:
    """Every row of ``path`` as CodeCarbon's ``EmissionsData``, after ``pandas.read_csv``."""
    return [EmissionsData(**row) for row in pd.read_csv(path).to_dict("records")]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b) and type(a) is type(b)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "carbon.db")
    yield s
    s.close()


def test_our_columns_are_emissions_data_fields_in_order() -> None:
    assert codecarbon.__version__ == LAYOUT_VERSION
    assert COLUMNS == FIELDS


def test_a_file_codecarbon_wrote_comes_back_exactly(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write_with_codecarbon(tmp_path, "emissions.csv", RUNS)
    db = str(store.path)
    assert main(["import", str(source), "--db", db]) == 0
    assert "imported 3 new runs" in capsys.readouterr().out
    target = tmp_path / "back.csv"  # a name that asks for the CSV layout, overridden
    assert main(["export", str(target), "--format", "codecarbon", "--db", db]) == 0
    assert "in CodeCarbon's emissions.csv layout" in capsys.readouterr().out

    original = _read_with_codecarbon(source)[1:]  # the first flush is superseded by the second
    copy = _read_with_codecarbon(target)
    assert len(copy) == len(original) == 3
    for mine, theirs in zip(copy, original, strict=True):
        for name in FIELDS:
            assert _same(getattr(mine, name), getattr(theirs, name)), (theirs.run_id, name)
    source_lines = source.read_text(encoding="utf-8").splitlines()
    assert target.read_text(encoding="utf-8").splitlines() == [source_lines[0], *source_lines[2:]]
    assert pd.read_csv(target).dtypes.equals(pd.read_csv(source).iloc[1:].dtypes)


def test_an_older_codecarbon_row_gains_the_new_columns(store: Store, tmp_path: Path) -> None:
    """A row without 3.x's columns still loads into EmissionsData once exported."""
    source = _write_with_codecarbon(tmp_path, "emissions.csv", RUNS[1:2])
    frame = pd.read_csv(source)
    older = tmp_path / "old_emissions.csv"
    frame.drop(columns=["cpu_utilization_percent", "ram_used_gb", "wue"]).to_csv(older, index=False)
    store.import_codecarbon(older)
    (copy,) = _read_with_codecarbon(store.export_codecarbon(tmp_path / "again_emissions.csv"))
    (theirs,) = _read_with_codecarbon(source)
    assert (copy.cpu_utilization_percent, copy.ram_used_gb, copy.wue) == (0.0, 0.0, 0.0)
    for name in ("run_id", "experiment_id", "emissions", "cpu_power", "energy_consumed"):
        assert getattr(copy, name) == getattr(theirs, name)


def _measured(store: Store, *, cpu_only: bool = False) -> list[str]:
    """Runs as carbon-jupyter measures them: one with a GPU, one CPU-only, with samples."""
    if cpu_only:
        devices = (DeviceEnergy(CPU, 800.0, None, 80.0), DeviceEnergy(RAM, 100.0))
        runs = [make_run(gpu_j=0.0, devices=devices, label=None, tags={})]
    else:
        runs = [
            make_run(started_at="2024-05-01T10:00:00.000+00:00"),
            make_run(started_at="2024-05-02T10:00:00.000+00:00", attribution="process"),
        ]
    for run in runs:
        store.begin_run(dataclasses.replace(run, status="running", ended_at=None, duration_s=0.0))
        kinds = {d.device.device_id for d in run.devices}
        store.add_samples(run.id, [s for s in make_samples(1, 3) if s.device_id in kinds])
        store.finish_run(run)
    return [r.id for r in runs]


def test_runs_we_measured_load_into_emissions_data(store: Store, tmp_path: Path) -> None:
    ids = _measured(store)
    target = store.export_codecarbon(tmp_path / "emissions.csv")
    rows = _read_with_codecarbon(target)
    assert [r.run_id for r in rows] == ids
    for row, run_id in zip(rows, ids, strict=True):
        run = store.get_run(run_id)
        assert row.emissions == pytest.approx(run.co2_g / 1000)
        assert row.energy_consumed == pytest.approx(run.facility_energy_j / 3.6e6)
        assert row.cpu_power == pytest.approx(run.cpu_energy_j * run.pue / run.duration_s)
        assert row.emissions_rate == pytest.approx(row.emissions / row.duration)
        assert row.gpu_utilization_percent == 95.0
        for name in TEXT_FIELDS - {"region", "cloud_provider", "cloud_region"}:
            assert isinstance(getattr(row, name), str) and getattr(row, name), name
    # CodeCarbon writing the same records again gives the same bytes: the same layout.
    rewritten = _write_with_codecarbon(tmp_path, "rewritten.csv", tuple(rows))
    assert rewritten.read_bytes() == target.read_bytes()


def test_pandas_reads_our_columns_as_codecarbon_writes_them(store: Store, tmp_path: Path) -> None:
    """Text columns read as text; where one is empty, it is empty in CodeCarbon's file too."""
    _measured(store, cpu_only=True)
    ours = pd.read_csv(store.export_codecarbon(tmp_path / "emissions.csv"))
    theirs = pd.read_csv(
        _write_with_codecarbon(
            tmp_path,
            "cc_emissions.csv",
            (_data(region=None, longitude=None, latitude=None, cpu_utilization_percent=50.0),),
        )
    )
    assert ours.dtypes.to_dict() == theirs.dtypes.to_dict()
    for name in ("country_name", "codecarbon_version", "experiment_id", "project_name", "os"):
        assert pd.api.types.is_string_dtype(ours[name]), name  # object, or pandas 3's str
    assert ours.loc[0, "codecarbon_version"].startswith(f"{LAYOUT_VERSION}+carbon-jupyter.")
    assert ours.loc[0, "project_name"] == "carbon-jupyter"


def test_codecarbon_appends_to_a_file_we_wrote(store: Store, tmp_path: Path) -> None:
    """CodeCarbon accepts our file as its own: it appends instead of backing it up."""
    _measured(store)
    target = store.export_codecarbon(tmp_path / "emissions.csv")
    _write_with_codecarbon(tmp_path, "emissions.csv", RUNS[1:2])
    assert not [p for p in os.listdir(tmp_path) if p.startswith("emissions.csv.bak")]
    assert [r.project_name for r in _read_with_codecarbon(target)] == [
        "fine-tune", "fine-tune", "mnist"
    ]  # fmt: skip
