"""mnn-harness's board-side agent: run MNN job directories and write their results.

Python >= 3.8, numpy and MNN only (OpenCV when the board has it, for the
preprocessing check), nothing from the host's `harness` package. numpy and
MNN are imported when a job runs, never at import, so `--probe` works on a
board that lacks them and says so. The contract (job.json, result.json, the
resident protocol) is documented in agent/mnn_agent.py, the entry script; the
harness ships this package and that script to boards as one zipapp
(harness/core/agent_bundle.py).

Modules, each importing only those above it:
    contract    the schemas, the settings the agent knows, JobError
    files       the job dir's files: no symlinks followed, hashes, atomic writes, tensors in .npz
    machine     CPU features, memory now and at its peak
    native      importing MNN; what it prints on descriptor 1 kept off stdout
    backends    the backend that really ran
    model       what a .mnn holds (op types, input types), the API it needs
    inputs      the inputs: hashes checked, samples counted, dtypes fed as the model takes them
    runners     one loaded model: the Session API and the Module API
    dump        per-op dumps and replay (`harness layers`)
    script      a job's standalone script, run by the board's Python in a child (`harness repro`)
    preprocess  the board-side preprocessing of the parity check
    job         one job dir, start to end (both modes)
    cache       what a resident agent keeps between jobs
    protocol    the resident mode's frames
    serve       the resident mode (--serve)
    probe       the board's facts (--probe)
    __main__    the command line
"""
