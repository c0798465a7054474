"""From numbers to a diagnosis: which classic cause of "fine on x86, wrong on ARM" a run shows.

Each finding names its cause with the words users search for, the board it
concerns and the evidence. The rules read only the RunReport: settings, the
board's facts (CPU features, MNN version) and the comparisons.
"""

import functools
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..core.backend import is_precision_problem

CAUSES = {
    "reference": "missing reference",
    "preprocessing": "preprocessing drift",
    "converter": "converter options",
    "precision": "FP16 / precision setting",
    "tensor-access": "wrong tensor access",
    "mnn-version": "MNN version mismatch",
    "argmax-flips": "ArgMax flips",
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
                                    + (" (precision low: it holds FP16)" if settings.precision == "low" else "")))
            named = True
        low = low_precision_message(name, features, facts.get("machine")) if settings.precision == "low" else None
        if low:
            findings.append(Finding("precision", name, low))
            named = True
        if arithmetic(settings.precision, features)[0] == "BF16":
            findings.append(Finding("precision", name, f"precision: low_bf16 computes in BF16 on {name}"))
            named = True
        if board_mnn and host_mnn and board_mnn != host_mnn:
            findings.append(Finding("mnn-version", name, f"MNN {board_mnn} on {name}, {host_mnn} on the host: "
                                    "kernels and the converter's graph differ between versions"))
            named = True
        for output in comparison.outputs:
            failed = {reason.split(" ")[0] for reason in output.reasons}
            if not output.passed and failed <= set(LABEL_METRICS):
                m = output.metrics
                flips = (m.get("benign_flips") or 0.0) + (m.get("hard_flips") or 0.0)
                benign = (m.get("benign_flips") or 0.0) / flips if flips else 0.0
                findings.append(Finding("argmax-flips", name,
                                        f"{output.output}: {flips:.3%} of positions change label, {benign:.0%} of "
                                        f"them near-ties (benign flips), while the scores moved by at most "
                                        f"{m.get('max_abs', 0):.2g}: ArgMax turns small differences into visible "
                                        "ones"))
                named = True
        if not named:
            findings.append(Finding("platform", name,
                                    f"{name} differs from x86 with the same model bytes, inputs, MNN version and "
                                    "settings: the platform's kernels (SIMD width, reduction order, threads)"))
    return findings


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
