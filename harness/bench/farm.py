"""What the harness costs, as ratios measured side by side in one run (`python -m harness.bench`, `make bench`).

Absolute times on a shared machine say little; ratios of runs made next to
each other, on the same boards, with the same scenario, say more. Three:

1. farm scaling: wall(N boards) / wall(1 board) against the ideal 1.0, and
   N * wall(1) / wall(N) (the speedup over running the boards one after
   another; ideal N; divided by N it is the parallel efficiency, ideal 100%).
   qemu is CPU-bound, so the host's cores bound it: the CPU floor
   max(1, N / cores) is shown beside it, with how busy the host's CPUs were
   during each run and while the bench idled (the machine is shared).
2. bytes moved with a cold board store (its <workdir>/store deleted) against
   a warm one (the run after), and the model and input bytes the warm run
   skipped.
3. overhead: the harness's wall time on the slowest board (sum of its stage
   timings) against the agent's own inference time (sum of latency_ms), with
   each stage apart and the `run` stage split into process start (ssh exec,
   qemu, Python), agent startup (numpy and MNN imports, model load: the
   agent's wall_s minus inference) and inference.

Then what board sessions save (sessions.py): 4. a 16-setting matrix and
5. a 3-scenario night, one-shot against resident, and 6. the per-job
overhead on a warm board, each against the issue's goals; and 7. what a
jump host costs (jump.py).

Every measurement is repeated (--repeat) and shown as median [min - max].
The bench starts its own boards (prefix bench<pid>) and removes them at the end.
"""

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import yaml
from rich import box
from rich.table import Table

from ..core.agent_bundle import bundle
from ..core.build.inputs import INPUTS_FILE
from ..core.errors import BoardError
from ..config.inventory import load_inventory
from ..config.scenario import load_scenario
from ..emulation import board as emulated
from ..emulation.farm import farm_boards, farm_up
from .common import background_load, cpu_ticks, host_cores, scenario_text, spread
from .jump import jump_table, measure_jump
from .sessions import SessionsBench, measure_sessions, sessions_tables, sessions_verdicts
from ..plans.run import run_scenario
from ..record.run import RunRecord

STAGES = ("connect", "lock", "upload", "run", "download", "read")
"""The stages a board's BoardRecord.timings records, in the order they happen."""


@dataclass
class Measured:
    """One run of the scenario: its report and how busy the host's CPUs were meanwhile (0..1 of all cores)."""

    report: RunRecord
    cpu_busy: float


@dataclass
class Bench:
    """A farm of emulated boards and the scenarios that drive one of them or all of them."""

    boards: List[str]
    inventory_path: Path
    workdir: Path
    iterations: int = 1
    log: Callable[[str], None] = lambda message: None
    runs: int = field(default=0)

    def scenario(self, targets: List[str]):
        path = self.workdir / f"bench-{len(targets)}.yaml"
        if not path.exists():
            path.write_text(scenario_text(["x86", *targets], extra_run=f", iterations: {self.iterations}",
                                          name="bench"))
        return load_scenario(path)

    def run(self, targets: List[str]) -> Measured:
        scenario = self.scenario(targets)
        busy, total = cpu_ticks()
        self.runs += 1
        reports = self.workdir / "reports" / str(self.runs)
        report = run_scenario(scenario, load_inventory(self.inventory_path), reports, log=self.log)
        busy_after, total_after = cpu_ticks()
        broken = [f"{name}: {board.status}: {board.error}" for name, board in report.boards.items() if not board.ok]
        if broken:
            raise BoardError("the bench needs every board to run the model; " + "; ".join(broken))
        return Measured(report, (busy_after - busy) / max(1, total_after - total))

    def empty_store(self, name: str) -> None:
        """Delete the board's store of models and inputs: the next run finds it cold."""
        spec = yaml.safe_load(self.inventory_path.read_text())["boards"][name]
        shutil.rmtree(Path(spec["workdir"]) / "store", ignore_errors=True)


def overhead_of(report: RunRecord, name: str) -> Dict[str, float]:
    """Where one board's wall time went: every stage, and the `run` stage split three ways."""
    result = report.boards[name]
    inference = sum(result.facts.get("latency_ms") or []) / 1000.0
    agent_wall = float(result.facts.get("wall_s") or 0.0)
    stages = {stage: result.timings.get(stage, 0.0) for stage in STAGES}
    harness_wall = sum(result.timings.values())
    return {**stages, "harness_wall": harness_wall, "inference": inference, "agent_wall": agent_wall,
            "agent_startup": max(0.0, agent_wall - inference),
            "process_start": max(0.0, stages["run"] - agent_wall),
            "overhead": harness_wall / inference if inference > 0 else float("inf")}


def slowest(report: RunRecord, boards: List[str]) -> str:
    return max(boards, key=lambda name: report.boards[name].wall_s)


def measure(bench: Bench, repeat: int, progress: Callable[[str], None]) -> dict:
    one, every = bench.boards[:1], bench.boards
    progress(f"priming: one run on all {len(every)} boards (model build, stores filled; not measured)")
    bench.run(every)
    samples: Dict[str, list] = {key: [] for key in (
        "wall_1", "wall_n", "ratio", "board_ratio", "speedup", "efficiency",
        "cpu_busy_idle", "cpu_busy_1", "cpu_busy_n",
        "cold_up", "cold_down", "warm_up", "warm_down", "cold_total", "warm_total", "bytes_ratio", "skipped")}
    overheads: Dict[str, List[Dict[str, float]]] = {"slowest_of_n": [], "alone": []}
    slowest_names = []
    model_bytes = inputs_bytes = agent_bytes = 0
    for index in range(repeat):
        # Alternate the order so that a drift of the machine's load does not favour one side.
        order = ("cold", "warm", "n") if index % 2 == 0 else ("n", "cold", "warm")
        samples["cpu_busy_idle"].append(background_load())
        runs: Dict[str, Measured] = {}
        for kind in order:
            progress(f"repeat {index + 1}/{repeat}: " + {"cold": f"1 board, store emptied ({one[0]})",
                                                         "warm": "1 board, warm store",
                                                         "n": f"{len(every)} boards"}[kind])
            if kind == "cold":
                bench.empty_store(one[0])
            runs[kind] = bench.run(one if kind in ("cold", "warm") else every)
        wall_1, wall_n = runs["warm"].report.wall_s, runs["n"].report.wall_s
        samples["wall_1"].append(wall_1)
        samples["wall_n"].append(wall_n)
        samples["ratio"].append(wall_n / wall_1)
        samples["speedup"].append(len(every) * wall_1 / wall_n)
        samples["efficiency"].append(wall_1 / wall_n)
        board_1 = runs["warm"].report.boards[one[0]].wall_s
        board_n = max(runs["n"].report.boards[name].wall_s for name in every)
        samples["board_ratio"].append(board_n / board_1)
        samples["cpu_busy_1"].append(runs["warm"].cpu_busy)
        samples["cpu_busy_n"].append(runs["n"].cpu_busy)
        cold, warm = runs["cold"].report.boards[one[0]], runs["warm"].report.boards[one[0]]
        samples["cold_up"].append(cold.bytes_uploaded)
        samples["cold_down"].append(cold.bytes_downloaded)
        samples["warm_up"].append(warm.bytes_uploaded)
        samples["warm_down"].append(warm.bytes_downloaded)
        samples["cold_total"].append(cold.bytes_uploaded + cold.bytes_downloaded)
        samples["warm_total"].append(warm.bytes_uploaded + warm.bytes_downloaded)
        samples["bytes_ratio"].append((cold.bytes_uploaded + cold.bytes_downloaded)
                                      / max(1, warm.bytes_uploaded + warm.bytes_downloaded))
        samples["skipped"].append(cold.bytes_uploaded - warm.bytes_uploaded)
        model_bytes = Path(runs["warm"].report.model.mnn_path).stat().st_size
        inputs_bytes = (runs["warm"].report.folder / INPUTS_FILE).stat().st_size
        agent_bytes = bundle().stat().st_size
        name = slowest(runs["n"].report, every)
        slowest_names.append(name)
        overheads["slowest_of_n"].append(overhead_of(runs["n"].report, name))
        overheads["alone"].append(overhead_of(runs["warm"].report, one[0]))

    cores = host_cores()
    stats = {key: spread(values) for key, values in samples.items()}
    return {
        "boards": len(every), "repeat": repeat, "iterations": bench.iterations, "cores": cores,
        "board_names": every,
        "farm": {"wall_1_s": stats["wall_1"], "wall_n_s": stats["wall_n"], "ratio": stats["ratio"],
                 "board_ratio": stats["board_ratio"], "ideal_ratio": 1.0,
                 "cpu_floor_ratio": max(1.0, len(every) / cores),
                 "speedup": stats["speedup"], "ideal_speedup": float(len(every)),
                 "efficiency": stats["efficiency"],
                 "cpu_busy_idle": stats["cpu_busy_idle"], "cpu_busy_1": stats["cpu_busy_1"],
                 "cpu_busy_n": stats["cpu_busy_n"]},
        "bytes": {"board": one[0], "cold_uploaded": stats["cold_up"], "cold_downloaded": stats["cold_down"],
                  "warm_uploaded": stats["warm_up"], "warm_downloaded": stats["warm_down"],
                  "cold_total": stats["cold_total"], "warm_total": stats["warm_total"],
                  "ratio": stats["bytes_ratio"], "skipped": stats["skipped"],
                  "model_bytes": model_bytes, "inputs_bytes": inputs_bytes, "agent_bytes": agent_bytes},
        "overhead": {"slowest_boards": slowest_names,
                     **{where: {key: spread([sample[key] for sample in found]) for key in found[0]}
                        for where, found in overheads.items()}},
    }


# -- the views ------------------------------------------------------------------------------------------


def _format(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "x":
        return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"
    if unit == "%":
        return f"{value:.0%}"
    return f"{value:,.0f} B"


def _median(stat, unit: str) -> str:
    return _format(stat if isinstance(stat, (int, float)) else stat["median"], unit)


def _range(stat, unit: str) -> str:
    """min–max of the repeats, without the unit; empty for a number measured once or the same every time."""
    if isinstance(stat, (int, float)) or stat["min"] == stat["max"]:
        return ""
    low, high = (_format(stat[key], unit).rstrip(" sBx%") for key in ("min", "max"))
    return f"{low}–{high}"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 or column == "Note" else "right",
                         style="dim" if column == "range" else None, no_wrap=column != "Note")
    return table


def tables(data: dict) -> List[Table]:
    n, cores, repeat = data["boards"], data["cores"], data["repeat"]
    farm = data["farm"]
    scaling = _table(f"1. Farm scaling, {n} boards against 1 (median and range of {repeat})",
                     "Measure", "median", "range", "ideal", "Note")
    scaling.add_row("bench idle", "", "", "", f"CPUs busy {_median(farm['cpu_busy_idle'], '%')} "
                    "(others' load)")
    scaling.add_row("wall(1)", _median(farm["wall_1_s"], "s"), _range(farm["wall_1_s"], "s"), "",
                    f"CPUs busy {_median(farm['cpu_busy_1'], '%')}")
    scaling.add_row(f"wall({n})", _median(farm["wall_n_s"], "s"), _range(farm["wall_n_s"], "s"), "",
                    f"CPUs busy {_median(farm['cpu_busy_n'], '%')}")
    scaling.add_row(f"wall({n}) / wall(1)", _median(farm["ratio"], "x"), _range(farm["ratio"], "x"), "1.00x",
                    f"CPU floor {farm['cpu_floor_ratio']:.2f}x ({cores} cores)")
    scaling.add_row("  board wall, same", _median(farm["board_ratio"], "x"), _range(farm["board_ratio"], "x"),
                    "1.00x", "slowest board's stages")
    scaling.add_row(f"{n}·wall(1) / wall({n})", _median(farm["speedup"], "x"), _range(farm["speedup"], "x"),
                    f"{n:.2f}x", "speedup over one board at a time")
    scaling.add_row("  / boards = efficiency", _median(farm["efficiency"], "%"), _range(farm["efficiency"], "%"),
                    "100%", f"CPU-bound ceiling {min(1.0, cores / n):.0%}")

    moved = data["bytes"]
    transfer = _table(f"2. Bytes moved on {moved['board']}, cold store against warm",
                      "Run", "uploaded", "downloaded", "total", "range")
    transfer.add_row("cold (store emptied)", _median(moved["cold_uploaded"], "B"),
                     _median(moved["cold_downloaded"], "B"), _median(moved["cold_total"], "B"),
                     _range(moved["cold_total"], "B"))
    transfer.add_row("warm (the run after)", _median(moved["warm_uploaded"], "B"),
                     _median(moved["warm_downloaded"], "B"), _median(moved["warm_total"], "B"),
                     _range(moved["warm_total"], "B"))
    transfer.add_row("cold / warm", "", "", _median(moved["ratio"], "x"), _range(moved["ratio"], "x"))
    transfer.add_row("skipped when warm", _median(moved["skipped"], "B"), "", "", _range(moved["skipped"], "B"))
    transfer.add_row("  of which model", _median(moved["model_bytes"], "B"), "", "", "")
    transfer.add_row("  of which inputs", _median(moved["inputs_bytes"], "B"), "", "", "")

    overhead = data["overhead"]
    slow = ", ".join(sorted(set(overhead["slowest_boards"])))
    where = _table(f"3. Harness wall against the agent's inference (slowest of {n}: {slow})",
                   "Stage", f"slowest/{n}", "range", "share", "alone", "range", "share")
    rows = [(stage, stage) for stage in STAGES] + [
        (" ├ process start", "process_start"),
        (" ├ agent startup", "agent_startup"),
        (" └ inference", "inference")]
    for label, key in rows:
        cells = []
        for column in ("slowest_of_n", "alone"):
            stat, total = overhead[column][key], overhead[column]["harness_wall"]["median"]
            cells += [_median(stat, "s"), _range(stat, "s"), f"{stat['median'] / total:.0%}" if total else "–"]
        where.add_row(label, *cells)
    cells = []
    for column in ("slowest_of_n", "alone"):
        cells += [_median(overhead[column]["harness_wall"], "s"), _range(overhead[column]["harness_wall"], "s"),
                  "100%"]
    where.add_row("harness wall", *cells, style="bold")
    cells = []
    for column in ("slowest_of_n", "alone"):
        cells += [_median(overhead[column]["overhead"], "x"), _range(overhead[column]["overhead"], "x"), ""]
    where.add_row("wall / infer.", *cells, style="bold")
    where.caption = ("run = process start: ssh exec, qemu, Python (run minus the agent's wall_s) "
                     "+ agent startup: numpy and MNN imports, model load (wall_s minus inference) "
                     "+ inference: sum of latency_ms")
    where.caption_justify = "left"
    return [scaling, transfer, where]


def limits(data: dict) -> List[str]:
    """What the numbers mean, in words: what limits the farm and where the overhead goes."""
    n, cores, farm = data["boards"], data["cores"], data["farm"]
    ratio = farm["ratio"]["median"]
    busy_idle, busy_n = farm["cpu_busy_idle"]["median"], farm["cpu_busy_n"]["median"]
    lines = [f"{n} boards took {ratio:.2f}x the wall time of one (ideal 1.00x); with {cores} core(s) and qemu "
             f"CPU-bound, the boards' emulated work alone cannot beat {farm['cpu_floor_ratio']:.2f}x."]
    if busy_n >= 0.9:
        lines.append(f"The host's CPUs were {busy_n:.0%} busy during the {n}-board run: CPU is the limit"
                     + (f" (and {busy_idle:.0%} of it was others' load while the bench idled)." if busy_idle >= 0.1
                        else "."))
    else:
        lines.append(f"The host's CPUs were only {busy_n:.0%} busy during the {n}-board run: waiting (SSH "
                     "round trips, process start) limits it more than CPU.")
    if ratio < farm["cpu_floor_ratio"]:
        lines.append("The ratio beats the CPU floor because much of wall(1) is not board CPU: host work "
                     "(model, inputs, the x86 reference) done once per run, and waits that overlap.")
    slow = data["overhead"]["slowest_of_n"]
    parts = {key: slow[key]["median"] for key in ("connect", "lock", "upload", "download", "read",
                                                   "process_start", "agent_startup", "inference")}
    top = max(parts, key=parts.get)
    lines.append(f"Overhead on the slowest board: {slow['overhead']['median']:.1f}x its inference; the largest "
                 f"part is {top.replace('_', ' ')} ({parts[top]:.2f} s of {slow['harness_wall']['median']:.2f} s).")
    return lines


def views(data: dict) -> list:
    """Everything the bench prints, in order: the farm's tables and what they mean, then the sessions'."""
    return [*tables(data), *limits(data),
            *sessions_tables(data["sessions"], _table, _median, _range, data["boards"], data["cores"]),
            *sessions_verdicts(data["sessions"]),
            *([jump_table(data["jump"], _table, _median, _range)] if "jump" in data else [])]


def run_bench(boards: int, repeat: int, iterations: int, prefix: str, matrix_settings: int, night_scenarios: int,
              progress: Callable[[str], None]) -> Tuple[dict, int]:
    """Start the bench's own boards (named prefix-...), measure the farm, then the sessions, and remove the
    boards whatever happens; the measurements and how many runs they took."""
    started = time.perf_counter()
    names = [board.name for board in farm_boards(boards, prefix)]
    try:
        with tempfile.TemporaryDirectory(prefix="mnn-bench-") as workdir:
            progress(f"starting {boards} emulated board(s): {', '.join(names)}")
            inventory = farm_up(boards, log=lambda message: None, prefix=prefix)
            bench = Bench(names, inventory, Path(workdir), iterations)
            data = measure(bench, repeat, progress)
            sessions = SessionsBench(names, inventory, Path(workdir), cpu_ticks, matrix_settings,
                                     night_scenarios, host_cores())
            data["sessions"] = measure_sessions(sessions, repeat, progress)
            data["jump"] = measure_jump(names[0], Path(workdir), repeat, iterations, progress)
    finally:
        for name in names:
            emulated.remove(name)
        for leftover in (emulated.farm_dir() / f"{prefix}-inventory.yaml",
                         emulated.farm_dir() / f"{prefix}-known_hosts"):
            leftover.unlink(missing_ok=True)
    data["bench_wall_s"] = time.perf_counter() - started
    return data, bench.runs + sessions.runs + data["jump"]["runs"]
