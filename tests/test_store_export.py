"""Export and import: CSV, the lossless JSON copy, CodeCarbon's emissions.csv both ways."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from carbon_jupyter.cli.main import main
from carbon_jupyter.errors import ConfigError, StoreError
from carbon_jupyter.model import Intensity
from carbon_jupyter.store import Store, open_store
from carbon_jupyter.store.codecarbon import COLUMNS, DEFAULT_EXPERIMENT_ID, WRITER_VERSION
from carbon_jupyter.store.export import export_runs
from carbon_jupyter.store.rows import EXPORT_COLUMNS
from tests.test_store_support import make_run, make_samples


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "carbon.db")
    yield s
    s.close()


def _fill(store: Store) -> list[str]:
    """Three finished runs with samples, one with process attribution and a cloud factor."""
    cloud = Intensity(320.0, "cloud-carbon-footprint", 2022, 1.135, "aws", "argument",
                      "aws:eu-west-1")  # fmt: skip
    runs = [
        make_run(label="bert", started_at="2024-05-01T10:00:00.000+00:00"),
        make_run(label="bert", started_at="2024-05-02T10:00:00.000+00:00", gpu_j=5000.0),
        make_run(
            label="resnet",
            phase="inference",
            attribution="process",
            intensity=cloud,
            started_at="2024-05-03T10:00:00.000+00:00",
            tags={},
        ),
    ]
    for run in runs:
        store.begin_run(make_run(run.id, status="running", started_at=run.started_at))
        store.add_samples(run.id, make_samples(1, 3))
        store.finish_run(run)
    return [r.id for r in runs]


def test_csv_export_has_every_run_and_sample(store: Store, tmp_path: Path) -> None:
    _fill(store)
    written = store.export_csv(tmp_path / "runs.csv", samples=True)
    assert written == [tmp_path / "runs.csv", tmp_path / "runs-samples.csv"]
    with open(written[0], newline="") as f:
        rows = list(csv.DictReader(f))
    stored = {r.id: r for r in store.runs()}
    assert {row["id"] for row in rows} == set(stored)
    for row in rows:
        run = stored[row["id"]]
        assert row["label"] == run.label
        assert float(row["energy_j"]) == run.energy_j
        assert float(row["co2_g"]) == run.co2_g
        assert row["started_at"] == run.started_at
        assert json.loads(row["tags"]) == run.tags
        assert json.loads(row["hardware"])["gpus"] == ["NVIDIA H100 80GB HBM3"]
    with open(written[1], newline="") as f:
        samples = list(csv.DictReader(f))
    assert len(samples) == 3 * 6
    first = next(s for s in samples if s["seq"] == "1")
    assert (first["device_id"], float(first["energy_j"])) == ("gpu:0", 300.0)
    (only_bert,) = store.export_csv(tmp_path / "bert.csv", label="bert")
    with open(only_bert, newline="") as f:
        assert [r["label"] for r in csv.DictReader(f)] == ["bert", "bert"]


def test_json_round_trip_keeps_runs_devices_and_samples(store: Store, tmp_path: Path) -> None:
    ids = _fill(store)
    path = store.export_json(tmp_path / "runs.json", samples=True)
    with open_store(tmp_path / "other.db") as other:
        assert other.import_json(path) == 3
        assert other.import_json(path) == 0
        for run_id in ids:
            original = store.get_run(run_id, samples=True)
            copy = other.get_run(run_id, samples=True)
            assert copy == original
            assert copy.samples == original.samples
        again = other.export_json(tmp_path / "again.json")
        context = ("hardware", "versions", "execution_count", "origin")
        first, second = (json.loads(p.read_text())["runs"] for p in (path, again))
        assert [[r[c] for c in context] for r in first] == [[r[c] for c in context] for r in second]
        assert other.samples(ids[0], since_seq=4)[0] == store.samples(ids[0])[4]


def test_json_import_refuses_a_file_that_is_not_an_export(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "notes.json"
    bad.write_text('{"shopping": ["milk"]}')
    with pytest.raises(StoreError, match=r"notes.json is JSON but not a carbon-jupyter export"):
        store.import_json(bad)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(StoreError, match=r"garbage\.json"):
        store.import_json(garbage)
    assert store.runs() == []


def test_codecarbon_export_round_trips_energy_and_co2(store: Store, tmp_path: Path) -> None:
    ids = _fill(store)
    path = store.export_codecarbon(tmp_path / "emissions.csv")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = {r["run_id"]: r for r in reader}
    first = store.get_run(ids[0])
    row = rows[first.id]
    assert float(row["energy_consumed"]) == pytest.approx(first.energy_j * 1.2 / 3.6e6)
    assert float(row["emissions"]) == pytest.approx(first.co2_g / 1000)
    assert float(row["gpu_power"]) == pytest.approx(300.0 * 1.2)  # CodeCarbon's W include PUE
    assert float(row["gpu_utilization_percent"]) == 95.0  # the mean of the samples
    assert float(row["cpu_utilization_percent"]) == 50.0
    assert (row["country_name"], row["country_iso_code"], row["region"]) == ("Germany", "DEU", "")
    assert row["codecarbon_version"] == WRITER_VERSION
    assert row["experiment_id"] == DEFAULT_EXPERIMENT_ID
    assert (row["gpu_count"], row["gpu_model"]) == ("1", "1 x NVIDIA H100 80GB HBM3")
    assert (row["water_consumed"], row["wue"], row["longitude"]) == ("0.0", "0.0", "")
    assert row["timestamp"] == datetime.fromisoformat(first.ended_at or "").astimezone().strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    cloud_row = rows[ids[2]]
    assert (cloud_row["cloud_provider"], cloud_row["cloud_region"]) == ("aws", "eu-west-1")
    assert (cloud_row["on_cloud"], cloud_row["tracking_mode"]) == ("Y", "process")
    assert (cloud_row["country_name"], cloud_row["country_iso_code"]) == ("Ireland", "IRL")

    assert store.import_codecarbon(path) == 0  # its own runs are already here
    with open_store(tmp_path / "other.db") as other:
        assert other.import_codecarbon(path) == 3
        assert other.import_codecarbon(path) == 0
        imported = {r.tags["codecarbon_run_id"]: r for r in other.runs(origin="codecarbon")}
    for run_id in ids:
        original, copy = store.get_run(run_id), imported[run_id]
        assert copy.label == original.label
        assert copy.duration_s == pytest.approx(original.duration_s)
        for field in ("energy_j", "cpu_energy_j", "gpu_energy_j", "ram_energy_j", "co2_g"):
            assert getattr(copy, field) == pytest.approx(getattr(original, field)), field
        assert copy.pue == pytest.approx(original.pue)
        assert copy.intensity_g_per_kwh == pytest.approx(original.intensity_g_per_kwh)
        assert copy.attribution == original.attribution
        assert copy.ended_at == original.ended_at


CODECARBON_FILE = """\
timestamp,project_name,run_id,experiment_id,duration,emissions,emissions_rate,cpu_power,\
gpu_power,ram_power,cpu_energy,gpu_energy,ram_energy,energy_consumed,water_consumed,\
country_name,country_iso_code,region,cloud_provider,cloud_region,os,python_version,\
codecarbon_version,cpu_count,cpu_model,gpu_count,gpu_model,longitude,latitude,ram_total_size,\
tracking_mode,on_cloud,pue
2024-03-01T09:00:30,mnist,aaaa-1,exp-1,30.0,0.00066,2.2e-05,42.5,250.0,6.0,0.000354,0.002083,\
5e-05,0.002487,0,France,FRA,ile-de-france,,,Linux-6.1,3.11.7,2.8.0,16,Intel Xeon,1,\
1 x NVIDIA A100,2.35,48.85,16.0,machine,N,1.0
2024-03-01T09:01:00,mnist,aaaa-1,exp-1,60.0,0.00132,2.2e-05,42.5,250.0,6.0,0.000708,0.004166,\
0.0001,0.004974,0,France,FRA,ile-de-france,,,Linux-6.1,3.11.7,2.8.0,16,Intel Xeon,1,\
1 x NVIDIA A100,2.35,48.85,16.0,machine,N,1.0
2024-03-02T14:00:00,bert,bbbb-2,exp-1,120.0,0.003,2.5e-05,42.5,0.0,6.0,0.0014,0.0,0.0002,\
0.0016,0,,,,gcp,europe-west1,Linux-6.1,3.11.7,2.8.0,16,Intel Xeon,0,,,,16.0,process,Y,1.1
"""


def test_a_codecarbon_history_comes_in_once(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    path.write_text(CODECARBON_FILE)
    assert store.import_codecarbon(path) == 2
    assert store.import_codecarbon(path) == 0
    mnist = store.runs(label="mnist")[0]
    assert mnist.duration_s == 60.0  # the later, cumulative row of the same run
    assert mnist.energy_j == pytest.approx(0.004974 * 3.6e6)
    assert mnist.gpu_energy_j == pytest.approx(0.004166 * 3.6e6)
    assert mnist.co2_g == pytest.approx(1.32)
    assert mnist.intensity.key == "FRA"
    assert mnist.ended_at is not None
    assert mnist.started_at < mnist.ended_at
    assert {d.device.name for d in mnist.devices} == {"Intel Xeon", "1 x NVIDIA A100", "RAM"}
    assert {d.device.method for d in mnist.devices} == {"codecarbon"}
    bert = store.runs(label="bert")[0]
    assert bert.attribution == "process"
    assert bert.intensity.key == "gcp:europe-west1"
    assert bert.energy_j == pytest.approx(0.0016 / 1.1 * 3.6e6)
    assert bert.co2_g == pytest.approx(bert.energy_j / 3.6e6 * 1.1 * bert.intensity_g_per_kwh)
    assert [t["label"] for t in store.totals("label", origin="codecarbon")] == ["mnist", "bert"]


def test_a_csv_that_is_not_from_codecarbon_is_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("item,price\nmilk,1.2\n")
    with pytest.raises(StoreError, match=r"does not look like a CodeCarbon emissions\.csv"):
        store.import_codecarbon(path)


def test_an_imported_row_goes_back_out_cell_for_cell(store: Store, tmp_path: Path) -> None:
    """CodeCarbon's own cells survive import and export; columns it lacked get defaults."""
    source = tmp_path / "emissions.csv"
    source.write_text(CODECARBON_FILE)
    store.import_codecarbon(source)
    target = tmp_path / "again_emissions.csv"
    store.export_codecarbon(target)
    with open(source, newline="") as f:
        original = {r["run_id"]: r for r in csv.DictReader(f)}  # the last row of each run
    with open(target, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        exported = list(reader)
    assert [r["run_id"] for r in exported] == ["aaaa-1", "bbbb-2"]
    for row in exported:
        kept = original[row["run_id"]]
        assert {c: row[c] for c in kept} == kept
        missing = set(COLUMNS) - set(kept)
        assert {row[c] for c in missing} == {"0.0"}  # utilisation, RAM in use, WUE
    again = tmp_path / "other.db"
    with open_store(again) as other:  # a second hop changes nothing either
        assert other.import_codecarbon(target) == 2
        other.export_codecarbon(tmp_path / "third_emissions.csv")
    assert (tmp_path / "third_emissions.csv").read_bytes() == target.read_bytes()


@pytest.mark.parametrize(
    ("name", "fmt", "layout"),
    [
        ("emissions.csv", None, "codecarbon"),
        ("out_emissions.csv", None, "codecarbon"),
        ("RUN-EMISSIONS.CSV", None, "codecarbon"),
        ("runs.csv", None, "csv"),
        ("runs.json", None, "json"),
        ("emissions.csv", "csv", "csv"),
        ("runs.csv", "codecarbon", "codecarbon"),
        ("runs.txt", "json", "json"),
    ],
)
def test_the_layout_follows_the_name_unless_a_format_is_given(
    store: Store, tmp_path: Path, name: str, fmt: str | None, layout: str
) -> None:
    _fill(store)
    exported = export_runs(store, tmp_path / name, format=fmt)
    assert (exported.format, exported.files, exported.runs) == (layout, (tmp_path / name,), 3)
    first_line = (tmp_path / name).read_text().splitlines()[0]
    expected = {"codecarbon": ",".join(COLUMNS), "csv": ",".join(EXPORT_COLUMNS), "json": "{"}
    assert first_line == expected[layout]
    assert f"in {exported.layout}" in str(exported)


def test_a_name_without_a_known_suffix_needs_a_format(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot tell the layout of 'runs\.txt'"):
        export_runs(store, tmp_path / "runs.txt")
    with pytest.raises(ConfigError, match=r"no place for samples"):
        export_runs(store, tmp_path / "emissions.csv", samples=True)
    assert not list(tmp_path.glob("runs*")) and not (tmp_path / "emissions.csv").exists()


MISSING_FOLDER_NAMES = ["x.json", "emissions.csv", "x.csv"]


@pytest.mark.parametrize("name", MISSING_FOLDER_NAMES)
def test_a_missing_folder_is_named_by_the_store(store: Store, tmp_path: Path, name: str) -> None:
    target = tmp_path / "no" / "such" / name
    writers = [
        lambda: export_runs(store, target),
        lambda: store.export_csv(target),
        lambda: store.export_json(target),
        lambda: store.export_codecarbon(target),
    ]
    for write in writers:
        with pytest.raises(ConfigError) as caught:
            write()
        message = str(caught.value)
        assert f"the folder {target.parent} does not exist" in message
        assert "store" not in message and "\n" not in message


@pytest.mark.parametrize("name", MISSING_FOLDER_NAMES)
def test_the_cli_names_a_missing_folder_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    target = tmp_path / "no" / "such" / name
    assert main(["export", str(target), "--db", str(tmp_path / "c.db")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"carbon-jupyter: error: cannot write {target}: the folder {target.parent} does not exist\n"
    )


@pytest.mark.parametrize("name", MISSING_FOLDER_NAMES)
def test_the_magic_names_a_missing_folder_in_one_line(tmp_path: Path, name: str) -> None:
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "carbon_jupyter")
        target = tmp_path / "no" / "such" / name
        with pytest.raises(UsageError) as caught:
            shell.run_line_magic("carbon", f"export {target}")
        assert str(caught.value) == (
            f"%carbon export: cannot write {target}: the folder {target.parent} does not exist"
        )
    finally:
        shell.run_line_magic("unload_ext", "carbon_jupyter")
        InteractiveShell.clear_instance()


def test_the_cli_says_which_layout_it_wrote(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(store)
    db = str(store.path)
    target = tmp_path / "out_emissions.csv"
    assert main(["export", str(target), "--db", db, "--label", "bert"]) == 0
    assert capsys.readouterr().out == (
        f"wrote 2 runs to {target} in CodeCarbon's emissions.csv layout\n"
    )
    assert main(["export", str(target), "--db", db, "--format", "csv", "--samples"]) == 0
    assert capsys.readouterr().out == (
        f"wrote 3 runs to {target} in carbon-jupyter's CSV layout\n"
        f"wrote their samples to {tmp_path / 'out_emissions-samples.csv'}\n"
    )


HEADER_ONLY = CODECARBON_FILE.splitlines()[0] + "\n"
EMPTY_FILES = [
    ("emissions.csv", "", r"is empty: it has no header and no runs"),
    ("emissions.csv", "\n\n", r"is empty: it has no header and no runs"),
    ("emissions.csv", HEADER_ONLY, r"has CodeCarbon's header but no rows"),
    ("emissions.csv", HEADER_ONLY + ",,,,\n", r"has CodeCarbon's header but no rows"),
    ("runs.json", "", r"is empty: it holds no runs"),
    ("runs.json", '{"format": "carbon-jupyter-runs", "version": 1, "runs": []}', r"no runs"),
]


@pytest.mark.parametrize(("name", "text", "says"), EMPTY_FILES)
def test_an_import_without_runs_is_refused_and_stores_nothing(
    store: Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    says: str,
) -> None:
    ids = _fill(store)
    before = store.runs()
    path = tmp_path / name
    path.write_text(text)
    assert main(["import", str(path), "--db", str(store.path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"carbon-jupyter: error: {path} ")
    assert captured.err.count("\n") == 1 and "nothing was imported" in captured.err
    with pytest.raises(StoreError, match=says):
        store.import_json(path) if name.endswith(".json") else store.import_codecarbon(path)
    assert store.runs() == before and {r.id for r in before} == set(ids)


def test_an_import_of_a_missing_file_says_so(store: Store, tmp_path: Path) -> None:
    for path in (tmp_path / "gone.csv", tmp_path / "gone.json"):
        importer = store.import_json if path.suffix == ".json" else store.import_codecarbon
        with pytest.raises(StoreError, match=rf"{path.name} does not exist; nothing was imported"):
            importer(path)
