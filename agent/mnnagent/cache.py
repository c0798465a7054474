"""What a resident agent keeps between jobs: loaded models, model facts and file hashes, bounded."""

import hashlib
import os

from .files import open_regular
from .machine import current_rss_mb

CACHE_MODELS = 4
"""Loaded models a resident agent keeps by default (least recently used go first)."""
CACHE_MB = 1024.0
"""A resident agent's resident memory above which cached models are evicted, by default."""


class ModelCache(object):
    """What a resident agent keeps between jobs: loaded models (runners), model facts and file hashes.

    Runners are keyed by what reaches MNN when a model loads (runner_key) and
    evicted least recently used first: beyond max_models, and while the
    process's resident memory is above max_rss_mb (the model just used stays).
    File hashes are keyed by the file's identity and times: a store file
    replaced or rewritten is hashed again.
    """

    def __init__(self, max_models=CACHE_MODELS, max_rss_mb=CACHE_MB):
        from collections import OrderedDict

        self.max_models = max_models
        self.max_rss_mb = max_rss_mb
        self.entries = OrderedDict()
        self.facts = OrderedDict()
        self.hashes = {}
        self.hits = self.misses = self.evicted = 0
        self.jobs = 0

    def sha256(self, path):
        with open_regular(path) as f:
            info = os.fstat(f.fileno())
            key = (path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            if key not in self.hashes:
                digest = hashlib.sha256()
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
                if len(self.hashes) > 256:
                    self.hashes.clear()
                self.hashes[key] = digest.hexdigest()
        return self.hashes[key]

    def model_facts(self, sha, read):
        if sha not in self.facts:
            self.facts[sha] = read()
            while len(self.facts) > 64:
                self.facts.popitem(last=False)
        self.facts.move_to_end(sha)
        return self.facts[sha]

    def runner(self, key, load):
        """(runner, True) from the cache, or (a newly loaded runner, False), now the most recently used."""
        if key in self.entries:
            self.hits += 1
            self.entries.move_to_end(key)
            return self.entries[key], True
        self.misses += 1
        runner = load()
        self.entries[key] = runner
        return runner, False

    def trim(self):
        """Evict beyond the bounds; the most recently used runner stays (the next job may want it again)."""
        import gc

        while len(self.entries) > max(0, self.max_models):
            self._evict()
        rss = current_rss_mb()
        while rss is not None and rss > self.max_rss_mb and len(self.entries) > 1:
            self._evict()
            gc.collect()
            rss = current_rss_mb()

    def _evict(self):
        _, runner = self.entries.popitem(last=False)
        runner.release()
        self.evicted += 1

    def describe(self):
        return {"entries": len(self.entries), "hits": self.hits, "misses": self.misses, "evicted": self.evicted}
