"""--probe: the board's facts (Python, numpy, MNN, CPU features, free disk) before the host sends work."""

import json
import os
import platform

from .contract import RESULT_SCHEMA
from .files import write_atomically
from .machine import cpu_features
from .native import import_mnn


def probe(out_path):
    """What the host needs to know of a board before it sends work: written to out_path as JSON."""
    facts = {"schema": RESULT_SCHEMA, "machine": platform.machine(), "python": platform.python_version(),
             "platform": platform.platform(), "hostname": platform.node(), "cpu_features": cpu_features(),
             "cpu_count": os.cpu_count(), "mnn_version": None, "mnn_banner": None, "numpy_version": None,
             "errors": []}
    try:
        import numpy
        facts["numpy_version"] = numpy.__version__
    except ImportError as error:
        facts["errors"].append("numpy: %s" % error)
    try:
        MNN, banner = import_mnn()
        facts["mnn_version"], facts["mnn_banner"] = MNN.version(), banner
    except ImportError as error:
        facts["errors"].append("MNN: %s" % error)
    try:
        usage = os.statvfs(os.path.dirname(os.path.abspath(out_path)))
        facts["free_disk_mb"] = usage.f_bavail * usage.f_frsize / 2.0 ** 20
    except OSError:
        facts["free_disk_mb"] = None
    payload = json.dumps(facts, indent=1, sort_keys=True).encode()
    write_atomically(out_path, lambda f: f.write(payload))
    return 0 if not facts["errors"] else 1
