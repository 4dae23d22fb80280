"""A sweep's axes, Pareto fronts and one-line answer, on inputs whose answers are known."""

from __future__ import annotations

import pytest

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.sweeps.axes import Configuration, build_axes, typed_value
from carbon_jupyter.sweeps.compare import (
    Outcome,
    answer,
    lower_is_better,
    metric_front,
    pareto_front,
    summarise,
    time_front,
)


def test_axes_span_every_combination_with_interleaved_repeats() -> None:
    axes = build_axes(["dataset=small,large"], threads="1,2", repeat=2, cpu_count=2)
    keys = [c.key for c in axes.configurations()]
    assert keys == [
        "dataset=small threads=1",
        "dataset=small threads=2",
        "dataset=large threads=1",
        "dataset=large threads=2",
    ]
    schedule = axes.schedule()
    assert len(schedule) == 8
    assert [r for r, _ in schedule] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert [c.key for _, c in schedule[4:]] == keys


def test_configuration_environment_tags_and_pinning() -> None:
    config = Configuration((("batch", "32"),), threads=2, gpus=(0, 1))
    env = config.environment()
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert config.tags() == {"param.batch": "32", "threads": "2", "gpus": "0,1"}
    assert config.cpus([5, 3, 7]) == [3, 5]
    assert config.typed_params() == {"batch": 32}
    no_gpu = Configuration(gpus=())
    assert no_gpu.environment() == {"CUDA_VISIBLE_DEVICES": ""}
    assert no_gpu.key == "gpus=none"
    with pytest.raises(ConfigError, match="at most 1"):
        Configuration(threads=2).cpus([0])


def test_gpu_subsets_and_typed_values() -> None:
    axes = build_axes(gpus="none,0,0:1")
    assert [c.gpus for c in axes.configurations()] == [(), (0,), (0, 1)]
    assert typed_value("0.5") == 0.5
    assert typed_value("true") is True
    assert typed_value("small") == "small"
    assert typed_value("nan") == "nan"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"params": ["batch"]}, "NAME=VALUE"),
        ({"params": ["batch="]}, "at least one value"),
        ({"params": ["b=1,1"]}, "twice"),
        ({"params": ["b=1", "b=2"]}, "given twice"),
        ({"threads": "0"}, "at least 1"),
        ({"threads": "two"}, "thread counts"),
        ({"threads": "8", "cpu_count": 2}, "at most 2"),
        ({"gpus": "0;1"}, "GPU subsets"),
        ({"repeat": 0}, "at least once"),
    ],
)
def test_bad_axes_get_one_line_naming_the_fix(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        build_axes(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def _outcomes() -> list[Outcome]:
    # threads=1: slow and frugal; threads=2: in between; threads=4: fast and costly;
    # threads=3: worse than threads=2 on both (dominated).
    rows = {
        "threads=1": [(100.0, 10.0, 0.90), (104.0, 12.0, 0.91)],
        "threads=2": [(70.0, 20.0, 0.91), (69.0, 22.0, 0.91)],
        "threads=3": [(80.0, 25.0, 0.90), (80.0, 25.0, 0.90)],
        "threads=4": [(50.0, 31.0, 0.92), (52.0, 29.0, 0.92)],
    }
    out = []
    for config, runs in rows.items():
        for duration_s, co2_g, accuracy in runs:
            out.append(
                Outcome(config, "ok", co2_g * 10, co2_g, duration_s, 1000, {"accuracy": accuracy})
            )
    out.append(Outcome("threads=4", "error", 0.0, 0.0, 1.0))
    return out


def test_summaries_take_the_median_with_min_and_max_and_count_failures() -> None:
    summaries = {s.config: s for s in summarise(_outcomes())}
    four = summaries["threads=4"]
    assert four.runs == 2 and four.failed == 1
    assert four.co2_g is not None and four.duration_s is not None
    assert (four.co2_g.median, four.co2_g.low, four.co2_g.high) == (30.0, 29.0, 31.0)
    assert four.duration_s.median == 51.0
    assert four.energy_per_item_j == pytest.approx(0.3)
    assert four.metrics["accuracy"].median == pytest.approx(0.92)


def test_pareto_fronts_mark_exactly_the_undominated_configurations() -> None:
    summaries = summarise(_outcomes())
    assert time_front(summaries) == ["threads=1", "threads=2", "threads=4"]
    # accuracy: higher is better; threads=2 beats threads=1 on accuracy but costs more CO2
    assert metric_front(summaries, "accuracy") == ["threads=1", "threads=2", "threads=4"]
    assert pareto_front([("a", 1, 1), ("b", 1, 1), ("c", 2, 2)]) == ["a", "b"]
    assert lower_is_better("val_loss") and not lower_is_better("accuracy")


def test_one_line_answer_sets_the_greenest_against_the_fastest() -> None:
    line = answer(summarise(_outcomes()))
    # threads=1: median CO2 11 g, 102 s; threads=4: 30 g, 51 s
    assert line == "threads=1: 63 % less CO2, 100 % slower than threads=4"
    both = [Outcome("a", "ok", 1, 1.0, 1.0), Outcome("b", "ok", 2, 2.0, 2.0)]
    assert answer(summarise(both)) == "a: the lowest CO2 and the fastest (50 % less CO2 than b)"
    assert "nothing to compare" in answer(summarise([Outcome("a", "error", 0, 0, 0)]))
