"""Real sweeps: a script and a notebook over 2 values x 2 thread settings x 2 repeats.

Each configuration runs in a fresh process, tracked and stored with its
configuration; a failing configuration is stored as ``error`` and the sweep
goes on; an interrupted sweep resumes with only what is missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import carbon_jupyter as cj
from carbon_jupyter.cli.main import main
from carbon_jupyter.errors import ConfigError
from carbon_jupyter.measure import metrics as metrics_module
from carbon_jupyter.store import open_store

SCRIPT = """
import argparse, json, os
import carbon_jupyter as cj
p = argparse.ArgumentParser()
p.add_argument("--n", type=int)
args = p.parse_args()
total = sum(i * i for i in range(20000))
cj.log_metric("cpus", len(os.sched_getaffinity(0)))
cj.log_metric("omp", float(os.environ["OMP_NUM_THREADS"]))
cj.log_metric("score", 1.0 / args.n)   # n=0 fails here
"""

TWO_CPUS = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="the thread axis 1,2 needs two CPUs"
)


@pytest.fixture(autouse=True)
def _fresh_metrics() -> None:
    metrics_module.forget()


@TWO_CPUS
@pytest.mark.slow
def test_script_sweep_runs_every_configuration_and_keeps_going_after_a_failure(
    tmp_path: Path,
) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    seen = []
    results = cj.sweep(
        str(script),
        {"n": [1, 0]},
        threads=[1, 2],
        repeat=2,
        phase="train",
        output_dir=str(tmp_path / "out"),
        progress=seen.append,
        interval=0.2,
    )
    runs = results.runs
    assert len(runs) == 8
    by_config: dict[str, list[cj.Run]] = {}
    for run in runs:
        by_config.setdefault(run.tags["config"], []).append(run)
    assert sorted(by_config) == ["n=0 threads=1", "n=0 threads=2", "n=1 threads=1", "n=1 threads=2"]
    for config, group in by_config.items():
        assert sorted(r.tags["repeat"] for r in group) == ["1", "2"]
        assert all(r.tags["sweep"] == results.sweep_id for r in group)
        assert all(r.phase == "train" and r.label == "train.py" for r in group)
        threads = int(config.rsplit("=", 1)[1])
        if config.startswith("n=0"):
            assert all(r.status == "error" for r in group)
            assert all("ZeroDivisionError" in (r.error or "") for r in group)
        else:
            assert all(r.status == "ok" for r in group)
            # the thread count reached the libraries and the CPU affinity matches it
            assert all(r.metrics["omp"] == threads for r in group)
            assert all(r.metrics["cpus"] == threads for r in group)
            assert all(r.metrics["score"] == 1.0 for r in group)
            assert all(r.energy_j > 0 and r.duration_s > 0 for r in group)
    stored = list(open_store(create=False).iter_runs(tag={"sweep": results.sweep_id}))
    assert sorted(r.id for r in stored) == sorted(r.id for r in runs)
    assert {r.id: r.metrics for r in stored} == {r.id: r.metrics for r in runs}
    # the comparison covers the configurations that finished; the failures are counted
    summaries = {s.config: s for s in results.summaries()}
    assert summaries["n=0 threads=1"].failed == 2 and summaries["n=0 threads=1"].runs == 0
    assert summaries["n=1 threads=2"].runs == 2
    assert results.answer().startswith("n=1 threads=")
    assert any(p.done for p in seen) and seen[-1].index == 8
    # exports
    csv_path = results.to_csv(tmp_path / "sweep.csv")
    assert csv_path.read_text().splitlines()[0].startswith("config,runs,failed,energy_j")
    html_path = results.to_html(tmp_path / "sweep.html")
    page = html_path.read_text()
    assert "carbon-sweep" in page and "cdn.bokeh.org" not in page
    document = json.loads(results.to_json(tmp_path / "sweep.json").read_text())
    assert len(document["runs"]) == 8 and document["answer"] == results.answer()


@TWO_CPUS
@pytest.mark.slow
def test_notebook_sweep_injects_parameters_in_a_fresh_kernel(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("size = 10")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(
            "import os, carbon_jupyter as cj\n"
            "cj.log_metric('size', size)\n"
            "cj.log_metric('omp', float(os.environ['OMP_NUM_THREADS']))\n"
            "assert size != 13, 'unlucky size'"
        ),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "analysis.ipynb"
    nbformat.write(nb, path)
    results = cj.sweep(
        str(path),
        {"size": [20, 13]},
        threads=[1, 2],
        repeat=2,
        output_dir=str(tmp_path / "out"),
        progress=False,
        interval=0.2,
    )
    assert len(results.runs) == 8
    for run in results.runs:
        size, threads = (int(p.split("=")[1]) for p in run.tags["config"].split())
        if size == 13:
            assert run.status == "error" and "unlucky size" in (run.error or "")
        else:
            assert run.status == "ok", run.error
            assert run.metrics == {"size": 20.0, "omp": float(threads)}
    executed = sorted((tmp_path / "out" / results.sweep_id).glob("analysis-*.ipynb"))
    assert len(executed) == 8
    first = nbformat.read(executed[0], as_version=4)
    assert first.cells[1].metadata["tags"] == ["injected-parameters"]
    assert "size = 20" in first.cells[1].source


@pytest.mark.slow
def test_ctrl_c_stops_after_the_current_configuration_and_resume_runs_only_what_is_missing(
    tmp_path: Path,
) -> None:
    script = tmp_path / "slow.py"
    script.write_text(
        "import pathlib, sys, time\n"
        f"pathlib.Path({str(tmp_path)!r}, 'started-' + sys.argv[2]).touch()\n"
        "time.sleep(1.5)\n"
    )
    args = [
        sys.executable, "-m", "carbon_jupyter", "sweep", str(script), "-p", "k=a,b,c",
        "--output-dir", str(tmp_path / "out"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the first finished configuration's line
    assert "[1/3]" in line, line
    deadline = time.monotonic() + 20
    while not (tmp_path / "started-b").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # while the second configuration runs
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    sweep_id = out.splitlines()[0].split()[1]
    assert f"--resume {sweep_id}" in err
    first = list(open_store(create=False).iter_runs(tag={"sweep": sweep_id}))
    assert [r.status for r in first] == ["ok", "ok"]  # the one running at Ctrl-C finished
    assert main(["sweep", "--resume", sweep_id, str(script), "-p", "k=a,b,c"]) == 0
    runs = list(open_store(create=False).iter_runs(tag={"sweep": sweep_id}))
    assert sorted(r.tags["config"] for r in runs) == ["k=a", "k=b", "k=c"]
    assert all(r.status == "ok" for r in runs)


def test_log_metric_goes_to_the_tracked_block_then_to_the_last_run(tmp_path: Path) -> None:
    with cj.track("fit", interval=0.05) as t:
        cj.log_metric("loss", 0.25)
    assert t.run is not None and t.run.metrics == {"loss": 0.25}
    cj.log_metric("accuracy", 0.9)  # after the block: the stored run gets it
    stored = open_store(create=False).get_run(t.run.id)
    assert stored.metrics == {"loss": 0.25, "accuracy": 0.9}
    with pytest.raises(ConfigError, match="not a finite number"):
        cj.log_metric("accuracy", float("nan"))
    with pytest.raises(ConfigError, match="1 to 100 characters"):
        cj.log_metric("", 1.0)


def test_log_metric_without_any_run_says_where_to_call_it() -> None:
    with pytest.raises(ConfigError, match="inside a %%carbon cell"):
        cj.log_metric("accuracy", 0.9)


def test_bad_sweep_input_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["sweep", str(tmp_path / "missing.py"), "-p", "a=1"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["sweep", "--show", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1


def test_a_command_that_cannot_start_is_an_error_run_and_the_sweep_goes_on(
    tmp_path: Path,
) -> None:
    results = cj.sweep(
        ["no-such-program-carbon"], params={"n": [1, 2]}, progress=False,
        output_dir=str(tmp_path),
    )  # fmt: skip
    assert [r.status for r in results.runs] == ["error", "error"]
    assert "cannot start no-such-program-carbon" in (results.runs[0].error or "")
    stored = open_store().iter_runs(tag={"sweep": results.sweep_id})
    assert sorted(r.status for r in stored) == ["error", "error"]


def test_progress_reports_time_and_energy_while_running(tmp_path: Path) -> None:
    script = tmp_path / "wait.py"
    script.write_text("import time\ntime.sleep(1.3)\n")
    seen = []
    started = time.monotonic()
    cj.sweep(str(script), progress=seen.append, output_dir=str(tmp_path), interval=0.2)
    assert time.monotonic() - started >= 1.3
    live = [p for p in seen if not p.done]
    assert live and live[0].config == "default" and live[0].elapsed_s > 0.5
    assert seen[-1].done and seen[-1].status == "ok"


def test_gpu_axis_runs_each_configuration_on_its_gpus_only(tmp_path: Path) -> None:
    from carbon_jupyter.sensors import nvml
    from carbon_jupyter.sweeps.axes import build_axes
    from carbon_jupyter.sweeps.runner import run_sweep
    from carbon_jupyter.sweeps.target import target_of
    from tests.fake_nvml import FakeGpu, FakeNvml

    fake = FakeNvml(
        [FakeGpu(name="NVIDIA A100-SXM4-80GB", power_w=100.0), FakeGpu(power_w=200.0)],
        clock=time.monotonic,
    )
    script = tmp_path / "gpu.py"
    script.write_text(
        "import os, time, carbon_jupyter as cj\n"
        "seen = os.environ['CUDA_VISIBLE_DEVICES']\n"
        "cj.log_metric('visible', len(seen.split(',')) if seen else 0)\n"
        "time.sleep(0.3)\n"
    )
    done = run_sweep(
        target_of([str(script)]),
        build_axes(gpus="none,0,0:1"),
        output_dir=tmp_path,
        tracker_options={"interval": 0.1},
        sensors_for=lambda gpus: [
            s for s in nvml.probe(gpus, nvml=fake).sensors if s.info.kind == "gpu"
        ],
    )
    by_config = {r.tags["config"]: r for r in done.runs}
    assert sorted(by_config) == ["gpus=0", "gpus=0,1", "gpus=none"]
    devices = {k: [d.device.device_id for d in r.devices] for k, r in by_config.items()}
    assert devices == {"gpus=none": [], "gpus=0": ["gpu:0"], "gpus=0,1": ["gpu:0", "gpu:1"]}
    assert {k: r.metrics["visible"] for k, r in by_config.items()} == {
        "gpus=none": 0,
        "gpus=0": 1,
        "gpus=0,1": 2,
    }
    assert by_config["gpus=none"].gpu_energy_j == 0
    one, both = by_config["gpus=0"], by_config["gpus=0,1"]
    # GPU 0 draws 100 W, GPU 1 200 W: both together draw about three times GPU 0 alone
    ratio = (both.gpu_energy_j / both.duration_s) / (one.gpu_energy_j / one.duration_s)
    assert ratio == pytest.approx(3.0, rel=0.15)


def test_magics_log_a_variable_as_metric_and_run_a_sweep(tmp_path: Path) -> None:
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    assert shell is not None
    shell.run_line_magic("load_ext", "carbon_jupyter")
    try:
        shell.run_cell_magic(
            "carbon",
            "fit --no-plot --quiet --metric accuracy --metric loss=val_loss",
            "accuracy = 0.93\nval_loss = 0.2",
        )
        run = open_store(create=False).runs(limit=1)[0]
        assert run.metrics == {"accuracy": 0.93, "loss": 0.2}
        script = tmp_path / "t.py"
        script.write_text("import carbon_jupyter as cj\ncj.log_metric('ok', 1)\n")
        results = shell.run_line_magic("carbon", f"sweep {script} -p a=1,2 --output-dir {tmp_path}")
        assert [r.metrics for r in results.runs] == [{"ok": 1.0}, {"ok": 1.0}]
        assert results.answer().startswith("a=")
    finally:
        shell.run_line_magic("unload_ext", "carbon_jupyter")
