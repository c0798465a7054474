"""What a run leaves, as types: a run's record (run.py), a matrix's, a bisect's and a layer search's, their one
serializer (serde.py: schema versions, upgrades, infinity and NaN), the rules that read them (verdicts, limits
in words, causes), the run folder that writes and reads them back as the same record, and the nightly history.
Imports only core and config."""
