"""The data a run is made of (model, inputs, preprocessing, job, results), the value types configuration is
made of (fields.py), and the contracts with the boards (the agent's files, SSH endpoints, a labgrid
coordinator). Imports nothing else of the harness."""
