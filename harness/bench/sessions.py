"""What board sessions save, measured side by side in one `make bench` run: the one-shot way against the resident.

The one-shot way is the harness before sessions: every matrix setting and
every nightly scenario a run of its own, each board connecting and starting
an agent process per job, the references recomputed each time. The resident
way is one plan over board sessions: one connection and one resident agent
per board, settings back to back, the references computed once per distinct
input. On the same boards, with the same scenarios, alternating which goes
first:

4. a matrix of --matrix-settings settings (16: precision x threads x api x
   converter variant) on every board: wall one-shot / wall resident (goal:
   at least 5x); and the slowest board's wall in the resident matrix against
   one start-up plus the sum of its inference and its transfers (goal: at
   most 1.3x), the start-up being what a one-shot job on that board pays
   before inference (connect, lock, process start, imports, model load);
5. a night of --night-scenarios scenarios on every board: wall one-shot /
   wall resident;
6. the per-job overhead on a warm board (its harness wall minus its
   inference; the first bench board, the resident session's first job left
   out), resident / one-shot (goal: at most 10%).
"""

import io
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

from rich.console import Console
from rich.table import Table

from ..core.errors import BoardError
from ..config.inventory import load_inventory
from ..config.scenario import load_scenario
from .common import scenario_text, spread
from ..plans.matrix import MatrixReport, run_matrix
from ..plans.night import load_nightly, run_nightly
from ..record.run import BoardRecord

GOALS = {"matrix_speedup": 5.0, "board_wall_ratio": 1.3, "job_overhead_ratio": 0.10}
"""The issue's goals for the ratios below."""
MATRIX_AXES = [("precision", "[normal, low]"), ("threads", "[1, 2]"), ("api", "[session, module]"),
               ("converter", '{fp32: [--useGeluApproximation, "0"], fp16: [--useGeluApproximation, "0", --fp16]}')]
"""Two values each: the first k axes give a matrix of 2^k settings."""


def matrix_yaml(settings: int) -> str:
    axes = {1: 0, 2: 1, 4: 2, 8: 3, 16: 4}[settings]
    return "matrix:\n" + "".join(f"  {key}: {values}\n" for key, values in MATRIX_AXES[:axes])


def night_yaml(scenarios: List[Path]) -> str:
    return "runs:\n" + "".join(f"  - scenario: {path}\n" for path in scenarios)


def job_overhead(result: BoardRecord) -> float:
    """A job's harness wall minus its inference: what the harness cost it."""
    return sum(result.timings.values()) - sum(result.facts.get("latency_ms") or []) / 1000.0


def inference(result: BoardRecord) -> float:
    return sum(result.facts.get("latency_ms") or []) / 1000.0


def startup(result: BoardRecord) -> float:
    """What a one-shot job pays before inference: connect, lock, process start, imports, model load."""
    timings = result.timings
    return timings.get("connect", 0.0) + timings.get("lock", 0.0) + timings.get("run", 0.0) - inference(result)


def transfers(result: BoardRecord) -> float:
    return sum(result.timings.get(stage, 0.0) for stage in ("upload", "download", "read"))


def board_results(report: MatrixReport, board: str) -> List[BoardRecord]:
    """A board's result in every setting, in the order the settings ran on it."""
    return [single.boards[board] for _, single in report.runs]


@dataclass
class SessionsBench:
    """The bench's farm, driven the one-shot way and the resident way."""

    boards: List[str]
    inventory_path: Path
    workdir: Path
    cpu_ticks: Callable[[], tuple]
    settings: int = 16
    scenarios: int = 3
    cores: int = 1

    def __post_init__(self) -> None:
        targets = ["x86", *self.boards]
        self.matrix_path = self.workdir / "sessions-matrix.yaml"
        self.matrix_path.write_text(scenario_text(targets, name="matrix") + matrix_yaml(self.settings))
        # A night's scenarios: the light model at normal and at FP16 precision, and the first again with other
        # limits (its x86 and source references are the same jobs: computed once in the resident night).
        variants = [("", ""), (", precision: low", ""), ("", ", max_rel: 1")]
        paths = []
        for index in range(self.scenarios):
            extra_run, tolerance = variants[index % len(variants)]
            text = scenario_text(targets, name=f"night{index + 1}", tolerance=tolerance)
            if extra_run:
                text = text.replace("run: {precision: normal}", "run: {precision: low}")
            path = self.workdir / f"sessions-night{index + 1}.yaml"
            path.write_text(text)
            paths.append(path)
        self.night_path = self.workdir / "sessions-night.yaml"
        self.night_path.write_text(night_yaml(paths))
        self.runs = 0

    def busy(self, work: Callable[[], object]):
        busy, total = self.cpu_ticks()
        started = time.perf_counter()
        outcome = work()
        wall = time.perf_counter() - started
        busy_after, total_after = self.cpu_ticks()
        return outcome, wall, (busy_after - busy) / max(1, total_after - total)

    def matrix(self, warm: bool):
        self.runs += 1
        reports = self.workdir / "reports" / f"matrix-{self.runs}"
        scenario = load_scenario(self.matrix_path)
        inventory = load_inventory(self.inventory_path)
        report, wall, busy = self.busy(lambda: run_matrix(scenario, inventory, reports, warm=warm))
        broken = [f"{setting.label} {name}: {result.status}: {result.error}" for setting, single in report.runs
                  for name, result in single.boards.items() if not result.ok]
        if broken:
            raise BoardError("the bench needs every board to run every setting; " + "; ".join(broken[:3]))
        return report, wall, busy

    def night(self, warm: bool):
        self.runs += 1
        reports = self.workdir / "reports" / f"night-{self.runs}"
        config = load_nightly(self.night_path)
        console = Console(file=io.StringIO(), width=100)
        result, wall, busy = self.busy(lambda: run_nightly(config, reports, console,
                                                           inventory_arg=str(self.inventory_path), warm=warm))
        if result.exit_code not in (0, 1):
            raise BoardError(f"the bench's night ended with exit {result.exit_code}: {console.file.getvalue()[-500:]}")
        return result, wall, busy


def cpu_work_ratio(samples: Dict[str, list], what: str, cores: int) -> float:
    """CPU-seconds the one-shot way used over those the resident way used (busy share x wall x cores): the
    speedup that cutting CPU work alone explains, the CPU floor of a CPU-bound farm."""
    one_shot = samples[f"busy_{what}_one_shot"][-1] * samples[f"{what}_one_shot"][-1] * cores
    resident = samples[f"busy_{what}_resident"][-1] * samples[f"{what}_resident"][-1] * cores
    return one_shot / max(resident, 1e-9)


def measure_sessions(bench: SessionsBench, repeat: int, progress: Callable[[str], None]) -> dict:
    first = bench.boards[0]
    keys = ("matrix_one_shot", "matrix_resident", "matrix_speedup", "busy_matrix_one_shot", "busy_matrix_resident",
            "matrix_cpu_work", "night_one_shot", "night_resident", "night_speedup", "busy_night_one_shot",
            "busy_night_resident", "night_cpu_work",
            "job_one_shot", "job_resident", "job_ratio", "board_wall", "board_floor", "board_ratio",
            "board_startup", "board_inference", "board_transfers")
    samples: Dict[str, list] = {key: [] for key in keys}
    slowest_boards = []
    for index in range(repeat):
        order = (False, True) if index % 2 == 0 else (True, False)
        matrices = {}
        for warm in order:
            way = "resident" if warm else "one-shot"
            progress(f"repeat {index + 1}/{repeat}: a {bench.settings}-setting matrix on {len(bench.boards)} "
                     f"boards, {way}")
            report, wall, busy = bench.matrix(warm)
            matrices[warm] = report
            samples[f"matrix_{'resident' if warm else 'one_shot'}"].append(wall)
            samples[f"busy_matrix_{'resident' if warm else 'one_shot'}"].append(busy)
        samples["matrix_speedup"].append(samples["matrix_one_shot"][-1] / samples["matrix_resident"][-1])
        samples["matrix_cpu_work"].append(cpu_work_ratio(samples, "matrix", bench.cores))
        for warm in order:
            way = "resident" if warm else "one-shot"
            progress(f"repeat {index + 1}/{repeat}: a night of {bench.scenarios} scenarios, {way}")
            _, wall, busy = bench.night(warm)
            samples[f"night_{'resident' if warm else 'one_shot'}"].append(wall)
            samples[f"busy_night_{'resident' if warm else 'one_shot'}"].append(busy)
        samples["night_speedup"].append(samples["night_one_shot"][-1] / samples["night_resident"][-1])
        samples["night_cpu_work"].append(cpu_work_ratio(samples, "night", bench.cores))

        # The per-job overhead on a warm board: every one-shot job, the resident session's jobs after its first.
        cold = [job_overhead(result) for result in board_results(matrices[False], first)]
        warm = [job_overhead(result) for result in board_results(matrices[True], first)[1:]] or [0.0]
        samples["job_one_shot"].append(statistics.median(cold))
        samples["job_resident"].append(statistics.median(warm))
        samples["job_ratio"].append(samples["job_resident"][-1] / samples["job_one_shot"][-1])

        # The slowest board of the resident matrix against one start-up + its inference + its transfers.
        walls = {name: sum(sum(result.timings.values()) for result in board_results(matrices[True], name))
                 for name in bench.boards}
        slowest = max(walls, key=walls.get)
        slowest_boards.append(slowest)
        resident = board_results(matrices[True], slowest)
        start = statistics.median([startup(result) for result in board_results(matrices[False], slowest)])
        floor = start + sum(inference(result) for result in resident) + sum(transfers(result) for result in resident)
        samples["board_wall"].append(walls[slowest])
        samples["board_startup"].append(start)
        samples["board_inference"].append(sum(inference(result) for result in resident))
        samples["board_transfers"].append(sum(transfers(result) for result in resident))
        samples["board_floor"].append(floor)
        samples["board_ratio"].append(walls[slowest] / floor)
    return {"settings": bench.settings, "scenarios": bench.scenarios, "board": first,
            "slowest_boards": slowest_boards, "goals": dict(GOALS),
            **{key: spread(values) for key, values in samples.items()}}


def sessions_tables(data: dict, make_table: Callable[..., Table], median: Callable, span: Callable,
                    boards: int, cores: int) -> List[Table]:
    """Tables 4-6 of the bench: the numbers of measure_sessions against the goals and the CPU floor."""
    s, goals = data, data["goals"]
    floor = max(1.0, boards / cores)
    matrix = make_table(f"4. A {s['settings']}-setting matrix on {boards} boards, one-shot against resident "
                        f"(median and range)", "Measure", "median", "range", "goal", "Note")
    matrix.add_row("one-shot wall", median(s["matrix_one_shot"], "s"), span(s["matrix_one_shot"], "s"), "",
                   f"a run per setting, an agent process per job; CPUs busy {median(s['busy_matrix_one_shot'], '%')}")
    matrix.add_row("resident wall", median(s["matrix_resident"], "s"), span(s["matrix_resident"], "s"), "",
                   f"one plan, a session per board; CPUs busy {median(s['busy_matrix_resident'], '%')}")
    matrix.add_row("one-shot / resident", median(s["matrix_speedup"], "x"), span(s["matrix_speedup"], "x"),
                   f">= {goals['matrix_speedup']:.0f}x", f"CPU floor {median(s['matrix_cpu_work'], 'x')}: "
                   f"CPU-seconds one-shot / resident ({cores} cores)")
    slow = ", ".join(sorted(set(s["slowest_boards"])))
    matrix.add_row("slowest board's wall", median(s["board_wall"], "s"), span(s["board_wall"], "s"), "",
                   f"{slow}, resident: every setting back to back")
    matrix.add_row("  one start-up", median(s["board_startup"], "s"), span(s["board_startup"], "s"), "",
                   "a one-shot job's connect, lock, process start, imports, model load")
    matrix.add_row("  + its inference", median(s["board_inference"], "s"), span(s["board_inference"], "s"), "",
                   "sum of latency_ms over the settings")
    matrix.add_row("  + its transfers", median(s["board_transfers"], "s"), span(s["board_transfers"], "s"), "",
                   "upload, download and read stages")
    matrix.add_row("wall / that sum", median(s["board_ratio"], "x"), span(s["board_ratio"], "x"),
                   f"<= {goals['board_wall_ratio']:.1f}x", f"ideal 1.00x; {boards} boards share {cores} cores "
                   f"(CPU floor {floor:.2f}x), in both the wall and the sum")

    night = make_table(f"5. A night of {s['scenarios']} scenarios on {boards} boards, one-shot against resident",
                       "Measure", "median", "range", "goal", "Note")
    night.add_row("one-shot wall", median(s["night_one_shot"], "s"), span(s["night_one_shot"], "s"), "",
                  f"CPUs busy {median(s['busy_night_one_shot'], '%')}")
    night.add_row("resident wall", median(s["night_resident"], "s"), span(s["night_resident"], "s"), "",
                  f"CPUs busy {median(s['busy_night_resident'], '%')}")
    night.add_row("one-shot / resident", median(s["night_speedup"], "x"), span(s["night_speedup"], "x"), "",
                  f"CPU floor {median(s['night_cpu_work'], 'x')}: CPU-seconds one-shot / resident")

    job = make_table(f"6. Per-job overhead on a warm board ({s['board']}): harness wall minus inference",
                     "Measure", "median", "range", "goal", "Note")
    job.add_row("one-shot job", median(s["job_one_shot"], "s"), span(s["job_one_shot"], "s"), "",
                "connect, lock, process start, imports, model load, transfers")
    job.add_row("resident job", median(s["job_resident"], "s"), span(s["job_resident"], "s"), "",
                "one request, the store known, results fetched")
    job.add_row("resident / one-shot", median(s["job_ratio"], "%"), span(s["job_ratio"], "%"),
                f"<= {goals['job_overhead_ratio']:.0%}", "")
    return [matrix, night, job]


def sessions_verdicts(data: dict) -> List[str]:
    """Each goal, met or not, in words."""
    goals, lines = data["goals"], []
    for key, label, better in (("matrix_speedup", "the matrix one-shot / resident", "at least"),
                               ("board_wall_ratio", "the slowest board's wall / (start-up + inference + transfers)",
                                "at most"),
                               ("job_overhead_ratio", "the per-job overhead resident / one-shot", "at most")):
        value = data[{"matrix_speedup": "matrix_speedup", "board_wall_ratio": "board_ratio",
                      "job_overhead_ratio": "job_ratio"}[key]]["median"]
        met = value >= goals[key] if better == "at least" else value <= goals[key]
        shown = f"{value:.0%}" if key == "job_overhead_ratio" else f"{value:.2f}x"
        goal = f"{goals[key]:.0%}" if key == "job_overhead_ratio" else f"{goals[key]:g}x"
        lines.append(f"{'met' if met else 'NOT met'}: {label} is {shown} (goal: {better} {goal})")
    return lines


__all__ = ["SessionsBench", "measure_sessions", "sessions_tables", "sessions_verdicts", "GOALS", "matrix_yaml"]
