"""Terminal tables that fold instead of cutting: nothing a report says is lost to a narrow terminal.

rich shortens a cell that does not fit with "…": a number, a verdict or a
board name cut that way is a report that lies by omission. A `FoldingTable`
is drawn as an ordinary table when its natural width fits the terminal, and
otherwise as stacked rows: the row's name (its key cells) on one line, then
every other cell as "header value" pairs packed into lines that fit, a pair
never split across lines, a value longer than a line on a line of its own and
wrapped at word boundaries. Either way, a legend (what an abbreviation or a
column means) follows the table.
"""

from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from rich import box

Cell = Union[str, Text, None]

STACK_INDENT = "   "
PAIR_GAP = "   "


@dataclass(frozen=True)
class Column:
    header: str
    justify: str = "left"
    key: bool = False
    """Part of the row's name: stacked, it goes on the row's first line, without its header."""
    label: Optional[str] = None
    """How a stacked row names this cell (default: the header)."""
    wrap: bool = False
    """A list of words (CPU features): in the table it may wrap at word boundaries rather than stack it."""


class NoFit(Exception):
    """Not even one word a line in every wrapping column fits: the rows are stacked instead."""


def as_text(cell: Cell) -> Text:
    if cell is None:
        return Text("")
    return cell.copy() if isinstance(cell, Text) else Text(str(cell))


class FoldingTable:
    """A table with a title, columns and rows that folds (see the module docstring) rather than cut."""

    def __init__(self, columns: Sequence[Column], title: Optional[str] = None, legend: Iterable[str] = ()):
        self.columns = list(columns)
        self.title = title
        self.legend = list(legend)
        self.rows: List[List[Text]] = []

    def add_row(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(self.columns)} columns got {len(cells)} cells")
        self.rows.append([as_text(cell) for cell in cells])

    def table(self, widths: Optional[List[Optional[int]]] = None) -> Table:
        """The rich table; widths fix the content width of columns (wrapping ones fold at word boundaries)."""
        table = Table(title=self.title, title_justify="left", box=box.SIMPLE_HEAD, header_style="bold",
                      pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
        for index, column in enumerate(self.columns):
            # fold, never "…": a table is only drawn when every cell fits, this is the last guard.
            table.add_column(column.header, justify=column.justify, no_wrap=not column.wrap, overflow="fold",
                             width=widths[index] if widths else None)
        for row in self.rows:
            table.add_row(*row)
        return table

    def _extents(self, column: Column, index: int) -> Tuple[int, int, int]:
        """(least, usual, natural) content width of a column.

        least: a wrapping column's longest word; usual: what keeps most of its cells (80%) on their
        lines; natural: every cell whole.
        """
        texts = [Text(column.header)] + [row[index] for row in self.rows]
        widths = sorted(max(cell_len(line) for line in text.plain.split("\n")) for text in texts)
        natural = widths[-1]
        if not column.wrap:
            return natural, natural, natural
        least = max(cell_len(word) for text in texts for word in text.plain.split() or [""])
        return least, max(least, widths[int(0.8 * (len(widths) - 1))]), natural

    def widths_for(self, console: Console, options: ConsoleOptions, width: int) -> Optional[List[Optional[int]]]:
        """None when the table fits whole; else column widths that fit, wrapping columns at word boundaries.

        Raises NoFit when not even that fits. rich's own squeeze ignores word boundaries and ends in
        "…" or in words cut in two, so the harness chooses the widths: the columns that need least
        get their whole width first.
        """
        extents = [self._extents(column, index) for index, column in enumerate(self.columns)]
        natural_total = sum(natural for _, _, natural in extents)
        # Measured unconstrained: rich clamps a measurement to the width it is given.
        overhead = Measurement.get(console, options.update_width(1_000_000), self.table()).maximum - natural_total
        if natural_total + overhead <= width:
            return None
        slack = width - overhead - sum(least for least, _, _ in extents)
        if slack < 0:
            raise NoFit()
        widths: List[int] = [least for least, _, _ in extents]
        # First the usual cells of every column on their lines, then every cell whole; cheapest first.
        for level in (1, 2):
            for index in sorted(range(len(extents)), key=lambda i: extents[i][level] - widths[i]):
                grow = max(0, min(slack, extents[index][level] - widths[index]))
                widths[index] += grow
                slack -= grow
        return list(widths)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        try:
            yield self.table(self.widths_for(console, options, options.max_width))
        except NoFit:
            yield from self.stacked(options.max_width)
        for line in self.legend:
            yield Text(line, "dim")

    def stacked(self, width: int) -> List[Text]:
        lines: List[Text] = []
        if self.title:
            lines.append(Text.from_markup(self.title, style="table.title"))
        for row in self.rows:
            head = Text(" ")
            for column, cell in zip(self.columns, row):
                if column.key and cell.plain:
                    if len(head) > 1:
                        head.append("  ")
                    head.append_text(cell)
            lines.append(head)
            pairs = []
            for column, cell in zip(self.columns, row):
                if column.key or not cell.plain.strip():
                    continue
                pair = Text(f"{column.label if column.label is not None else column.header} ", "dim")
                pair.append_text(Text(" ").join(cell.split("\n")) if "\n" in cell.plain else cell)
                pairs.append(pair)
            lines += pack(pairs, width)
        return lines


def pack(pairs: List[Text], width: int) -> List[Text]:
    """Pairs on indented lines no wider than width; a pair too wide for a line gets one of its own (it wraps)."""
    lines: List[Text] = []
    current: Optional[Text] = None
    for pair in pairs:
        if current is not None and len(current) + len(PAIR_GAP) + len(pair) <= width:
            current.append(PAIR_GAP)
            current.append_text(pair)
            continue
        if current is not None:
            lines.append(current)
        current = Text(STACK_INDENT) + pair
        if len(current) > width:  # a long value: alone on its line, wrapped by the console at word boundaries
            lines.append(current)
            current = None
    if current is not None:
        lines.append(current)
    return lines
