"""`harness init`'s view: the files written, the board's facts (and what its first run brings it), and every
guess the scenario made (from the plan's record, InitResult.as_dict: the same data `--json` prints)."""

from rich.console import Console
from rich.markup import escape


def render_init(written: dict, console: Console) -> None:
    console.print(f"[green]wrote[/] {escape(written['scenario'])}  (from the {written['format']} model "
                  f"{escape(written['model'])})", highlight=False)
    if written.get("inventory"):
        facts = written.get("board_facts") or {}
        brought = written.get("provisioning") or {}
        said = f"{facts.get('machine', '?')}, Python {facts.get('python', '?')}"
        said += f", {brought['libc']}: the harness brings MNN" if brought else f", MNN {facts.get('mnn_version', '?')}"
        console.print(f"[green]{written['inventory_action']}[/] {escape(written['inventory'])}: board "
                      f"{escape(written['board'])} ({escape(said)})", highlight=False)
        if brought:
            console.print(f"first run: {escape(first_run_text(brought))}", highlight=False)
    if written.get("guesses"):
        console.print("[bold]Guessed[/] (check them in the file):")
        for guess in written["guesses"]:
            console.print(f"  • {escape(guess)}", highlight=False)
    console.print(f"next: harness run {escape(written['scenario'])}", highlight=False, soft_wrap=True)


def first_run_text(brought: dict) -> str:
    """What the first run sends to a provisioned board, as far as this host knows it now."""
    if brought.get("on_board"):
        return (f"MNN {brought['mnn_version']} is on the board already (an earlier run brought it into its "
                "workdir): no wheels to send")
    wheels = f"the MNN {brought['mnn_version']} and numpy wheels for Python {'.'.join(brought['python'].split('.')[:2])} " \
             f"on {brought['machine']}"
    if brought.get("wheels_mb") is not None:
        return (f"sends {wheels} ({brought['wheels_mb']:.0f} MB, numpy {brought['numpy_version']}, cached on this "
                "host) and unpacks them under the board's workdir; later runs send neither")
    return (f"fetches {wheels} into this host's cache (once, then offline), sends them and unpacks them under the "
            "board's workdir; later runs send neither")
