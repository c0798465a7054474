"""The README and docs/ say only what is true of the command line and the files.

Every `harness ...` command they show names a command and options that exist (its `--help` says so), the
quick-start scenario and inventory of the README are loaded by the real loader, the README stays a short
walk for a newcomer that starts with the two commands for a fresh machine, and every link between the pages
leads somewhere.
"""

import re
import shlex
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from harness.cli import build_parser
from harness.config.inventory import load_inventory
from harness.config.scenario import load_scenario

from .conftest import REPO

PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
COMMAND = re.compile(r"(?:^|[\s`$(/'\"])harness((?:\s+[^\s`|;&#)]+)*)")
"""`harness` and what follows it, up to a shell operator, a comment or the end of a code span."""


def code_of(page: Path) -> List[Tuple[int, str]]:
    """(line, text) of everything a reader would type: fenced and indented blocks, and inline code spans."""
    found, fence = [], False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            fence = not fence
            continue
        if fence or line.startswith("    "):
            found.append((number, line.split(" #", 1)[0]))
        else:
            found += [(number, span) for span in re.findall(r"`([^`]+)`", line)]
    return found


def shown_commands() -> List[Tuple[str, List[str]]]:
    """("page:line", argv after `harness`) of every command the pages show."""
    commands = []
    for page in PAGES:
        for number, text in code_of(page):
            for match in COMMAND.finditer(text):
                try:
                    argv = shlex.split(match.group(1))
                except ValueError:
                    argv = match.group(1).split()
                commands.append((f"{page.relative_to(REPO)}:{number}", argv))
    return commands


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def subparsers(parser) -> Dict[str, object]:
    import argparse

    return next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction)).choices


def options_of(parser) -> Dict[str, object]:
    return {option: action for action in parser._actions for option in action.option_strings}


def test_the_pages_show_commands_to_check():
    commands = shown_commands()
    shown = {argv[0] for _, argv in commands if argv and not argv[0].startswith("-")}
    assert len(commands) > 60 and {"run", "init", "boards", "farm", "nightly", "layers", "bisect", "schema"} <= shown


@pytest.mark.parametrize("where, argv", shown_commands(), ids=lambda value: value if isinstance(value, str) else "")
def test_every_command_shown_exists_with_its_options(parser, where, argv):
    """The command and every option written after `harness` are in its --help (placeholders are not checked)."""
    top = options_of(parser)
    commands = subparsers(parser)
    tokens = [token.strip("[]") for token in argv]
    index = 0
    while index < len(tokens) and tokens[index].startswith("-"):  # options before the command: --inventory X, -v
        option = tokens[index].split("=")[0]
        assert option in top, f"{where}: `harness {' '.join(argv)}`: {option} is not an option of harness"
        index += 1 + (top[option].nargs != 0 and "=" not in tokens[index])
    if index == len(tokens):
        return  # `harness --version`
    name = tokens[index]
    assert name in commands, f"{where}: `harness {' '.join(argv)}`: there is no command {name!r}"
    command = commands[name]
    help_text = command.format_help()
    positional = [action for action in command._actions if not action.option_strings and action.dest != "help"]
    words = [token for token in tokens[index + 1:] if not token.startswith("-")]
    if positional and positional[0].choices and words and re.fullmatch(r"[a-z]+", words[0]):
        for word in words[0].split("|"):
            assert word in positional[0].choices, f"{where}: `harness {name} {word}`: not one of {positional[0].choices}"
    for token in tokens[index + 1:]:
        option = token.split("=")[0]
        if re.fullmatch(r"--?[A-Za-z][\w-]*", option):
            assert option in options_of(command), f"{where}: `harness {' '.join(argv)}`: {option} is not an option"
            assert option in help_text, f"{where}: {option} is missing from `harness {name} --help`"


def readme_block(title: str) -> str:
    """The ```yaml block of the README whose first line is `# TITLE`."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    chosen = [block for block in blocks if block.splitlines()[0] == f"# {title}"]
    assert len(chosen) == 1, f"the README has no ```yaml block starting with `# {title}`"
    return chosen[0]


def test_the_quick_start_scenario_and_inventory_load_with_the_real_loader(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    (tmp_path / "home" / ".ssh" / "id_ed25519").write_text("a key\n")
    (tmp_path / "model.onnx").write_bytes(b"")  # the loader checks the file is there; the run reads it
    (tmp_path / "model.yaml").write_text(readme_block("model.yaml"))
    (tmp_path / "inventory.yaml").write_text(readme_block("inventory.yaml"))
    scenario = load_scenario(tmp_path / "model.yaml")
    assert scenario.model.onnx == tmp_path / "model.onnx" and scenario.outputs["logits"].kind == "class_logits"
    assert (scenario.preprocess.height, scenario.preprocess.width) == (224, 224)
    inventory = load_inventory(tmp_path / "inventory.yaml")
    board = inventory.board("rk3588")
    assert (board.kind, board.host, board.user, board.tags) == ("ssh", "192.168.1.42", "root", ("fp16",))
    assert set(scenario.targets) <= set(load_inventory(REPO / "harness" / "config" / "default_inventory.yaml").boards)


def test_the_readme_is_a_short_walk_that_starts_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 200, f"the README has {len(lines)} lines: move the detail into docs/"
    assert any(line.strip().startswith("make demo") for line in lines[:8])
    assert any(line.strip().startswith("make test") for line in lines[:8])
    steps = re.findall(r"^## (.+)$", text, re.M)
    assert steps == ["1. Set up", "2. Your model in ten lines", "3. Your board in ten lines", "4. Reading the report",
                     "5. Where to go next"]
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)", text))
    assert linked == {page.name for page in (REPO / "docs").glob("*.md")}, "every page of docs/ is linked"


def anchors_of(page: Path) -> set:
    """GitHub's anchors of a page's headings (outside code blocks)."""
    anchors, fence = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{1,6} ", line):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_leads_somewhere(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: the link {target} leads nowhere"
        if anchor:
            assert anchor in anchors_of(linked), f"{page.name}: {linked.name} has no heading #{anchor}"
