"""`python -m harness.bench` (`make bench`): what the harness costs, as ratios measured side by side in one run.

The measuring is farm's (scaling, bytes, overhead), sessions's (what board sessions save) and jump's (what a
jump host costs); this entry only reads the options, runs them and prints what they measured.
"""

import argparse
import json
import os
import sys
from typing import List, Optional

from rich.console import Console

from ..core.errors import HarnessError
from .farm import run_bench, views


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", type=int, default=4, help="boards in the farm run (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="times each measurement is made (default 3)")
    parser.add_argument("--iterations", type=int, default=1, help="timed inferences per run on each board")
    parser.add_argument("--prefix", default=f"bench{os.getpid()}", help="name prefix of the bench's boards")
    parser.add_argument("--matrix-settings", type=int, choices=(1, 2, 4, 8, 16), default=16,
                        help="settings of the matrix run one-shot and resident (default 16)")
    parser.add_argument("--night-scenarios", type=int, default=3, help="scenarios of the night (default 3)")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON on stdout")
    args = parser.parse_args(argv)
    if args.boards < 1 or args.repeat < 1 or args.iterations < 1 or args.night_scenarios < 1:
        parser.error("--boards, --repeat, --iterations and --night-scenarios must be at least 1")
    console = Console(stderr=args.json)
    try:
        data, runs = run_bench(args.boards, args.repeat, args.iterations, args.prefix, args.matrix_settings,
                               args.night_scenarios,
                               progress=lambda message: print(f"bench: {message}", file=sys.stderr, flush=True))
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    for shown in views(data):
        console.print(shown)
    console.print(f"[dim]bench took {data['bench_wall_s']:.0f} s, {runs} runs[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
