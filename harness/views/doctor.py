"""`harness doctor`'s view: every requirement of this host, ok or missing, grouped by what it is needed for
(from the plan's record, HostChecks.as_dict: the same data `--json` prints)."""

from rich.console import Console
from rich.table import Table
from rich.text import Text


def render_checks(checks: dict, console: Console) -> None:
    for group in dict.fromkeys(check["group"] for check in checks["checks"]):
        # Nothing is cut: the requirement wraps at words, what was found (a path) or the fix folds.
        table = Table(box=None, title=f"For {group}", title_justify="left", title_style="bold", show_header=False,
                      expand=True)
        table.add_column("Status", no_wrap=True)
        table.add_column("Requirement", ratio=1)
        table.add_column("Found, or the fix", ratio=1, overflow="fold")
        for check in (check for check in checks["checks"] if check["group"] == group):
            ok = check["ok"]
            status = Text("ok", "green") if ok else Text("missing", "red" if check["required"] else "yellow")
            table.add_row(status, check["name"], check["detail"] if ok else check["fix"] or check["detail"])
        console.print(table)
    for line in checks["summary"]:
        console.print(Text(line), soft_wrap=True)
