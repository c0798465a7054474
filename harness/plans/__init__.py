"""Jobs x boards for the executor, then their record and views: a run, a matrix, a night, a layer search, the
bench. Imports every room but the entry points (cli.py, bench.py)."""
