"""What ships with the harness besides its code: the agent's sources, the example scenarios, the default
inventory, the JSON Schemas of the configuration files.

A wheel (`pip install mnn-harness`, pipx) carries them as package data of
`harness`: pyproject.toml maps the repository's agent/ to harness/agent,
scenarios/ to harness/scenarios and schemas/ to harness/schemas, so the
installed tree has the very files of the clone, in the same layout (an
example's `$schema=../schemas/...` line holds in both). A clone (or an editable install, whose package
is the clone's harness/) has them beside harness/ at the top of the
repository. Both are found here, the installed place first, through
importlib.resources, and nowhere else: every other module asks this one.
"""

import importlib
import importlib.resources
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import List

from .errors import ConfigError, SetupError

PACKAGE = __package__.split(".")[0]
DEFAULT_INVENTORY_NAME = "default_inventory.yaml"
EXAMPLE_PREFIX = "example:"
"""`harness run example:quick` runs a shipped example scenario, from any directory."""


class ShippedFileError(SetupError):
    """A file that ships with the harness is missing (a broken install or checkout)."""


def _package_dir() -> Path:
    root = importlib.resources.files(PACKAGE)
    path = Path(str(root))
    if not path.is_dir():  # a zip import: the boards need real files to bundle and send
        raise ShippedFileError(f"the harness is imported from {root}, not from a directory: install it "
                               "with pip or pipx (unpacked), or run it from a clone")
    return path


def _find(name: str) -> Path:
    """The directory `name` (agent, scenarios): in the installed package, else at the top of the clone."""
    package = _package_dir()
    for candidate in (package / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise ShippedFileError(f"the harness's {name}/ is neither in {package} (an installed wheel) nor in "
                           f"{package.parent} (a clone); reinstall the harness, or use a complete checkout")


def agent_dir() -> Path:
    """The agent's sources: mnn_agent.py and the package mnnagent/."""
    return _find("agent")


AGENT_PACKAGE = "mnnagent"


def agent_module(name: str) -> ModuleType:
    """A module of the agent's own package (mnnagent.NAME), imported from where the agent ships.

    The agent imports nothing of the harness. The harness runs the agent's code where it must do what the agent
    does, so that the two cannot drift apart: the source model's target walks samples and streams with the
    agent's walk, and the contract test reads the settings the agent knows. None of it imports MNN (the agent
    imports MNN only when a job runs), so nothing prints on this process's stdout.
    """
    package = sys.modules.get(AGENT_PACKAGE)
    if package is None:
        directory = agent_dir() / AGENT_PACKAGE
        spec = importlib.util.spec_from_file_location(AGENT_PACKAGE, directory / "__init__.py",
                                                      submodule_search_locations=[str(directory)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[AGENT_PACKAGE] = package
        try:
            spec.loader.exec_module(package)
        except BaseException:
            del sys.modules[AGENT_PACKAGE]
            raise
    return importlib.import_module(f"{AGENT_PACKAGE}.{name}")


def scenarios_dir() -> Path:
    """The example scenarios and the scripts that build their models."""
    return _find("scenarios")


def schemas_dir() -> Path:
    """The JSON Schemas of the configuration files (config/schema.py writes them)."""
    return _find("schemas")


def schema_path(kind: str) -> Path:
    """The JSON Schema of one kind of file: scenario, inventory or nightly."""
    return schemas_dir() / f"{kind}.schema.json"


def default_inventory() -> Path:
    """The inventory used when nothing names another: this machine and one emulated Cortex-A76."""
    return Path(str(importlib.resources.files(f"{PACKAGE}.config").joinpath(DEFAULT_INVENTORY_NAME)))


def examples() -> List[str]:
    """The names of the shipped example scenarios (quick, segformer, ...)."""
    return sorted(path.stem for path in scenarios_dir().glob("*.yaml"))


def scenario_path(text: str) -> Path:
    """A scenario argument as a path: `example:NAME` is a shipped example, anything else a file path as given."""
    if not text.startswith(EXAMPLE_PREFIX):
        path = Path(text)
        if not path.exists() and path.parent == Path(".") and path.stem in examples():
            # `harness run quick.yaml` from an empty directory: the user means the example, and says so next time.
            raise ConfigError(path, None, "no such file here", f"run the shipped example with `harness run "
                              f"{EXAMPLE_PREFIX}{path.stem}`, or copy it from {scenarios_dir() / (path.stem + '.yaml')}")
        return path
    name = text[len(EXAMPLE_PREFIX):].removesuffix(".yaml")
    path = scenarios_dir() / f"{name}.yaml"
    if "/" in name or not path.is_file():
        raise ConfigError(text, None, f"there is no example scenario {name!r}",
                          f"use one of {', '.join(EXAMPLE_PREFIX + n for n in examples())}, or give a file")
    return path
