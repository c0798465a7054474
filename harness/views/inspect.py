"""`harness inspect`'s view: a model file's inputs and outputs (names, shapes, dtypes) and what to know of them, from
what `harness inspect --json` prints."""

from rich.console import Console
from rich.markup import escape

from ..record.numbers import shape_text
from .fold import Column, FoldingTable


def render_signature(signature: dict, console: Console) -> None:
    """signature: {"model": its path, "format", "tensors": [{"role", "name", "shape", "dtype"}], "notes",
    "warnings"}."""
    console.print(f"[bold]{signature['format']}[/] model {escape(str(signature['model']))}")
    table = FoldingTable([Column("Role", key=True), Column("Name", key=True), Column("Shape"), Column("Dtype")])
    for tensor in signature["tensors"]:
        table.add_row(tensor["role"], tensor["name"], shape_text(tensor["shape"]), tensor["dtype"])
    console.print(table)
    for note in signature["notes"]:
        console.print(f"[dim]{escape(note)}[/]")
    for warning in signature["warnings"]:
        console.print(f"[yellow]{escape(warning)}[/]")
