"""The house's rooms: no import cycle between modules, no module importing from a higher room, views that
import only the record, and the layout in docs/architecture.md naming exactly the rooms there are.

Every module under harness/ is parsed (never imported) and every import in it counts, those inside a
function too: a lazy import is still a dependency, only a later one.
"""

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("core", "config", "record", "analysis", "emulation", "execution", "views", "plans", "entry", "bench")
"""Lowest first: a module may import from its own room and the rooms before it, never from one after it.
The configuration (scenario, inventory, nightly: one schema) comes right after core; the record (the types a run
leaves, their serializer, the rules that read them) right after it: the analysis judges a run into one, and every
view renders one.
"entry" is harness/*.py itself (cli.py): the commands, which only parse arguments and call. "bench", last, is the
developer benchmark (`python -m harness.bench`): it drives the plans, and nothing imports it."""
CORE_PARTS = ("base", "clients", "build")
"""core/ in its own order: the data and contracts (base), then the services the host talks to (core/clients/),
then what the host makes (core/build/, which may use both)."""
VIEWS_READ = ("views", "record")
"""What a view may import of the harness: other views and the record. A view renders what a run left (live, or
read back by `harness report`), so it cannot reach for anything a stored run does not have."""


@dataclass(frozen=True)
class Import:
    source: str
    """The importing module ("harness.plans.run")."""
    target: str
    """The imported module ("harness.config.scenario"; a package's own name for its __init__)."""
    path: Path
    line: int
    text: str
    """The import statement as written, for the message."""


def module_name(path: Path, package_root: Path) -> str:
    parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return ROOMS[0]  # the package itself (its __version__): below everything
    if len(parts) == 2 and parts[1] not in ROOMS:
        return "entry"
    return parts[1]


def imports_of(package_root: Path) -> List[Import]:
    """Every import of one harness module by another, resolved to modules."""
    package = package_root.name
    modules = {module_name(path, package_root): path for path in package_root.rglob("*.py")}
    found = []
    for source, path in sorted(modules.items()):
        text = path.read_text()
        tree = ast.parse(text, str(path))
        lines = text.splitlines()
        own_package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = own_package.split(".")[:len(own_package.split(".")) - (node.level - 1)]
                    base_name = ".".join(base + ([node.module] if node.module else []))
                else:
                    base_name = node.module or ""
                if base_name != package and not base_name.startswith(package + "."):
                    continue
                # `from .targets import ssh` imports the module harness.execution.targets.ssh
                targets = {f"{base_name}.{alias.name}" if f"{base_name}.{alias.name}" in modules else base_name
                           for alias in node.names}
            elif isinstance(node, ast.Import):
                targets = {alias.name for alias in node.names
                           if alias.name == package or alias.name.startswith(package + ".")}
            else:
                continue
            written = lines[node.lineno - 1:node.end_lineno]
            written[-1] = written[-1][:node.end_col_offset]
            written[0] = written[0][node.col_offset:]
            statement = " ".join(written)
            for target in sorted(targets):
                found.append(Import(source, target, path.relative_to(package_root.parent), node.lineno,
                                    " ".join(statement.split())))
    return found


def core_part(module: str) -> str:
    for part in ("clients", "build"):
        if module == f"harness.core.{part}" or module.startswith(f"harness.core.{part}."):
            return part
    return "base"


def core_upward_imports(found: List[Import]) -> List[str]:
    """Imports inside core/ that break its own order (CORE_PARTS)."""
    problems = []
    for item in found:
        if room_of(item.source) != "core" or room_of(item.target) != "core" or item.target == "harness":
            continue
        low, high = core_part(item.source), core_part(item.target)
        if CORE_PARTS.index(high) > CORE_PARTS.index(low):
            problems.append(f"{_where(item)} `{item.text}` imports {item.target} (core's {high}) into core's {low}, "
                            f"which comes before it: {' < '.join(CORE_PARTS)}")
    return sorted(set(problems))


def upward_imports(found: List[Import]) -> List[str]:
    problems = []
    for item in found:
        low, high = room_of(item.source), room_of(item.target)
        for room in (low, high):
            if room not in ROOMS:
                problems.append(f"{_where(item)}: the room {room!r} is not in ROOMS; give it its place in the order")
        if low in ROOMS and high in ROOMS and ROOMS.index(high) > ROOMS.index(low):
            problems.append(f"{_where(item)} `{item.text}` imports {item.target} (room {high}) into room {low}, "
                            f"which is lower: {' < '.join(ROOMS)}")
    return sorted(set(problems))


def views_beyond_the_record(found: List[Import]) -> List[str]:
    """Imports of a view that reach past the record (VIEWS_READ)."""
    return sorted({f"{_where(item)} `{item.text}` imports {item.target} into a view: a view renders the record "
                   f"(harness.record) and imports only {' and '.join(VIEWS_READ)}"
                   for item in found if room_of(item.source) == "views" and room_of(item.target) not in VIEWS_READ})


def cycles(found: List[Import]) -> List[str]:
    """Each import cycle between modules (a strongly connected group), with the imports that close it."""
    graph: Dict[str, Set[str]] = {}
    for item in found:
        graph.setdefault(item.source, set()).add(item.target)
        graph.setdefault(item.target, set())
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    groups: List[List[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    problems = []
    for group in groups:
        inside = [item for item in found if item.source in group and item.target in group]
        problems.append("import cycle between " + ", ".join(group) + ":\n" +
                        "\n".join(f"    {_where(item)} `{item.text}`" for item in inside))
    return problems


def _where(item: Import) -> str:
    return f"{item.path}:{item.line}"


def layout_tree(page: str) -> Optional[str]:
    """The ```harness/ ...``` tree of docs/architecture.md ("How it works")."""
    block = re.search(r"```\n(harness/\n.*?)```", page, re.S)
    return block.group(1) if block else None


def tree_rooms(tree: str) -> Set[str]:
    """The rooms a tree names: its `  ROOM/` lines (a room's own packages, deeper in, are not rooms)."""
    return set(re.findall(r"^  (\w+)/", tree, re.M))


@pytest.fixture(scope="module")
def harness_imports() -> List[Import]:
    return imports_of(ROOT / "harness")


def test_no_module_imports_from_a_higher_room(harness_imports):
    problems = upward_imports(harness_imports)
    assert not problems, "imports from a higher room:\n" + "\n".join(problems)


def test_core_keeps_its_own_order(harness_imports):
    problems = core_upward_imports(harness_imports)
    assert not problems, "imports that break core's order:\n" + "\n".join(problems)


def test_views_import_only_the_record(harness_imports):
    problems = views_beyond_the_record(harness_imports)
    assert not problems, "views that reach past the record:\n" + "\n".join(problems)


def test_no_import_cycle_between_modules(harness_imports):
    problems = cycles(harness_imports)
    assert not problems, "\n".join(problems)


def test_every_directory_is_a_room_and_every_room_a_directory():
    directories = {path.name for path in (ROOT / "harness").iterdir()
                   if path.is_dir() and (path / "__init__.py").is_file()}
    assert directories == set(ROOMS) - {"entry"}


def test_the_documented_layout_names_the_rooms_there_are_and_their_modules():
    tree = layout_tree((ROOT / "docs" / "architecture.md").read_text())
    assert tree is not None, "docs/architecture.md has no ```harness/ ...``` tree"
    rooms = {path for path in (ROOT / "harness").iterdir() if path.is_dir() and (path / "__init__.py").is_file()}
    named = tree_rooms(tree)
    directories = {room.name for room in rooms}
    assert named == directories, (f"the documented tree names {sorted(named - directories)} that do not exist "
                                  f"and leaves out {sorted(directories - named)}")
    modules = {path.stem if path.name != "__init__.py" else path.parent.name
               for room in rooms for path in room.rglob("*.py")} - directories
    modules |= {path.name for path in (ROOT / "harness").glob("*.py")} - {"__init__.py"}
    missing = sorted(name for name in modules if not re.search(rf"\b{re.escape(name)}\b", tree))
    assert not missing, f"the documented tree does not name {missing}"


@pytest.fixture
def house(tmp_path):
    """A small house of the same shape: core, execution, plans and the entry's cli."""
    package = tmp_path / "harness"
    files = {
        "__init__.py": "__version__ = '0'\n",
        "cli.py": "from .plans.run import go\n",
        "core/__init__.py": "",
        "config/__init__.py": "",
        "config/scenario.py": "X = 1\n",
        "execution/__init__.py": "",
        "execution/targets/__init__.py": "from ...config.scenario import X\n",
        "execution/targets/ssh.py": "from . import remote\n",
        "execution/targets/remote.py": "",
        "plans/__init__.py": "",
        "plans/run.py": "from .. import __version__\nfrom ..execution.targets import ssh\n\ndef go():\n    pass\n",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


def test_the_checks_pass_a_house_in_order(house):
    found = imports_of(house)
    assert {(i.source, i.target) for i in found} >= {("harness.plans.run", "harness.execution.targets.ssh"),
                                                      ("harness.execution.targets.ssh",
                                                       "harness.execution.targets.remote")}
    assert upward_imports(found) == [] and cycles(found) == []


def test_a_plan_importing_the_cli_is_named_with_its_line(house):
    (house / "plans" / "run.py").write_text("def go():\n    from ..cli import main  # a lazy import counts too\n")
    problems = upward_imports(imports_of(house))
    assert len(problems) == 1
    assert "plans/run.py:2 `from ..cli import main` imports harness.cli (room entry) into room plans" in problems[0]
    found = cycles(imports_of(house))
    assert len(found) == 1 and "harness.cli, harness.plans.run" in found[0]


def test_a_cycle_inside_one_room_is_named(house):
    (house / "execution" / "targets" / "remote.py").write_text("from .ssh import something\n")
    found = cycles(imports_of(house))
    assert len(found) == 1 and found[0].startswith(
        "import cycle between harness.execution.targets.remote, harness.execution.targets.ssh")
    assert "ssh.py:1 `from . import remote`" in found[0] and "remote.py:1 `from .ssh import something`" in found[0]


def test_a_view_reaching_past_the_record_is_named(house):
    (house / "record").mkdir()
    (house / "record" / "__init__.py").write_text("")
    (house / "record" / "run.py").write_text("class RunRecord:\n    pass\n")
    (house / "views").mkdir()
    (house / "views" / "__init__.py").write_text("")
    (house / "views" / "terminal.py").write_text("from ..record.run import RunRecord\n\n"
                                                 "def render():\n    from ..config.scenario import X\n")
    found = imports_of(house)
    assert upward_imports(found) == []  # config is below views: only the views' own rule catches it
    problems = views_beyond_the_record(found)
    assert len(problems) == 1 and "views/terminal.py:4 `from ..config.scenario import X` imports " \
        "harness.config.scenario into a view" in problems[0]


def test_a_core_contract_importing_what_the_host_builds_is_named(house):
    (house / "core" / "build").mkdir()
    (house / "core" / "build" / "__init__.py").write_text("")
    (house / "core" / "build" / "model.py").write_text("Y = 1\n")
    (house / "core" / "job.py").write_text("from .build.model import Y\n")
    problems = core_upward_imports(imports_of(house))
    assert len(problems) == 1 and "core/job.py:1 `from .build.model import Y` imports harness.core.build.model " \
        "(core's build) into core's base" in problems[0]
