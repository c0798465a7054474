"""What host and agent agree on: the schemas the agent reads and writes, the settings it knows, JobError.

The contract itself (job.json, result.json, the resident protocol, exit codes)
is documented in the entry script, agent/mnn_agent.py (the bundle's
__main__.py); tests/test_agent.py holds the agent to it.
"""

JOB_SCHEMAS = (1, 2)
RESULT_SCHEMA = 2
PRECISIONS = ("normal", "high", "low", "low_bf16")
APIS = ("session", "module")
IO_MODES = ("copy", "host")
BACKENDS = ("cpu", "opencl", "vulkan", "auto")
INPUT_DTYPES = ("float32", "int32", "int64", "uint8")


class JobError(Exception):
    """The job could not be run; the message says why and lands in result.json."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
