"""The whole artifact flow in a process of its own, reporting every child process it starts.

Run as ``python -m tests.support.artifact_flow ARGS.json`` by the no-child-process test, with a PATH
holding no real ``git``. A Python audit hook, installed before anything else runs, records every attempt
to start a program (``subprocess.Popen``, ``os.fork``, ``os.posix_spawn``, ``os.exec*``, ``os.system``,
...); the report also lists the children in ``/proc/self/task/*/children``. With ``"control": true`` the
flow ends by running ``git --version``, to show that the detection works.
"""

from __future__ import annotations

import sys

SPAWNS: list[str] = []
_SPAWN_EVENTS = {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn",
                 "os.system", "os.startfile", "pty.spawn", "os.popen"}


def _audit(event: str, args: tuple) -> None:
    if event in _SPAWN_EVENTS:
        SPAWNS.append(f"{event} {args!r}"[:300])


sys.addaudithook(_audit)

import json  # noqa: E402 - the hook must be in place before any other import runs
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from pca_core.agent.artifacts import ArtifactManager, ArtifactUpdate  # noqa: E402
from pca_core.config import build  # noqa: E402
from pca_core.runtime import discovery  # noqa: E402
from pca_core.runtime.scheduler import Scheduler  # noqa: E402
from pca_core.stratos.events import ArtifactUpdatedEvent  # noqa: E402


def _children() -> list[str] | None:
    tasks = Path("/proc/self/task")
    files = [task / "children" for task in tasks.iterdir()] if tasks.is_dir() else []
    if not files or not files[0].exists():
        return None  # the kernel does not offer the list
    return [pid for f in files for pid in f.read_text().split()]


def _wait(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def main(args: dict) -> dict:
    """Clones, pulls, commits and pushes, over git:// and http://, then removes; returns what happened."""
    work = Path(args["work"])
    payload = {"APPLICATION_ID": "app", "SERVICE_NAME": "php", "CLUSTER_ID": "php.domain", "PORTS": "80",
               "MULTITENANT": "true", "TENANT_ID": "-1234", "MEMBER_ID": "php.member-1",
               "CARTRIDGE_KEY": args["key"]}
    cfg = build({"payload": payload, "agent": {"application_path": str(work / "app")},
                 "artifacts": {"auto_checkout": True, "auto_commit": True, "update_interval": 0.1}},
                source="flow", environ={})
    repo_class = discovery.load_plugin(discovery.ARTIFACT_REPOS, "git")
    repo = repo_class(cfg.artifacts, repo_class.Options())
    scheduler = Scheduler(workers=2)
    scheduler.start()
    updates: list[ArtifactUpdate] = []
    manager = ArtifactManager(cfg, repo, scheduler, post=lambda _name, job: job(), on_update=updates.append)
    report: dict = {}
    try:
        for tenant in ("1", "2"):  # two tenants on the same repository: one pushes, the other pulls
            manager.handle(ArtifactUpdatedEvent(cluster_id="php.domain", repo_url=args["git_url"],
                                                tenant_id=tenant))
        manager.handle(ArtifactUpdatedEvent(cluster_id="php.domain", repo_url=args["http_url"], tenant_id="3",
                                            repo_user_name=args["user"], repo_password=args["password"]))
        tenants = work / "app" / "repository" / "tenants"
        report["cloned"] = sorted(p.name for p in tenants.iterdir() if (p / "index.php").exists())
        (tenants / "2" / "pushed.txt").write_text("from tenant 2")
        # Tenant 2's task commits and pushes it; tenant 1's pulls it and announces the update.
        report["pulled"] = _wait(lambda: any(u.scheduled and u.spec.tenant_id == "1" for u in updates))
        report["pulled"] = report["pulled"] and (tenants / "1" / "pushed.txt").exists()
        report["scheduled_updates"] = sum(1 for u in updates if u.scheduled)
        report["removed"] = manager.remove_tenant("1") and not (tenants / "1").exists()
    finally:
        manager.close()
        scheduler.shutdown(10)
    if args.get("control"):
        subprocess.run(["git", "--version"], check=False, capture_output=True)
    report["spawns"] = list(SPAWNS)
    report["children"] = _children()
    return report


if __name__ == "__main__":
    print(json.dumps(main(json.loads(Path(sys.argv[1]).read_text()))))
