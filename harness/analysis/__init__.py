"""What the numbers mean: metrics and limits, verdicts, likely causes, the run's record in memory (RunReport),
the layer search's analysis. Imports core and config."""
