"""What the agent says about the machine it runs on: CPU features, memory now and at its peak."""

import os
import platform
import struct

# Linux AT_HWCAP / AT_HWCAP2 bits on aarch64 (arch/arm64/include/uapi/asm/hwcap.h).
# Read from /proc/self/auxv rather than /proc/cpuinfo: under qemu-user,
# /proc/cpuinfo describes the x86 host while auxv describes the emulated CPU.
_AARCH64_HWCAP = {
    0: "fp", 1: "asimd", 3: "aes", 4: "pmull", 5: "sha1", 6: "sha2", 7: "crc32",
    8: "atomics", 9: "fphp", 10: "asimdhp", 12: "asimdrdm", 13: "jscvt", 14: "fcma",
    15: "lrcpc", 16: "dcpop", 17: "sha3", 20: "asimddp", 21: "sha512", 22: "sve",
    23: "asimdfhm",
}
_AARCH64_HWCAP2 = {1: "sve2", 9: "svei8mm", 12: "svebf16", 13: "i8mm", 14: "bf16"}
_AT_HWCAP, _AT_HWCAP2 = 16, 26
# x86 flags that matter to MNN's CPU kernels; the full list is noise in a report.
_X86_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
              "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile")


def cpu_features():
    """The CPU features MNN's kernels choose by, as the kernel reports them to this process."""
    machine = platform.machine()
    if machine in ("aarch64", "arm64"):
        hwcap, hwcap2 = _read_auxv()
        features = [name for bit, name in sorted(_AARCH64_HWCAP.items()) if hwcap >> bit & 1]
        features += [name for bit, name in sorted(_AARCH64_HWCAP2.items()) if hwcap2 >> bit & 1]
        return features
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [flag for flag in _X86_FLAGS if flag in flags]
    except OSError:
        pass
    return []


def _read_auxv():
    hwcap = hwcap2 = 0
    try:
        with open("/proc/self/auxv", "rb") as f:
            data = f.read()
    except OSError:
        return hwcap, hwcap2
    for offset in range(0, len(data) - 15, 16):
        key, value = struct.unpack_from("<QQ", data, offset)
        if key == _AT_HWCAP:
            hwcap = value
        elif key == _AT_HWCAP2:
            hwcap2 = value
    return hwcap, hwcap2


def peak_rss_mb():
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except (ImportError, OSError):
        return None


def current_rss_mb():
    """Resident memory now (not the peak): what the cache bound watches. None where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2.0 ** 20
    except (OSError, ValueError, IndexError):
        return None
