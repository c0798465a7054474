"""A board's store: the agent, models, inputs and MNN's wheels kept on the board by content, shared by its runs.

<workdir>/store/ holds each file under a name its SHA-256 makes (mnn_agent-<sha16>.pyz, <sha>.mnn, <sha>.npz,
the wheels by their own names), so a file is sent once and reused by every run that needs the same bytes. A
session hashes on the board, in one remote call, the files its jobs need that it has not checked yet; what is
missing or differs is sent (to a temporary name, renamed when complete). Beyond `store_max_mb` the least
recently used files, and the provisioned sites of MNN releases no job of the session uses, are evicted first.
"""

import json
import stat
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set, Tuple

from ...core.cache import sha256_file
from ...core.errors import BoardError
from ...config.inventory import BoardSpec
from ...core.job import Job
from ...core.results import TargetResult
from . import remote
from .provision import list_sites, remove_sites
from .remote import Leftovers, StoreFile
from .transport import SshTransport


def agent_file(agent: Path) -> StoreFile:
    """The agent in the store, by its SHA-256: mnn_agent-<sha16>.pyz for the bundle."""
    agent_sha = sha256_file(agent)
    return StoreFile(f"mnn_agent-{agent_sha[:16]}{agent.suffix}", agent, agent_sha)


def job_files(job: Job) -> List[StoreFile]:
    """The files a job needs in the store, by content: model, inputs (and raw images)."""
    files = [StoreFile(f"{job.model_sha256}.mnn", job.model_path, job.model_sha256),
             StoreFile(f"{job.inputs_sha256}.npz", job.inputs_path, job.inputs_sha256)]
    if job.images_path:
        files.append(StoreFile(f"{job.images_sha256}.npz", job.images_path, job.images_sha256))
    return files


def stale_store(local_dir: Path) -> bool:
    """The agent found a stored model or input that is not what the host sent (it changed between the store's
    check and the agent's own): the job is run again, the files sent again."""
    try:
        facts = json.loads((local_dir / "result.json").read_text())  # its size was checked when fetched
    except (OSError, ValueError):
        return False
    return isinstance(facts, dict) and facts.get("error_kind") in ("bad-model", "bad-inputs")


class BoardStore:
    """One board session's view of the store: what it has checked there, what it sent, what it evicted.

    in_use() names the provisioned sites the session's agent runs with (never evicted); sites_evicted() is told
    the sites an eviction removed (the provisioner looks for them again).
    """

    def __init__(self, spec: BoardSpec, transport: SshTransport, in_use: Callable[[], List[str]] = lambda: [],
                 sites_evicted: Callable[[List[str]], None] = lambda sites: None):
        self.spec = spec
        self.transport = transport
        self.in_use = in_use
        self.sites_evicted = sites_evicted
        self.state: Dict[str, Optional[str]] = {}
        """Store file -> its SHA-256 on the board as this session last saw it (None: not there)."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def cap_bytes(self) -> int:
        return int(self.spec.store_max_mb * 1024 * 1024)

    def reset(self) -> None:
        """A new session: nothing is known of the board's store."""
        self.state = {}

    def forget(self, names: List[str]) -> None:
        """These files must be checked again (the agent found one of them stale)."""
        for name in names:
            self.state.pop(name, None)

    def begin(self, job_id: str, names: List[str], clean: bool = True) -> Tuple[Leftovers, dict, List[str]]:
        """One remote call: clean leftovers (only under the lock), make the job dir, hash what the store holds
        of `names`."""
        board = self.transport.board
        run = self.transport.exec_script(remote.BEGIN_JOB, [board.workdir, "clean" if clean else "keep", job_id,
                                                             board.endpoint.python, *names],
                                         "preparing the job", timeout=max(60.0, self.spec.connect_timeout * 4))
        return remote.parse_begin(run.stdout)

    def checked(self, files: List[StoreFile], hashes: Dict[str, str]) -> None:
        """What a begin() call found of these files on the board."""
        self.state.update({item.name: hashes.get(item.name) for item in files})

    def sync(self, files: List[StoreFile], result: TargetResult) -> None:
        """Have the job's files in the store: one remote call hashes those this session has not checked yet
        (none, once the session knows them), then what is missing or differs is sent."""
        unchecked = [item for item in files if item.name not in self.state]
        if unchecked:
            _, hashes, links = self.begin("", [item.name for item in unchecked], clean=False)
            if links:
                result.notes.append(f"store entries that were symbolic links were removed: {', '.join(links)}")
            self.checked(unchecked, hashes)
        wanted = [item for item in files if self.state.get(item.name) != item.sha256]
        if not wanted:
            return
        corrupt = [item.name for item in wanted if self.state.get(item.name) is not None]
        if corrupt:
            result.notes.append(f"stored {', '.join(corrupt)} did not match its SHA-256 on the board: sent again")
        _, evicted = self.evict({item.name for item in files}, sum(item.local.stat().st_size for item in wanted),
                                result)
        self.forget(evicted)
        for item in wanted:
            result.bytes_uploaded += self.transport.put(item.local, self.transport.board.paths.store_file(item.name))
            self.state[item.name] = item.sha256

    def evict(self, keep: Set[str], incoming: int, result: Optional[TargetResult]) -> Tuple[int, List[str]]:
        """Remove least recently used store files and provisioned sites until they fit store_max_mb with
        `incoming` bytes more; never what `keep` names nor the sites of the MNN in use.

        A job's files (and a site's site.json) are touched when used, so modification times order them by last
        use. Returns (bytes freed, files and sites removed).
        """
        board = self.transport.board
        entries = [(entry.filename, entry.st_size or 0, entry.st_mtime or 0, "file")
                   for entry in board.sftp.listdir_attr(board.store)
                   if stat.S_ISREG(entry.st_mode or 0) or stat.S_ISLNK(entry.st_mode or 0)]
        entries += [(site.id, site.kb * 1024, site.last_used, "site") for site in list_sites(board)]
        total = sum(size for _, size, _, _ in entries)
        budget = self.cap_bytes - incoming
        if total <= budget:
            return 0, []
        keep = set(keep) | set(self.in_use())
        files, sites, freed = [], [], 0
        for name, size, _, what in sorted(entries, key=lambda e: (e[2], e[0])):
            if total - freed <= budget:
                break
            if name in keep:
                continue
            try:
                remote.check_name(name, "store file")
            except BoardError:
                continue
            (files if what == "file" else sites).append(name)
            freed += size
        if files:
            self.transport.exec_script(remote.REMOVE_STORE_FILES, [board.store, *files], "evicting store files",
                                       check=False)
        if sites:
            remove_sites(self.transport, sites)
            self.sites_evicted(sites)
        if result is not None:
            if files or sites:
                result.notes.append(f"store over store_max_mb={self.spec.store_max_mb:g}: evicted {len(files)} "
                                    f"least recently used file(s)"
                                    + (f" and {len(sites)} provisioned site(s) ({', '.join(sites)})" if sites else "")
                                    + f", {freed / 1e6:.1f} MB")
            if total - freed > budget:
                result.notes.append(f"this job's own files exceed store_max_mb={self.spec.store_max_mb:g}")
        return freed, files + sites
