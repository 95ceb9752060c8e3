#!/usr/bin/env python3
"""Artifacts: the ``git`` artifact repository (dulwich, in process) against the git CLI doing the same work.

One git daemon of the benchmark's own (127.0.0.1, a free port) serves every repository. In one run:

- clone: the first checkout of a 1,000-file repository (20 directories x 50 files of 2 KB) into an empty
  directory; the CLI runs ``git clone``.
- no-op sync: a sync with nothing new; the CLI runs ``git fetch`` + ``git merge --ff-only``.
- changed sync: a sync after one file changed upstream (the change is made before each timed round, for
  both); the CLI runs ``git fetch`` + ``git merge --ff-only``.
- tenants: 50 tenants' repositories (100 files each), each with one new commit, synced concurrently: pca
  submits the 50 syncs to the core scheduler (a fixed pool of workers), the CLI runs its 50 fetch+merge
  pairs on a thread pool of the same size.

Each figure is the best of several rounds; each ratio is pca's time over the CLI's. During pca's runs a
Python audit hook counts every attempt to start a program (``child_processes``, goal 0), and each task
records the process's thread count (``max_threads``, goal: no more than before plus the pool).

Usage: python bench/artifacts.py [--json] [--rounds R] [--tenants N] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support.gitserver

from pca_git import GitOptions, GitRepo

from pca_core.api.artifact_repo import RepoSpec
from pca_core.config import ArtifactsConfig
from pca_core.runtime.scheduler import Scheduler
from tests.support.gitserver import GitDaemon, Upstream, git_binary, git_env

SPAWNS = {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn", "os.system"}


class Witness:
    """Counts program starts while :attr:`counting` is set (pca's runs only)."""

    def __init__(self) -> None:
        self.counting = False
        self.count = 0
        sys.addaudithook(self._hook)

    def _hook(self, event: str, _args: tuple) -> None:
        if self.counting and event in SPAWNS:
            self.count += 1


def files(count: int, seed: str) -> dict[str, str]:
    """``count`` text files of about 2 KB, 50 to a directory."""
    line = (seed * 64)[:63] + "\n"
    return {f"dir{i // 50:02d}/file{i % 50:02d}.txt": f"{i}\n" + line * 32 for i in range(count)}


def cli(*args: str, cwd: Path | None = None) -> None:
    """Runs the git CLI, quietly, without user or system configuration."""
    subprocess.run([git_binary(), *args], cwd=cwd, env=git_env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def cli_sync(work: Path, branch: str = "main") -> None:
    """The CLI's sync: fetch, then fast-forward."""
    cli("fetch", "--quiet", "origin", cwd=work)
    cli("merge", "--quiet", "--ff-only", f"origin/{branch}", cwd=work)


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` took."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Bench:
    """The servers, the repositories and the two contenders."""

    def __init__(self, root: Path, witness: Witness, workers: int) -> None:
        self.root = root
        self.served = root / "served"
        self.served.mkdir()
        self.daemon = GitDaemon(self.served).start()
        self.repo = GitRepo(ArtifactsConfig(), GitOptions())
        self.witness = witness
        self.workers = workers
        self._n = 0

    def fresh(self, name: str) -> Path:
        """A new directory name under the benchmark's root."""
        self._n += 1
        return self.root / f"{name}-{self._n}"

    def ours(self, fn: Callable[[], object]) -> float:
        """Seconds ``fn()`` took, counting the programs it starts."""
        self.witness.counting = True
        try:
            return timed(fn)
        finally:
            self.witness.counting = False

    def spec(self, upstream: Upstream, path: Path) -> RepoSpec:
        """The repository spec of ``upstream`` checked out at ``path``."""
        return RepoSpec(url=self.daemon.url(upstream.name), path=str(path), tenant_id="-1234")

    def clone(self, upstream: Upstream, rounds: int) -> tuple[float, float]:
        """Best first checkout of pca and of ``git clone``."""
        url = self.daemon.url(upstream.name)
        ours, theirs = [], []
        for _ in range(rounds):
            target = self.fresh("clone-pca")
            ours.append(self.ours(lambda target=target: self.repo.sync(self.spec(upstream, target))))
            target = self.fresh("clone-cli")
            theirs.append(timed(lambda target=target: cli("clone", "--quiet", url, str(target))))
        return min(ours), min(theirs)

    def syncs(self, upstream: Upstream, rounds: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """Best no-op and one-file-changed syncs of pca and of fetch+merge."""
        mine, work = self.fresh("sync-pca"), self.fresh("sync-cli")
        spec = self.spec(upstream, mine)
        self.repo.sync(spec)
        cli("clone", "--quiet", self.daemon.url(upstream.name), str(work))
        noop_ours = [self.ours(lambda: self.repo.sync(spec)) for _ in range(rounds * 4)]
        noop_cli = [timed(lambda: cli_sync(work)) for _ in range(rounds * 4)]
        changed_ours, changed_cli = [], []
        for i in range(rounds * 2):
            upstream.commit({"dir07/file07.txt": f"change {i}\n"}, message=f"change {i}")
            changed_ours.append(self.ours(lambda: self._changed(spec)))
            changed_cli.append(timed(lambda: cli_sync(work)))
        return (min(noop_ours), min(noop_cli)), (min(changed_ours), min(changed_cli))

    def _changed(self, spec: RepoSpec) -> None:
        if not self.repo.sync(spec).changed:
            raise AssertionError("the changed sync saw no change")

    def tenants(self, count: int, rounds: int) -> tuple[float, float, int, int]:
        """Best concurrent sync of ``count`` changed repositories; the thread peak and the count before."""
        upstreams = [Upstream(self.served, f"tenant-{i}.git", files(100, f"t{i}")) for i in range(count)]
        specs = [self.spec(u, self.root / "tenants-pca" / str(i)) for i, u in enumerate(upstreams)]
        works = [self.root / "tenants-cli" / str(i) for i in range(count)]
        for spec, upstream, work in zip(specs, upstreams, works, strict=True):
            self.repo.sync(spec)
            cli("clone", "--quiet", self.daemon.url(upstream.name), str(work))
        scheduler = Scheduler(workers=self.workers, queue_size=count)
        threads_before = threading.active_count()
        scheduler.start()
        peak = [threading.active_count()]
        ours, theirs = [], []
        try:
            for i in range(rounds):
                for upstream in upstreams:
                    upstream.commit({"dir01/file01.txt": f"round {i}\n"}, message=f"round {i}")
                ours.append(self.ours(lambda: self._concurrently(scheduler, specs, peak)))
                with ThreadPoolExecutor(self.workers) as pool:
                    theirs.append(timed(lambda pool=pool: list(pool.map(cli_sync, works))))
        finally:
            scheduler.shutdown(30)
        return min(ours), min(theirs), max(peak), threads_before

    def _concurrently(self, scheduler: Scheduler, specs: list[RepoSpec], peak: list[int]) -> None:
        done = threading.Semaphore(0)
        failures: list[BaseException] = []

        def sync(spec: RepoSpec) -> None:
            peak.append(threading.active_count())
            try:
                if not self.repo.sync(spec).changed:
                    raise AssertionError(f"{spec.path}: no change seen")
            except BaseException as exc:
                failures.append(exc)
            finally:
                done.release()

        for spec in specs:
            scheduler.submit(lambda spec=spec: sync(spec), name=f"sync {spec.path}")
        for _ in specs:
            done.acquire()
        if failures:
            raise failures[0]

    def close(self) -> None:
        """Stops the git daemon."""
        self.daemon.stop()


def main() -> int:
    """Runs the benchmark and prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (best is kept)")
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4, help="the scheduler's (and the CLI's) pool")
    args = parser.parse_args()
    witness = Witness()
    root = Path(tempfile.mkdtemp(prefix="pca-bench-artifacts-"))
    bench = Bench(root, witness, args.workers)
    try:
        big = Upstream(bench.served, "app.git", files(1000, "app"))
        clone = bench.clone(big, args.rounds)
        noop, changed = bench.syncs(big, args.rounds)
        tenants = bench.tenants(args.tenants, max(2, args.rounds // 2))
    finally:
        bench.close()
        shutil.rmtree(root, ignore_errors=True)
    figures = {
        "ratio_clone": round(clone[0] / clone[1], 3),
        "ratio_noop_sync": round(noop[0] / noop[1], 3),
        "ratio_changed_sync": round(changed[0] / changed[1], 3),
        "ratio_tenants_sync": round(tenants[0] / tenants[1], 3),
        "tenants": args.tenants,
        "child_processes": witness.count,
        "max_threads": tenants[2],
        "threads_before_pool": tenants[3],
        "pool_workers": args.workers,
        "clone_ms": [round(clone[0] * 1000, 1), round(clone[1] * 1000, 1)],
        "noop_sync_ms": [round(noop[0] * 1000, 2), round(noop[1] * 1000, 2)],
        "changed_sync_ms": [round(changed[0] * 1000, 1), round(changed[1] * 1000, 1)],
        "tenants_sync_ms": [round(tenants[0] * 1000, 1), round(tenants[1] * 1000, 1)],
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print("git artifact repository (dulwich, in process) vs the git CLI, one local git daemon")
    rows = [("clone, 1,000 files", "clone", 2.0), ("sync, nothing new", "noop_sync", 1.0),
            ("sync, one file changed", "changed_sync", 1.5),
            (f"{args.tenants} tenants synced at once", "tenants_sync", None)]
    for label, key, goal in rows:
        ours, theirs = figures[f"{key}_ms"]
        target = f" (goal <= {goal})" if goal is not None else ""
        print(f"  {label:28} pca {ours:9.2f} ms   git {theirs:9.2f} ms   "
              f"{figures[f'ratio_{key}']:.3f}x{target}")
    print(f"  child processes started by pca: {figures['child_processes']} (goal 0)")
    bound = figures["threads_before_pool"] + args.workers + 1
    print(f"  threads: {figures['threads_before_pool']} before the pool, at most {figures['max_threads']} "
          f"with {args.workers} workers and a timer (goal <= {bound})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
