"""What the numbers mean: metrics and limits, decoded verdicts, where NaN/Inf are, whether an MNN version
matters, likely causes, judging a run's results into its record (judge.py), the layer search's analysis.
Imports only core, config and record."""
