"""The first divergent layer, on a model where one known layer is made to diverge.

tiny_segnet's overflow_layer N scales conv N's output past FP16's range and
conv N+1's weights back: the same function in float32, an overflow at exactly
layer N when a board computes in FP16 (precision low on a Cortex-A76).
"""

import pytest

from harness.inventory import load_inventory
from harness.layers import find_first_divergence
from harness.scenario import load_scenario

from .conftest import scenario_text

pytestmark = pytest.mark.emulated

INVENTORY = "boards:\n  x86: {kind: local}\n  lay-a76: {kind: emulated, cpu: cortex-a76}\n"


def scenario(write_file, name, precision, overflow_layer):
    text = scenario_text(["x86", "lay-a76"], precision=precision).replace(
        "seed: 0}", f"seed: 0, overflow_layer: {overflow_layer}}}")
    return load_scenario(write_file(f"{name}.yaml", text))


@pytest.mark.parametrize("layer", [1, 2])
def test_the_known_overflowing_layer_is_found(tmp_path, write_file, emulated_boards, layer):
    emulated_boards.add("lay-a76")
    inventory = load_inventory(write_file("inventory.yaml", INVENTORY))
    report = find_first_divergence(scenario(write_file, f"l{layer}", "low", layer), inventory, "lay-a76",
                                   tmp_path, tolerance=0.05)
    assert report.error is None
    assert report.first is not None and report.first.name == f"conv{layer}.relu"
    assert report.first.exact["inf"] > 0  # FP16 overflowed there ...
    before = [row for row in report.rows if row.index < report.first.index]
    assert before and all(row.summary_error < 0.05 for row in before)  # ... and nowhere before it
    assert (report.run_dir / "tensors" / "lay-a76" / "dump.npz").is_file()  # whole tensors: only the window


def test_no_divergent_layer_at_normal_precision(tmp_path, write_file, emulated_boards):
    emulated_boards.add("lay-a76")
    inventory = load_inventory(write_file("inventory.yaml", INVENTORY))
    report = find_first_divergence(scenario(write_file, "n", "normal", 2), inventory, "lay-a76", tmp_path)
    assert report.error is None and report.first is None
    assert len(report.rows) == 5 and all(row.summary_error < 1e-3 for row in report.rows)
    assert not (report.run_dir / "tensors").exists()  # nothing to fetch whole


def test_a_failing_run_looks_for_the_layer_by_itself(tmp_path, write_file, emulated_boards, capsys):
    from harness.cli import main

    emulated_boards.add("lay-a76")
    inventory = write_file("inventory.yaml", INVENTORY)
    text = scenario_text(["x86", "lay-a76"], precision="low").replace(
        "seed: 0}", "seed: 0, overflow_layer: 2}") + "find_layer: true\n"
    code = main(["--inventory", str(inventory), "run", str(write_file("auto.yaml", text)),
                 "--reports", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 1
    assert "first divergent op: #2 conv2.relu" in out
