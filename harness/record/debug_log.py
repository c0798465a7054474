"""`-v` / `--debug`: what the harness said to the boards, in a log file the run folder keeps.

When a real board misbehaves, the report says what failed; the log says what was said: paramiko's SSH
conversation (connect, key exchange, authentication, channels; every packet's type with --debug), the
commands the harness ran on the board and their exit status, and the resident agent's conversation (its
hello, each request and reply). Nothing of it reaches the terminal, whose report stays as it is.

The log is written from the start (the run folder does not exist yet) under the cache, and moved into the
run folder as harness.log when the command made one; the command names it on stderr at the end.
"""

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from ..core.cache import cache_root

LOG_NAME = "harness.log"
LOGGERS = ("harness", "paramiko", "fabric", "invoke")
"""Ours, and the SSH stack's: fabric and invoke name the commands, paramiko speaks the protocol."""
FORMAT = "%(asctime)s.%(msecs)03d %(threadName)s %(name)s %(levelname)s %(message)s"


class DebugLog:
    """A log file taking the records of LOGGERS at INFO (-v) or DEBUG (--debug) while the command runs."""

    def __init__(self, debug: bool, command: str):
        directory = cache_root() / "logs"
        directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = directory / f"{stamp}-{command}-{os.getpid()}.log"
        self.level = logging.DEBUG if debug else logging.INFO
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
        self.handler.setLevel(self.level)
        self.saved = {}
        for name in LOGGERS:
            logger = logging.getLogger(name)
            self.saved[name] = logger.level
            logger.setLevel(self.level)
            logger.addHandler(self.handler)
        logging.getLogger("harness").info("harness %s, log level %s", command, logging.getLevelName(self.level))

    def finish(self, run_dir: Optional[Path]) -> Path:
        """Stop logging; move the file into run_dir (when the command made one) and return where it is."""
        for name in LOGGERS:
            logger = logging.getLogger(name)
            logger.removeHandler(self.handler)
            logger.setLevel(self.saved[name])
        self.handler.close()
        if run_dir is not None and Path(run_dir).is_dir():
            target = Path(run_dir) / LOG_NAME
            shutil.move(str(self.path), str(target))
            self.path = target
        return self.path
