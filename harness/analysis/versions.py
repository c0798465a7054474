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

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import numpy as np

from ..core.results import TargetResult
from ..config.scenario import Scenario
from .compare import judge


def versions_differ(board_version: Optional[str], host_version: Optional[str]) -> bool:
    """Both versions are known and are not the same."""
    return bool(board_version and host_version and board_version != host_version)


@dataclass
class VersionCheck:
    """A board whose MNN version is not the host's, and what the run says about it."""

    board: str
    board_version: str
    host_version: str
    peer: Optional[str] = None
    """A board with the host's version on the same CPU whose outputs were compared with this board's (None: no
    such board ran, or this board produced no outputs)."""
    identical: bool = False
    """The peer's outputs are bit for bit this board's."""
    agree: bool = False
    """The peer's outputs are within the scenario's tolerance of this board's (identical included)."""
    evidence: str = ""
    """One sentence: what the peer shows, or that no board could tell."""

    @property
    def blamed(self) -> bool:
        """The version can explain a difference: no peer agrees with this board."""
        return not self.agree

    def sentence(self) -> str:
        """"MNN 3.4.1 on the board, 3.6.1 on the host: ..." for the views' notes."""
        versions = f"MNN {self.board_version} on the board, {self.host_version} on the host"
        if self.agree:
            return f"{versions}: not what makes a difference here: {self.evidence}"
        if self.peer:
            return f"{versions}, and it changes the outputs: {self.evidence}"
        return f"{versions}: a version mismatch can explain a difference ({self.evidence})"

    def as_dict(self) -> dict:
        data = asdict(self)
        data["blamed"] = self.blamed
        return data


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
    check.evidence = f"{who} and gives other outputs: {first.output} {first.reasons[0]} against {check.board}'s"


def version_check_of(report, name: str) -> Optional[VersionCheck]:
    """The run's check of a board's version (None when its version is the host's or unknown).

    A report judged without one (made by hand, or from before the checks) gets the plain comparison of the
    two versions, with no peer.
    """
    checks = getattr(report, "mnn_versions", None)
    if checks is not None:
        return checks.get(name)
    board = report.results[name].facts.get("mnn_version")
    host = report.results[report.reference].facts.get("mnn_version")
    if not versions_differ(board, host):
        return None
    return VersionCheck(name, str(board), str(host),
                        evidence=f"no board with MNN {host} on the same CPU ran here to tell")
