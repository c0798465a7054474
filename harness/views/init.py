"""`harness init`'s view: the files written, the board's facts, and every guess the scenario made."""

from rich.console import Console
from rich.markup import escape

from ..plans.init import InitResult


def render_init(result: InitResult, console: Console) -> None:
    console.print(f"[green]wrote[/] {escape(str(result.scenario))}  (from the {result.signature.format} model "
                  f"{escape(str(result.model))})", highlight=False)
    if result.inventory is not None:
        facts = result.board_facts
        console.print(f"[green]{result.inventory_action}[/] {escape(str(result.inventory))}: board "
                      f"{escape(result.board or '')} ({escape(str(facts.get('machine', '?')))}, Python "
                      f"{escape(str(facts.get('python', '?')))}, MNN {escape(str(facts.get('mnn_version', '?')))})",
                      highlight=False)
    if result.guesses:
        console.print("[bold]Guessed[/] (check them in the file):")
        for guess in result.guesses:
            console.print(f"  • {escape(guess)}", highlight=False)
    console.print(f"next: harness run {escape(str(result.scenario))}", highlight=False, soft_wrap=True)
