"""The live progress of a run on the terminal: a line per board with the stage it is in.

The one view that is not of a record: it draws the executor's events as they come (it implements
execution/executor.py's Progress, whose methods it has, without importing the room below: a view imports only
the record), and the record's views take over once the run is judged.
"""

from typing import Dict

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress as RichProgress
from rich.progress import SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from ..record.run import INTERRUPTED, OK, UNUSABLE


class TerminalProgress:
    """A line per target with its current stage, while the run works."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = RichProgress(SpinnerColumn(), TextColumn("[bold]{task.description:<14}"),
                                TextColumn("{task.fields[stage]}"), TimeElapsedColumn(),
                                console=console, transient=False)
        self.tasks: Dict[str, TaskID] = {}
        self.jobs: Dict[str, str] = {}
        """Board -> which of its jobs runs ("3/16 low-t1-session-copy-fp32"), when it has more than one."""

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()

    def step(self, message: str) -> None:
        self.console.print(f"[dim]•[/] {message}")

    def add_target(self, name: str) -> None:
        self.tasks[name] = self.bar.add_task(name, total=1, stage="[dim]waiting")

    def job(self, name: str, label: str, number: int, count: int) -> None:
        if count > 1 or label:
            self.jobs[name] = escape(f"{number}/{count} {label}".strip() if count > 1 else label)

    def stage(self, name: str, stage: str) -> None:
        job = self.jobs.get(name)
        self.bar.update(self.tasks[name], stage=f"[dim]{job}[/] [cyan]{stage}" if job else f"[cyan]{stage}")

    def target_done(self, name: str, result) -> None:
        shown = {OK: "[green]done", UNUSABLE: "[red]unusable", INTERRUPTED: "[yellow]interrupted"}.get(
            result.status, "[red]failed")
        self.bar.update(self.tasks[name], stage=shown, completed=1)
