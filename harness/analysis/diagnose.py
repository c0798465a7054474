"""From numbers to a diagnosis: which classic cause of "fine on x86, wrong on ARM" a run shows.

Each finding names its cause with the words users search for, the board it
concerns and the evidence. The rules read only the RunReport: settings, the
board's facts (CPU features, MNN version) and the comparisons.
"""

import functools
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..core.backend import is_precision_problem
from .nonfinite import FP16_MAX
from .versions import version_check_of

CAUSES = {
    "reference": "missing reference",
    "preprocessing": "preprocessing drift",
    "converter": "converter options",
    "precision": "FP16 / precision setting",
    "fp16-overflow": "FP16 overflow",
    "non-finite": "NaN/Inf outputs",
    "tensor-access": "wrong tensor access",
    "mnn-version": "MNN version mismatch",
    "argmax-flips": "ArgMax flips",
    "mask-changes": "mask changes at the threshold",
    "backend": "backend fallback",
    "platform": "platform numerics",
}
FP16_FEATURES = {"asimdhp", "fphp"}
LOW_PRECISION_KERNELS = ("Sigmoid", "SiLU")
"""The ops whose kernel MNN's CPU backend swaps at precision low on every ARM CPU, FP16 or not (MNN 3.6.1,
source/backend/cpu/CPUUnary.cpp selectForFloat: MNNSigmoidLowp and MNNSiLuLowp, whose NEON code takes
1/(1+e^-x) from vrecpeq_f32, a reciprocal estimate good to about 8 bits; the same functions serve the GRU
(CPURNNSequenceGRU), unary ops fused into a Raster (CPURaster) and Mul+SiLU (CPUBinary)). The x86 build has no
NEON: there they divide exactly, so `low` changes nothing on x86."""
ARM_MACHINES = ("aarch64", "arm64")
ARITHMETIC_EPS = {"FP32": 2.0 ** -23, "FP16": 2.0 ** -10, "BF16": 2.0 ** -7}
"""Machine epsilon of each arithmetic MNN's CPU kernels compute in."""
LABEL_METRICS = ("argmax_agreement", "miou", "hard_flips")


@dataclass
class Finding:
    cause: str
    """A key of CAUSES."""
    board: Optional[str]
    """None when it concerns the model itself (the conversion)."""
    message: str

    @property
    def title(self) -> str:
        return CAUSES[self.cause]


def numbers_passed(comparison) -> bool:
    """The outputs agree (a failed backend setting is a problem of its own, not of the numbers)."""
    return comparison.error is None and all(output.passed for output in comparison.outputs)


def attribute(conversion_passed: Optional[bool], platform_passed: bool, io_host: bool = False,
              requirement_failed: bool = False, backend_failed: bool = False) -> str:
    """Where a board's difference from the source model comes from.

    conversion: MNN on x86 already differs from the source; platform: the
    board differs from x86; both. io (io: host): the application's tensor
    access, not the platform, makes the board differ; "conversion+io" with a
    conversion that differs too. When the numbers match and only the setting
    fails the board: backend (it ran another backend than asked), version
    (require_same_mnn).
    """
    if not platform_passed and io_host:
        return "conversion+io" if conversion_passed is False else "io"
    if platform_passed and backend_failed:
        return "backend"
    if conversion_passed is None:
        return "platform" if not platform_passed else ("version" if requirement_failed else "none")
    if not conversion_passed and not platform_passed:
        return "both"
    if not conversion_passed:
        return "conversion"
    if not platform_passed:
        return "platform"
    return "version" if requirement_failed else "none"


@functools.lru_cache(maxsize=32)
def source_op_types(path: str, source_format: str = "ONNX") -> Optional[frozenset]:
    """The op types of an ONNX graph or a TFLite model (None when it cannot be read): which converter traps
    apply."""
    try:
        if source_format == "TFLITE":
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

            no_delegate = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES  # quiet: the delegate prints on stderr
            ops = Interpreter(model_path=path, experimental_op_resolver_type=no_delegate)._get_ops_details()
            return frozenset(str(op["op_name"]) for op in ops)
        import onnx

        return frozenset(node.op_type for node in onnx.load(path, load_external_data=False).graph.node)
    except Exception:  # noqa: BLE001  a hint is optional; a diagnosis must not fail for it
        return None


def converter_hints(converter_args, source_path=None, source_format: str = "ONNX") -> List[str]:
    args = list(converter_args)
    hints = []
    types = None if source_path is None else source_op_types(str(source_path), source_format)
    has_gelu = types is None or bool({"Erf", "Gelu", "GELU"} & types)
    exact_gelu = "--useGeluApproximation" in args and \
        args[args.index("--useGeluApproximation") + 1:][:1] == ["0"]
    if has_gelu and not exact_gelu:
        hints.append("MNN's converter approximates GELU unless given `--useGeluApproximation 0`")
    if "--fp16" in args:
        hints.append("`--fp16` stores the weights in half precision")
    if "--weightQuantBits" in args:
        hints.append("`--weightQuantBits` quantizes the weights")
    return hints


def arithmetic(precision: str, cpu_features) -> Tuple[str, float]:
    """The arithmetic a board computes in at a precision setting, and its epsilon.

    precision low computes in FP16 only where the CPU has FP16 arithmetic
    (ARMv8.2 asimdhp/fphp); the x86 wheel and older ARM cores ignore it.
    low_bf16 computes in BF16 where the CPU has bf16.
    """
    features = set(cpu_features or ())
    if precision == "low" and features & FP16_FEATURES:
        return "FP16", ARITHMETIC_EPS["FP16"]
    if precision == "low_bf16" and "bf16" in features:
        return "BF16", ARITHMETIC_EPS["BF16"]
    return "FP32", ARITHMETIC_EPS["FP32"]


def compared(comparison) -> Optional[bool]:
    """Whether the numbers of a comparison agree; None when there were no numbers to compare (a side did not
    run): no cause may be inferred from a comparison that did not happen."""
    if comparison is None or comparison.error is not None:
        return None
    return numbers_passed(comparison)


def missing_reference(report) -> Optional[Finding]:
    """The source model's runtime did not run it: which runtime, why, and that nothing was compared."""
    conversion = getattr(report, "conversion", None)
    source = getattr(report, "source", None)
    if conversion is None or conversion.error is None or source is None or source.ok:
        return None
    runtime = source.facts.get("runtime") or conversion.reference or "the source runtime"
    why, _, fix = (source.error or "no reason given").partition("\n  fix: ")
    return Finding("reference", None, f"the source model did not run on {runtime} ({why.strip()}), so MNN on x86 "
                   "was not compared with it: the conversion is neither confirmed nor blamed, and no cause is "
                   "inferred from that comparison. "
                   + (f"Fix: {fix.strip()}" if fix else "Fix: check the source model and its runtime, or set "
                      "`source_reference: false` (the boards are still compared with x86)"))


def is_arm(machine: Optional[str]) -> bool:
    return bool(machine) and (machine in ARM_MACHINES or machine.startswith("arm"))


def low_precision_message(name: str, features, machine: Optional[str]) -> Optional[str]:
    """What precision low changes on this board, from MNN's source; None where it changes nothing (x86)."""
    if not is_arm(machine) and not (machine is None and "asimd" in set(features)):  # NEON: an ARM CPU
        return None
    kernels = (f"MNN's CPU backend picks approximate kernels at precision low on every ARM CPU: "
               f"{' and '.join(LOW_PRECISION_KERNELS)} take MNNSigmoidLowp / MNNSiLuLowp (a reciprocal estimate "
               "good to about 8 bits, also inside GRUs and fused ops)")
    fp16 = sorted(set(features) & FP16_FEATURES)
    if fp16:
        return (f"precision: low computes in FP16 on {name} ({', '.join(fp16)}), and {kernels}; the x86 wheel "
                "ignores low. Use precision: normal where accuracy matters")
    return (f"precision: low on {name}: its CPU has no FP16 arithmetic, so it computes in FP32, but {kernels}; the "
            "x86 wheel computes them exactly. Use precision: normal where accuracy matters (`harness layers` "
            "shows which ops introduce the error)")


def diagnose(report) -> List[Finding]:
    findings: List[Finding] = []
    conversion = getattr(report, "conversion", None)
    missing = missing_reference(report)
    if missing is not None:
        findings.append(missing)
    if compared(conversion) is False:
        reasons = "; ".join(f"{o.output}: {o.reasons[0]}" for o in conversion.outputs if not o.passed) \
            or conversion.error or ""
        hints = converter_hints(report.model.converter_args, getattr(report.model, "source_path", None),
                                getattr(report.model, "source_format", None) or "ONNX")
        findings.append(Finding("converter", None,
                                f"MNN on x86 already differs from the source model ({reasons}): the conversion "
                                f"changed it. Converter options: {' '.join(report.model.converter_args) or 'none'}."
                                + (" " + "; ".join(hints) + "." if hints else "")))
    for name, parity in (getattr(report, "parity", None) or {}).items():
        if parity.passed:
            continue
        detail = parity.error or (f"its {parity.backend} preprocessing differs from the host's by "
                                  f"{parity.metrics['max_abs']:.3g} in the input tensor: {parity.hint}")
        findings.append(Finding("preprocessing", name, detail + ". The inference comparison used the host's "
                                "tensors, so this drift comes on top of it"))
    settings = report.scenario.run
    reference = report.results[report.reference]
    for name, problem in (getattr(report, "backend_failures", None) or {}).items():
        findings.append(Finding("precision" if is_precision_problem(problem) else "backend", name, problem))
    for name, comparison in report.comparisons.items():
        if comparison.passed or comparison.error:
            continue
        facts = report.results[name].facts
        features = set(facts.get("cpu_features") or [])
        board_mnn, host_mnn = facts.get("mnn_version"), reference.facts.get("mnn_version")
        arithmetic_used = arithmetic(settings.precision, features)[0]
        if numbers_passed(comparison):
            if not getattr(comparison, "failed_requirements", None):
                continue  # only its backend setting failed: named above
            # Only a requirement fails it (require_same_mnn): the numbers themselves match.
            findings.append(Finding("mnn-version", name, f"MNN {board_mnn} on {name}, {host_mnn} on the host: its "
                                    "outputs match the host's within tolerance, and the scenario's "
                                    "require_same_mnn: true fails it for the version alone"))
            continue
        named = False
        if settings.io == "host":  # first: it is the app's bug; FP16 below only makes it show
            findings.append(Finding("tensor-access", name,
                                    "io: host reads the session tensor's own buffer (getNumpyData on the session "
                                    "output) instead of copying to a host tensor (copyToHostTensor): on this "
                                    "board that buffer is not float32 in NCHW order"
                                    + (" (precision low: it holds FP16)" if settings.precision == "low" else "")
                                    + nonfinite_read(comparison)))
            named = True
        overflow = []
        if settings.io != "host":
            for finding in nonfinite_findings(name, comparison, report.reference, settings.precision,
                                              arithmetic_used, features):
                findings.append(finding)
                overflow += [finding] if finding.cause == "fp16-overflow" else []
                named = True
        # An FP16 overflow already names the setting, the arithmetic and the fix; NaN/Inf explained otherwise
        # leave the precision setting a cause only of what else fails.
        beyond_nonfinite = any(len(o.reasons) > (1 if getattr(o, "nonfinite", None) is not None else 0)
                               for o in comparison.outputs if not o.passed)
        low = low_precision_message(name, features, facts.get("machine")) if settings.precision == "low" else None
        if low and not overflow and beyond_nonfinite:
            findings.append(Finding("precision", name, low))
            named = True
        if arithmetic(settings.precision, features)[0] == "BF16":
            findings.append(Finding("precision", name, f"precision: low_bf16 computes in BF16 on {name}"))
            named = True
        check = version_check_of(report, name)
        if check is not None and check.blamed:
            why = check.evidence if check.peer else (f"kernels and the converter's graph differ between versions "
                                                     f"({check.evidence})")
            findings.append(Finding("mnn-version", name, f"MNN {board_mnn} on {name}, {host_mnn} on the host: {why}"))
            named = True
        for output in comparison.outputs:
            failed = {reason.split(" ")[0] for reason in output.reasons}
            if output.passed or not failed <= set(LABEL_METRICS):
                continue
            kind = report.scenario.output_spec(output.output).kind
            if kind == "class_logits":  # an argmax only exists where there are class scores
                findings.append(Finding("argmax-flips", name, argmax_flips(output)))
                named = True
            elif kind == "probability_map":
                findings.append(Finding("mask-changes", name,
                                        mask_changes(output, report.scenario.output_spec(output.output).threshold)))
                named = True
        if not named:
            findings.append(Finding("platform", name,
                                    f"{name} differs from x86 with the same model bytes, inputs, MNN version and "
                                    "settings: the platform's kernels (SIMD width, reduction order, threads)"))
    return findings


def argmax_flips(output) -> str:
    m = output.metrics
    flips = (m.get("benign_flips") or 0.0) + (m.get("hard_flips") or 0.0)
    benign = (m.get("benign_flips") or 0.0) / flips if flips else 0.0
    return (f"{output.output}: {flips:.3%} of positions change label, {benign:.0%} of them near-ties (benign "
            f"flips), while the scores moved by at most {m.get('max_abs', 0):.2g}: ArgMax turns small differences "
            "into visible ones")


def mask_changes(output, threshold: float) -> str:
    """How many pixels of a probability map's mask changed side of the threshold, and where: at the edges of
    x86's mask (values near the threshold tipped over) or away from them (regions that appear or vanish)."""
    m = output.metrics
    changed, area = int(m.get("mask_changed") or 0), int(m.get("mask_area") or 0)
    at_edge = (m.get("mask_changed_at_edge") or 0) / changed if changed else 0.0
    text = (f"{output.output}: {changed:,} of {area:,} pixels ({changed / area if area else 0.0:.3%}) are on the "
            f"other side of the threshold {threshold:g}: {int(m.get('mask_added') or 0):,} joined x86's mask of "
            f"{int(m.get('mask_size') or 0):,} pixels and {int(m.get('mask_removed') or 0):,} left it; "
            f"{at_edge:.0%} of them next to its edges")
    moved = f"{m.get('max_abs', 0):.2g}"
    if at_edge >= 0.5:
        return (text + f". The values moved by at most {moved}: the threshold turns small differences near it "
                "into visible ones along the mask's outline")
    return (text + f", the rest away from them: whole regions appear or vanish, the values themselves differ "
            f"(by up to {moved})")


def nonfinite_findings(name: str, comparison, reference: str, precision: str, arithmetic_used: str,
                       features) -> List[Finding]:
    """What fits a board's NaN/Inf outputs, one finding per cause: a NaN the reference makes too, an FP16
    overflow (at low on a CPU with FP16 arithmetic), else a NaN/Inf of the board's own kernels."""
    made_by_model, overflowed, own, reference_only = [], [], [], []
    for output in comparison.outputs:
        nonfinite = getattr(output, "nonfinite", None)
        if nonfinite is not None and nonfinite.reference_only:
            reference_only.append(f"{output.output}: {nonfinite.reference_only}")
        if nonfinite is None or not nonfinite.count:
            continue
        counts = f"{output.output}: {nonfinite.counts_text()}"
        if nonfinite.reference_nonfinite == nonfinite.count:
            made_by_model.append(counts)
        elif nonfinite.reference_max is None:
            own.append(counts)
        else:
            (overflowed if arithmetic_used == "FP16" else own).append((counts, nonfinite.reference_max))
    found = []
    if reference_only:
        found.append(Finding("non-finite", name, f"{reference} holds NaN/Inf where {name} has numbers "
                             f"({'; '.join(reference_only)} values): the reference's own output is broken there, "
                             f"not {name}'s; check the inputs and the conversion"))
    if made_by_model:
        found.append(Finding("non-finite", name, f"{'; '.join(made_by_model)} on {name}, and {reference} has NaN/Inf "
                             "at the same positions: the model makes them there too, not the board; check the "
                             "inputs and the model (the conversion check shows whether the source model does)"))
    if overflowed:
        fp16 = f"precision: low computes in FP16 on {name} ({', '.join(sorted(set(features) & FP16_FEATURES))})"
        shown = "; ".join(f"{counts} where {reference} has up to {largest:.2g}" for counts, largest in overflowed)
        if max(largest for _, largest in overflowed) > FP16_MAX:
            why = f"beyond FP16's largest value, 65,504: {fp16}, and those values overflow"
        else:
            why = (f"within FP16's range: {fp16}, and most likely a value inside the net went beyond 65,504 and the "
                   "Inf spread")
        found.append(Finding("fp16-overflow", name, f"{shown}, {why}. Use precision: normal for this model, or keep "
                             f"its activations within FP16's range; `harness layers --board {name} --precision low` "
                             "names the op that overflows"))
    if own:
        shown = "; ".join(counts if isinstance(counts, str) else f"{counts[0]} where {reference} has up to "
                          f"{counts[1]:.2g}" for counts in own)
        found.append(Finding("non-finite", name, f"{shown}, at precision: {precision} ({arithmetic_used}): an "
                             f"overflow, a division by zero or a log of zero in {name}'s kernels; `harness layers "
                             f"--board {name}` names the first op that makes them"))
    return found


def nonfinite_read(comparison) -> str:
    """io: host: the NaN/Inf an output holds are what the session's buffer held, read as float32."""
    counts = [f"{o.output}: {o.nonfinite.counts_text()}" for o in comparison.outputs
              if getattr(o, "nonfinite", None) is not None and o.nonfinite.count]
    if not counts:
        return ""
    return (f"; its NaN/Inf values ({'; '.join(counts)}) are that buffer's bytes (uninitialised, or FP16 halves) "
            "read as float32, not the model's values")


def attributions(report) -> Dict[str, str]:
    conversion_passed = compared(getattr(report, "conversion", None))
    io_host = getattr(report.scenario.run, "io", "copy") == "host"
    found = {}
    for name, comparison in report.comparisons.items():
        if comparison.error is not None:
            continue
        problems = list(getattr(comparison, "problems", None) or [])
        found[name] = attribute(conversion_passed, numbers_passed(comparison), io_host,
                                bool(getattr(comparison, "failed_requirements", None)), bool(problems))
        if found[name] == "backend" and all(is_precision_problem(problem) for problem in problems):
            found[name] = "precision"  # asked low_bf16, ran FP32: the precision setting was not what ran
    return found
