"""The developer benchmark (`python -m harness.bench`, `make bench`): what the harness costs, measured as ratios
of runs made side by side. A room of its own, after the plans it drives: nothing of the harness imports it."""
