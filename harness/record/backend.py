"""Which MNN backend and precision really ran on a board, read from the agent's facts, and whether that is what
the scenario asked for.

MNN falls back to the CPU when the asked backend is not in its build, with no
error: only a line on stdout ("Can't Find type=3 backend, use 0 instead"). The
agent reads the backend that ran (result.json "backend": asked, ran, evidence,
MNN's own lines); a board that ran something else than asked fails that
setting, unless the scenario allows the fallback (`run.allow_fallback`).
Asking for `auto` accepts whatever MNN picks; it is reported, never a failure.
The same holds for low_bf16 that MNN computes in FP32 (result.json "precision").
"""

from typing import Optional

from .run import SettingFailure

BACKEND_NAMES = {"cpu": "CPU", "opencl": "OpenCL", "vulkan": "Vulkan", "auto": "auto", "metal": "Metal",
                 "cuda": "CUDA", "opengl": "OpenGL", "nn": "NNAPI/CoreML"}
ALLOW = "(`run: {allow_fallback: true}` accepts the fallback)"


def fallback(facts: dict, ran: bool = True) -> Optional[str]:
    """"asked opencl, ran cpu (MNN said ...)" when a board that ran (ran) used another backend than asked."""
    info = facts.get("backend") or {}
    asked, used = info.get("asked"), info.get("ran")
    if not ran or not asked or asked in ("cpu", "auto") or used == asked:
        return None
    said = info.get("mnn_said") or []
    evidence = f'MNN said "{said[0]}"' if said else (info.get("evidence") or "no evidence")
    return f"asked {asked}, ran {used or 'an unknown backend'} ({evidence})"


def precision_fallback(facts: dict, ran: bool = True) -> Optional[str]:
    """"asked low_bf16, ran FP32 (its outputs are bit-identical to precision normal's)" when MNN computed
    low_bf16 in FP32 (a build without BF16, or a CPU without bf16), else None."""
    info = facts.get("precision") or {}
    if not ran or info.get("asked") != "low_bf16" or info.get("ran") in (None, "BF16"):
        return None
    return f"asked low_bf16, ran {info['ran']} ({info.get('evidence') or 'no evidence'})"


def setting_failure(facts: dict, ran: bool, allow_fallback: bool, reference: bool = False) -> Optional[SettingFailure]:
    """Why a board fails its backend (or BF16 precision) setting, or None.

    The reference computing low_bf16 in FP32 is no failure: it is the FP32 baseline the boards are held to.
    """
    text = fallback(facts, ran)
    if text is None:
        text = None if reference else precision_fallback(facts, ran)
        if text is None or allow_fallback:
            return None
        info = facts.get("precision") or {}
        return SettingFailure("precision", "low_bf16", str(info.get("ran")), f"{text}: this board's MNN computes "
                              "low_bf16 in FP32 (built without BF16, or no bf16 in the CPU), so BF16 was not tested "
                              f"there {ALLOW}")
    if allow_fallback:
        return None
    info = facts.get("backend") or {}
    asked = BACKEND_NAMES.get(info.get("asked"), "that")
    return SettingFailure("backend", str(info.get("asked")), str(info.get("ran") or "an unknown backend"),
                          f"{text}: this board's MNN has no {asked} backend, so {asked} was not tested there {ALLOW}")


def ran_text(facts: dict) -> Optional[str]:
    """"cpu", or "cpu (asked opencl)": what the boards table shows."""
    info = facts.get("backend") or {}
    if not info.get("ran"):
        return None
    if info.get("asked") and info["asked"] != info["ran"]:
        return f"{info['ran']} (asked {info['asked']})"
    return info["ran"]
