"""The agent's command line: JOB_DIR (one-shot), --serve SESSION_DIR (resident), --probe OUT.json."""

import os
import sys

from .cache import CACHE_MB, CACHE_MODELS
from .job import run_and_write
from .probe import probe
from .serve import serve


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--probe":
        return probe(argv[1])
    if argv and argv[0] == "--serve":
        options = {"--cache-models": CACHE_MODELS, "--cache-mb": CACHE_MB}
        rest = argv[1:]
        try:
            while len(rest) > 1 and rest[0] in options:
                options[rest[0]] = type(options[rest[0]])(rest[1])
                rest = rest[2:]
        except ValueError:
            rest = []
        if len(rest) != 1 or not os.path.isdir(rest[0]):
            sys.stderr.write("usage: mnn_agent.py --serve SESSION_DIR [--cache-models N] [--cache-mb MB]\n")
            return 2
        return serve(rest[0], options["--cache-models"], options["--cache-mb"])
    if len(argv) != 1 or not os.path.isfile(os.path.join(argv[0], "job.json")):
        sys.stderr.write("usage: mnn_agent.py JOB_DIR   (JOB_DIR must hold job.json)\n")
        return 2
    return run_and_write(argv[0])[0]


if __name__ == "__main__":
    sys.exit(main())
