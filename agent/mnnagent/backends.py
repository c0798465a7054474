"""The backend that really ran: what MNN's session says (getSessionInfo) and what MNN printed when it fell back."""

import re

# MNNForwardType (MNN/MNNForwardType.h): what getSessionInfo(session, BACKENDS) returns.
# 13 is the CPU with its instruction-set extensions (AVX2/AVX512 on x86, ARMv8.2 on ARM).
FORWARD_TYPES = {0: "cpu", 1: "metal", 2: "cuda", 3: "opencl", 4: "auto", 5: "nn", 6: "opengl",
                 7: "vulkan", 13: "cpu"}
SESSION_BACKENDS = {"cpu": "CPU", "opencl": "OPENCL", "vulkan": "VULKAN", "auto": "AUTO"}
SESSION_INFO_BACKENDS = 2  # Interpreter::SessionInfoCode BACKENDS
FALLBACK_LINE = re.compile(r"Can't Find type=(\d+) backend, use (\d+) instead")


def fallback_lines(text):
    return [line.strip() for line in text.splitlines() if FALLBACK_LINE.search(line)]


def backend_facts(asked, code, evidence, said):
    ran = FORWARD_TYPES.get(code, "type %s" % code) if code is not None else None
    lines = fallback_lines(said)
    if ran is None and lines:  # no session to ask: MNN's own line says what it used
        ran = FORWARD_TYPES.get(int(FALLBACK_LINE.search(lines[-1]).group(2)), "cpu")
        evidence = "MNN's fallback line"
    if ran is None:
        ran = asked if asked != "auto" else None
        evidence = evidence or "no fallback line (the backend was taken as asked)"
    return {"asked": asked, "ran": ran, "code": code, "evidence": evidence, "mnn_said": lines}


def session_backend(interpreter, session):
    """The backend a session really runs on: MNNForwardType from getSessionInfo(BACKENDS)."""
    try:
        return int(interpreter.getSessionInfo(session, SESSION_INFO_BACKENDS))
    except Exception:  # noqa: BLE001  older MNN without getSessionInfo: the fallback line decides
        return None
