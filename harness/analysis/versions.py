"""Whether a board's MNN version can explain what it shows: the one rule, for the likely causes and every view.

A board whose MNN is not the host's is a suspect, not a cause. The same run
often holds the evidence that settles it: another board with the host's
version on the same CPU (the same machine and CPU features, which are what
MNN's kernels choose by) and the same settings. If that board's outputs are
identical to the suspect's, or agree within the scenario's tolerance, the
version changes nothing here and is not blamed ("farm-a76 runs 3.6.1 on the
same CPU and gives identical outputs"); if they differ, the version is the
difference, with the numbers; without such a board the version stays a
possible cause, and the sentence says that nothing here could tell.
"""

from typing import Dict, List

import numpy as np

from ..core.results import TargetResult
from ..config.scenario import Scenario
from ..record.run import VersionCheck, versions_differ
from .compare import judge


def same_cpu(a: TargetResult, b: TargetResult) -> bool:
    """The same machine and the same CPU features: MNN picks the same kernels on both."""
    return (a.facts.get("machine") == b.facts.get("machine")
            and sorted(a.facts.get("cpu_features") or []) == sorted(b.facts.get("cpu_features") or [])
            and bool(a.facts.get("machine")))


def version_checks(scenario: Scenario, results: Dict[str, TargetResult], reference: str,
                   outputs: List[str]) -> Dict[str, VersionCheck]:
    """Every board (the reference aside) whose MNN version differs from the reference's, checked against a board
    with the reference's version on the same CPU when one ran."""
    host = results[reference].facts.get("mnn_version") if reference in results else None
    checks: Dict[str, VersionCheck] = {}
    for name, result in results.items():
        version = result.facts.get("mnn_version")
        if name == reference or not versions_differ(version, host):
            continue
        check = VersionCheck(name, str(version), str(host),
                             evidence=f"no board with MNN {host} on the same CPU ran here to tell" if result.ok
                             else f"{name} produced no outputs to compare")
        peers = sorted(other for other, peer in results.items()
                       if other not in (name, reference) and peer.ok and result.ok
                       and peer.facts.get("mnn_version") == host and same_cpu(result, peer))
        if peers:
            settle(check, peers[0], scenario, result, results[peers[0]], outputs)
        checks[name] = check
    return checks


def settle(check: VersionCheck, peer_name: str, scenario: Scenario, board: TargetResult, peer: TargetResult,
           outputs: List[str]) -> None:
    """Compare the suspect's outputs with the peer's, output by output, by the scenario's own limits."""
    check.peer = peer_name
    compared = [name for name in outputs if name in board.outputs and name in peer.outputs]
    if not compared:
        check.peer, check.evidence = None, f"{peer_name} runs {check.host_version} on the same CPU, but no output " \
                                           "of the two can be compared"
        return
    identical = all(board.outputs[name].shape == peer.outputs[name].shape
                    and np.array_equal(board.outputs[name], peer.outputs[name], equal_nan=True) for name in compared)
    who = f"{peer_name} runs {check.host_version} on the same CPU"
    if identical:
        check.identical = check.agree = True
        check.evidence = f"{who} and gives identical outputs"
        return
    verdicts = [judge(name, board.outputs[name], peer.outputs[name], scenario.output_spec(name),
                      reference_name=peer_name) for name in compared]
    broken = [verdict for verdict in verdicts if not verdict.passed]
    if not broken:
        check.agree = True
        largest = max((verdict.metrics.get("max_abs") or 0.0) for verdict in verdicts)
        check.evidence = f"{who} and its outputs agree with {check.board}'s within tolerance (max abs {largest:.2g})"
        return
    first = broken[0]
    check.evidence = (f"{who} and gives other outputs: {first.output} {first.failures[0].sentence} against "
                      f"{check.board}'s")
