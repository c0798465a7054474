"""What a jump host costs (table 7 of `make bench`): the same run on one board straight and through a jump host.

The board is the bench's first emulated board, reached as a lab's board is (kind ssh); the jump host is a
real sshd (emulation.bastion) inside the board's network namespace, so both routes end on the same board,
same store, same resident agent code, and differ only by the hop. The two runs alternate (repeat times);
the board's connect stage, its wall (every stage) and the whole run's wall are compared as ratios.
"""

import json
import time
from pathlib import Path
from typing import Callable, Dict, List

import yaml
from rich.table import Table

from ..core.errors import BoardError
from ..config.inventory import load_inventory
from ..config.scenario import load_scenario
from ..emulation import board as emulated
from ..emulation.bastion import start_bastion, stop_bastion
from .common import scenario_text, spread
from ..plans.run import run_scenario


def measure_jump(board: str, workdir: Path, repeat: int, iterations: int, progress: Callable[[str], None]) -> dict:
    endpoint = emulated.endpoint_of(board)
    if endpoint is None:
        raise BoardError(f"the bench's board {board} has not been started")
    state = json.loads((emulated.state_dir(board) / "state.json").read_text())
    bastion = start_bastion(workdir / "bastion", "bastion", endpoint.host if state.get("namespace") else "127.0.0.1",
                            state.get("namespace"))
    try:
        direct = {"kind": "ssh", "host": endpoint.host, "port": endpoint.port, "user": endpoint.user,
                  "key": endpoint.key_filename, "known_hosts": endpoint.known_hosts, "workdir": endpoint.workdir}
        jumped = {**direct, "jump": {"host": bastion.address, "port": bastion.port, "user": bastion.user,
                                     "key": str(bastion.key), "known_hosts": str(bastion.known_hosts)}}
        inventory = workdir / "jump-inventory.yaml"
        inventory.write_text(yaml.safe_dump({"boards": {"x86": {"kind": "local"}, "straight": direct,
                                                        "jumped": jumped}}))
        samples: Dict[str, List[float]] = {key: [] for key in (
            "connect_straight", "connect_jumped", "connect_ratio", "board_straight", "board_jumped", "board_ratio",
            "run_straight", "run_jumped", "run_ratio")}
        runs = 0

        def run(name: str):
            nonlocal runs
            runs += 1
            path = workdir / f"jump-{name}.yaml"
            path.write_text(scenario_text(["x86", name], extra_run=f", iterations: {iterations}", name="bench"))
            report = run_scenario(load_scenario(path), load_inventory(inventory), workdir / "jump-reports" / str(runs))
            result = report.boards[name]
            if not result.ok:
                raise BoardError(f"the bench's jump measurement needs {name} to run: {result.error}")
            return report, result

        progress("a jump host: priming both routes (not measured)")
        run("straight")
        run("jumped")
        for index in range(repeat):
            order = ("straight", "jumped") if index % 2 == 0 else ("jumped", "straight")
            measured = {}
            for name in order:
                progress(f"repeat {index + 1}/{repeat}: one board {name}")
                started = time.perf_counter()
                report, result = run(name)
                measured[name] = (result, time.perf_counter() - started)
            for name in ("straight", "jumped"):
                result, wall = measured[name]
                samples[f"connect_{name}"].append(result.timings.get("connect", 0.0))
                samples[f"board_{name}"].append(sum(result.timings.values()))
                samples[f"run_{name}"].append(wall)
            for what in ("connect", "board", "run"):
                samples[f"{what}_ratio"].append(samples[f"{what}_jumped"][-1] / max(samples[f"{what}_straight"][-1],
                                                                                    1e-9))
    finally:
        stop_bastion(bastion)
    return {"board": board, "bastion_in_namespace": bool(state.get("namespace")), "runs": runs,
            **{key: spread(values) for key, values in samples.items()}}


def jump_table(data: dict, make_table: Callable[..., Table], median: Callable, span: Callable) -> Table:
    where = "in the board's network namespace" if data["bastion_in_namespace"] else "on 127.0.0.1"
    table = make_table(f"7. A jump host ({where}) on {data['board']}: the same run through it against straight",
                       "Measure", "straight", "jumped", "jumped / straight", "range")
    for key, label in (("connect", "connect stage"), ("board", "board's wall (every stage)"),
                       ("run", "whole run")):
        table.add_row(label, median(data[f"{key}_straight"], "s"), median(data[f"{key}_jumped"], "s"),
                      median(data[f"{key}_ratio"], "x"), span(data[f"{key}_ratio"], "x"))
    return table
