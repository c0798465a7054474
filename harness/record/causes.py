"""The classic causes of "fine on x86, wrong on ARM" by name, and what MNN's own source says precision low does:
the words the likely causes (analysis/diagnose.py) and the matrix's view of a precision setting both use.
"""

from typing import Optional

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
