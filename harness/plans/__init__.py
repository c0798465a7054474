"""Jobs x boards for the executor, then their record and views: a run, a matrix, a night, a layer search, a
bisect. Imports every room but the entry point (cli.py) and the bench."""
