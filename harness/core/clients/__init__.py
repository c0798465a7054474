"""The services the host talks to besides boards: the package index (MNN and numpy wheels for any board and
release, kept in the cache) and a labgrid coordinator (its places)."""
