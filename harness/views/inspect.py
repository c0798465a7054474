"""`harness inspect`'s view: a model file's inputs and outputs (names, shapes, dtypes) and what to know of them."""

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..core.build.signature import Signature
from .fold import Column, FoldingTable


def render_signature(path: Path, signature: Signature, console: Console) -> None:
    console.print(f"[bold]{signature.format}[/] model {escape(str(path))}")
    table = FoldingTable([Column("Role", key=True), Column("Name", key=True), Column("Shape"), Column("Dtype")])
    for tensor in signature.tensors:
        table.add_row(tensor.role, tensor.name, tensor.shape_text, tensor.dtype)
    console.print(table)
    for note in signature.notes:
        console.print(f"[dim]{escape(note)}[/]")
    for warning in signature.warnings:
        console.print(f"[yellow]{escape(warning)}[/]")
