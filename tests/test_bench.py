"""`python -m harness.bench` on two boards, once: its JSON and its tables hold real numbers (no speed limits)."""

import json
import math
import os

import pytest
from rich.console import Console

from harness.bench import farm as bench_farm
from harness.bench.__main__ import main
from harness.emulation import board as emulated

pytestmark = pytest.mark.emulated


def real(stat, above=0.0):
    """A median/min/max/samples record of finite numbers above `above`, ordered min <= median <= max."""
    values = [stat["median"], stat["min"], stat["max"], *stat["samples"]]
    return (all(isinstance(v, (int, float)) and math.isfinite(v) and v > above for v in values)
            and stat["min"] <= stat["median"] <= stat["max"])


def test_the_bench_measures_ratios_side_by_side_and_cleans_up(capsys):
    prefix = f"tb{os.getpid()}"
    code = main(["--boards", "2", "--repeat", "1", "--prefix", prefix, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["boards"] == 2 and data["repeat"] == 1 and data["cores"] >= 1
    assert len(data["board_names"]) == 2 and all(name.startswith(prefix) for name in data["board_names"])

    farm = data["farm"]
    for key in ("wall_1_s", "wall_n_s", "ratio", "board_ratio", "speedup", "efficiency"):
        assert real(farm[key]), key
        assert len(farm[key]["samples"]) == 1
    assert farm["ideal_ratio"] == 1.0 and farm["ideal_speedup"] == 2.0 and farm["cpu_floor_ratio"] >= 1.0
    for key in ("cpu_busy_idle", "cpu_busy_1", "cpu_busy_n"):
        assert 0.0 <= farm[key]["median"] <= 1.0

    moved = data["bytes"]
    for key in ("cold_uploaded", "cold_downloaded", "warm_uploaded", "warm_downloaded", "cold_total",
                "warm_total", "ratio", "skipped"):
        assert real(moved[key]), key
    assert moved["warm_total"]["median"] < moved["cold_total"]["median"]
    # The upload counters against the files' sizes: a warm store skips exactly the agent, the model and the
    # inputs; only the job's request goes every time.
    assert moved["skipped"]["median"] == moved["model_bytes"] + moved["inputs_bytes"] + moved["agent_bytes"]

    for where in ("slowest_of_n", "alone"):
        found = data["overhead"][where]
        assert real(found["inference"]) and real(found["harness_wall"]) and real(found["run"])
        # Three clocks that know nothing of each other nest: the inferences the agent timed, inside the wall
        # time the agent measured for the whole job, inside the run stage the host timed around it.
        for inference, agent_wall, run in zip(found["inference"]["samples"], found["agent_wall"]["samples"],
                                              found["run"]["samples"]):
            assert 0 < inference <= agent_wall <= run, (where, inference, agent_wall, run)
    # And the run's own clock holds its slowest board's stages, timed one by one.
    for run_wall, where in (("wall_n_s", "slowest_of_n"), ("wall_1_s", "alone")):
        for wall, board in zip(farm[run_wall]["samples"], data["overhead"][where]["harness_wall"]["samples"]):
            assert 0 < board <= wall, (where, board, wall)
    assert data["overhead"]["slowest_boards"][0] in data["board_names"]

    # The tables are views of the same numbers.
    console = Console(record=True, width=120)
    for table in bench_farm.tables(data):
        console.print(table)
    for line in bench_farm.limits(data):
        console.print(line)
    text = console.export_text()
    for expected in ("1. Farm scaling", "wall(2) / wall(1)", "2. Bytes moved", "cold / warm",
                     "skipped when warm", "3. Harness wall", "process start", "agent startup", "inference",
                     f"{farm['ratio']['median']:.2f}x"):
        assert expected in text, expected

    # What a jump host costs: the same run on the same board, through a real sshd and straight.
    jump = data["jump"]
    assert jump["board"] in data["board_names"]
    for key in ("connect_straight", "connect_jumped", "board_straight", "board_jumped", "run_straight",
                "run_jumped", "connect_ratio", "board_ratio", "run_ratio"):
        assert real(jump[key]), key
    console = Console(record=True, width=120)
    for shown in bench_farm.views(data):
        console.print(shown)
    assert "7. A jump host" in console.export_text()

    # Its boards are gone.
    assert not [name for name in emulated.list_boards() if name.startswith(prefix)]
    assert not (emulated.farm_dir() / f"{prefix}-inventory.yaml").exists()
