"""What stays after a run: its folder (record/run_folder.py: written, and read back as the same record) and
the nightly history. Imports core, config, analysis, emulation and execution."""
