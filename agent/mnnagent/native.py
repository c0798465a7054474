"""MNN's native side: importing it, and keeping what it prints on descriptor 1 off the agent's stdout."""

import os
import sys
import tempfile


class CapturedStdout(object):
    """File descriptor 1 redirected to a temp file while the block runs; .text is what was printed.

    MNN's native code prints on stdout: its banner at import, and the only sign
    of a backend fallback ("Can't Find type=3 backend, use 0 instead"). Both are
    worth keeping, and neither may reach our stdout.
    """

    def __enter__(self):
        sys.stdout.flush()
        self.saved = os.dup(1)
        self.capture = tempfile.TemporaryFile()
        os.dup2(self.capture.fileno(), 1)
        self.text = ""
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        flush_c_stdio()
        os.dup2(self.saved, 1)
        os.close(self.saved)
        self.capture.seek(0)
        self.text = self.capture.read().decode("utf-8", "replace").strip()
        self.capture.close()
        return False


_IMPORTED = []


def import_mnn():
    """Import MNN with stdout captured, and return (MNN, the banner it printed).

    The banner ("The device supports: ...") is MNN's own view of the CPU
    (fp16, i8sdot, i8mm, sve2). MNN prints it once, at its first import: a
    resident agent remembers it for every later job.
    """
    if not _IMPORTED:
        with CapturedStdout() as printed:
            import MNN  # noqa: F401  (imported for its side effect on sys.modules)
            import MNN.expr  # noqa: F401
            import MNN.nn  # noqa: F401
        _IMPORTED.append((sys.modules["MNN"], printed.text))
    return _IMPORTED[0]


def flush_c_stdio():
    """Flush C's stdio buffers: MNN's banner sits there (printf into a file is fully buffered)."""
    try:
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except (ImportError, OSError, AttributeError):
        pass
