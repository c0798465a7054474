"""`harness init`'s view: the files written, the board's facts, and every guess the scenario made (from the
plan's record, InitResult.as_dict: the same data `--json` prints)."""

from rich.console import Console
from rich.markup import escape


def render_init(written: dict, console: Console) -> None:
    console.print(f"[green]wrote[/] {escape(written['scenario'])}  (from the {written['format']} model "
                  f"{escape(written['model'])})", highlight=False)
    if written.get("inventory"):
        facts = written.get("board_facts") or {}
        console.print(f"[green]{written['inventory_action']}[/] {escape(written['inventory'])}: board "
                      f"{escape(written['board'])} ({escape(str(facts.get('machine', '?')))}, Python "
                      f"{escape(str(facts.get('python', '?')))}, MNN {escape(str(facts.get('mnn_version', '?')))})",
                      highlight=False)
    if written.get("guesses"):
        console.print("[bold]Guessed[/] (check them in the file):")
        for guess in written["guesses"]:
            console.print(f"  • {escape(guess)}", highlight=False)
    console.print(f"next: harness run {escape(written['scenario'])}", highlight=False, soft_wrap=True)
