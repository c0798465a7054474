"""Which MNN backend really ran on a board, and whether that is the one the scenario asked for.

MNN falls back to the CPU when the asked backend is not in its build, with no
error: only a line on stdout ("Can't Find type=3 backend, use 0 instead"). The
agent reads the backend that ran (result.json "backend": asked, ran, evidence,
MNN's own lines); here a board that ran something else than asked is a failure
of that setting, unless the scenario allows the fallback (`run.allow_fallback`).
Asking for `auto` accepts whatever MNN picks; it is reported, never a failure.
"""

from typing import Optional

from .results import TargetResult

BACKEND_NAMES = {"cpu": "CPU", "opencl": "OpenCL", "vulkan": "Vulkan", "auto": "auto", "metal": "Metal",
                 "cuda": "CUDA", "opengl": "OpenGL", "nn": "NNAPI/CoreML"}


def backend_info(result: TargetResult) -> dict:
    return result.facts.get("backend") or {}


def fallback(result: TargetResult) -> Optional[str]:
    """"asked opencl, ran cpu (MNN said ...)" when the board ran another backend than asked, else None."""
    info = backend_info(result)
    asked, ran = info.get("asked"), info.get("ran")
    if not result.ok or not asked or asked in ("cpu", "auto") or ran == asked:
        return None
    said = info.get("mnn_said") or []
    evidence = f'MNN said "{said[0]}"' if said else (info.get("evidence") or "no evidence")
    return f"asked {asked}, ran {ran or 'an unknown backend'} ({evidence})"


def precision_fallback(result: TargetResult) -> Optional[str]:
    """"asked low_bf16, ran FP32 (its outputs are bit-identical to precision normal's)" when MNN computed
    low_bf16 in FP32 (a build without BF16, or a CPU without bf16), else None."""
    info = result.facts.get("precision") or {}
    if not result.ok or info.get("asked") != "low_bf16" or info.get("ran") in (None, "BF16"):
        return None
    return f"asked low_bf16, ran {info['ran']} ({info.get('evidence') or 'no evidence'})"


def is_precision_problem(problem: str) -> bool:
    """A setting's problem that is the precision's fallback (precision_fallback), not the backend's."""
    return problem.startswith("asked low_bf16,")


def backend_problem(result: TargetResult, allow_fallback: bool, reference: bool = False) -> Optional[str]:
    """Why this board fails its backend (or BF16 precision) setting, or None.

    The reference computing low_bf16 in FP32 is no failure: it is the FP32 baseline the boards are held to.
    """
    text = fallback(result)
    if text is None:
        text = None if reference else precision_fallback(result)
        if text is None or allow_fallback:
            return None
        return (f"{text}: this board's MNN computes low_bf16 in FP32 (built without BF16, or no bf16 in the CPU), "
                "so BF16 was not tested there (`run: {allow_fallback: true}` accepts the fallback)")
    if allow_fallback:
        return None
    asked = BACKEND_NAMES.get(backend_info(result).get("asked"), "that")
    return (f"{text}: this board's MNN has no {asked} backend, so {asked} was not tested there "
            "(`run: {allow_fallback: true}` accepts the fallback)")


def ran_text(result: TargetResult) -> Optional[str]:
    """"cpu", or "cpu (asked opencl)": what the boards table shows."""
    info = backend_info(result)
    if not info.get("ran"):
        return None
    if info.get("asked") and info["asked"] != info["ran"]:
        return f"{info['ran']} (asked {info['asked']})"
    return info["ran"]
