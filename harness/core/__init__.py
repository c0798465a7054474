"""The data a run is made of (scenario, inventory, model, inputs, job, results) and the contracts with the
boards (the agent's files, SSH endpoints, a labgrid coordinator). Imports nothing else of the harness."""
