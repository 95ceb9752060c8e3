"""Extensions: the bash scripts and Python event handlers run on lifecycle events.

An *extendable* event (``InstanceStartedEvent``, ``StartServers``, ``clean``, ...) runs, in this order, the
bash extension script of that name, if there is one, and then every :class:`~pca_core.EventHandler` that
wants the event. Both get the same values (``original-agent.md`` §5.3): a script as ``STRATOS_<KEY>``
environment variables, a handler as a mapping without the prefix.

Where pca differs from the original agent (``original-agent.md`` §10 #19-21):

- The values are given to the script's process only; ``os.environ`` is never changed, so nothing leaks
  from one event into the next. Every value is a string (numbers, booleans, lists and maps converted),
  where the original crashed on anything else.
- The exit code decides success; output on stderr is only logged. A script has a timeout, after which its
  whole process group is killed.
- A script still running when the agent stops is not left behind: its process group gets SIGTERM, then
  SIGKILL after a short grace (:meth:`ExtensionRunner.close`), or SIGKILL at once when the agent must exit
  immediately (:meth:`ExtensionRunner.kill_now`). What a script that *finished* left running in the
  background (the application server of ``StartServers``) is never touched.
- ``VolumeMount`` gets the persistence mapping as ``$1``, which is what the real script reads.
- Besides the PCA's names (``InstanceStartedEvent.sh``), the Java agent's hyphenated names
  (``instance-started.sh``) are found, so the extensions of either agent work unchanged.
- The service, cluster and member properties are passed whenever the topology holds them (the original
  passed them only when a field of the topology JSON said it was initialized, which newer Stratos never
  set).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import select
import signal
import stat
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Any

import msgspec

from pca_core.api.secrets import MASK, Secret, is_secret_key, mask_credentials

if TYPE_CHECKING:
    from pca_core.api.event_handler import EventHandler, HandlerContext
    from pca_core.config import Config
    from pca_core.stratos.topology import TopologyModel

__all__ = [
    "ENV_PREFIX", "JAVA_SCRIPT_NAMES", "OUTPUT_LIMIT", "STOP_GRACE", "ExtensionRunner", "as_text",
    "extension_values", "script_names",
]

_log = logging.getLogger(__name__)

ENV_PREFIX = "STRATOS_"
"""What a value's key is prefixed with in a script's environment."""

JAVA_SCRIPT_NAMES: Mapping[str, str] = MappingProxyType({
    "InstanceStartedEvent": "instance-started.sh",
    "StartServers": "start-servers.sh",
    "InstanceActivatedEvent": "instance-activated.sh",
    "ArtifactUpdatedEvent": "artifacts-updated.sh",
    "CopyArtifacts": "artifacts-copy.sh",
    "clean": "clean.sh",
    "VolumeMount": "mount-volumes.sh",
    "MemberActivatedEvent": "member-activated.sh",
    "MemberTerminatedEvent": "member-terminated.sh",
    "MemberSuspendedEvent": "member-suspended.sh",
    "MemberStartedEvent": "member-started.sh",
    "CompleteTopologyEvent": "complete-topology.sh",
    "CompleteTenantEvent": "complete-tenant.sh",
    "DomainMappingAddedEvent": "domain-mapping-added.sh",
    "DomainMappingRemovedEvent": "domain-mapping-removed.sh",
})
"""The Java agent's (and the Puppet templates') script name for each event that has one."""

OUTPUT_LIMIT = 64 * 1024
"""How much of a script's stdout, and of its stderr, is logged (the rest is counted, not shown)."""

STOP_GRACE = 2.0
"""Seconds a script still running when the agent stops gets between SIGTERM and SIGKILL."""

# The environment a script starts from, besides its STRATOS_ values: enough to find programs and decode text.
_BASE_ENV = ("PATH", "HOME", "LANG")
# How long to wait for a killed script to be reaped; SIGKILL cannot be ignored, so this is only a guard.
_REAP_TIMEOUT = 5.0
# How long kill_now, called from a signal handler, waits for the runner's lock before killing regardless.
_LOCK_TIMEOUT = 1.0
# Without pidfds (Linux before 5.3), how often a script is looked at to see whether it has exited.
_POLL_INTERVAL = 0.05
# Beyond the project-wide secret names: anything naming a key or a passphrase.
_SECRET_EXTRA = re.compile(r"KEY|PASSPHRASE", re.IGNORECASE)
_WORDS = re.compile(r"(\s+)")
# Values too common to be masked in output without garbling it; they are never secrets.
_NOT_SECRET_VALUES = frozenset({"", "true", "false", "null", "none"})


# --- Values -----------------------------------------------------------------------------------------------


def _json_hook(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


def as_text(value: object) -> str:
    """The string form of one value: booleans as ``true``/``false``, collections and wire objects as JSON.

    A :class:`~pca_core.Secret` gives its value: the extension needs it, and it is never logged from here.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, Mapping | list | tuple | set | frozenset | msgspec.Struct):
        return msgspec.json.encode(value if not isinstance(value, Mapping) else dict(value),
                                   enc_hook=_json_hook).decode()
    return str(value)


def _lb_ips(topology: TopologyModel, lb_cluster_id: str) -> tuple[str | None, str | None]:
    # The first member of the load balancer's cluster that has an address, as the original took the first
    # member whose cluster id matched.
    cluster = topology.cluster(lb_cluster_id)
    for member in (cluster.member_map or {}).values() if cluster is not None else ():
        if member.default_private_ip or member.default_public_ip:
            return member.default_private_ip, member.default_public_ip
    return None, None


def _properties(into: dict[str, object], prefix: str, properties: Mapping[str, str] | None) -> None:
    for key, value in (properties or {}).items():
        into[f"{prefix}{key}"] = value


def extension_values(event: str, config: Config, topology: TopologyModel | None, *,
                     mb_ip: str | None = None, extra: Mapping[str, object] | None = None) -> dict[str, str]:
    """The values an extension of ``event`` receives (``original-agent.md`` §5.3), keys without the prefix.

    In order, later keys overwriting earlier ones of the same name:

    1. the common values: ``MB_IP``, ``APPLICATION_PATH``, ``PARAM_FILE_PATH``, ``PERSISTENCE_MAPPINGS``,
       ``LB_IP`` and ``LB_PUBLIC_IP`` (the default private and public IP of a member of the cluster
       ``LB_CLUSTER_ID`` in the topology, else ``lb_private_ip``/``lb_public_ip`` of the configuration),
       and ``SERVICE_PROPERTY_<k>``, ``CLUSTER_PROPERTY_<k>``, ``MEMBER_PROPERTY_<k>`` for each property
       of this instance's service, cluster and member that the topology holds;
    2. every payload parameter;
    3. ``extra``, the event's own keys.

    Then unset (None) values are dropped, every other value is made a string (see :func:`as_text`), and
    ``EVENT`` is set to ``event``.

    Args:
        event: the extendable event's name, e.g. ``InstanceStartedEvent``.
        config: the agent's configuration.
        topology: the topology model, or None when there is none yet.
        mb_ip: the host of the broker the agent is connected to.
        extra: the event's own keys, e.g. ``ARTIFACT_UPDATED_REPO_URL``; values of any type.
    """
    identity = config.identity
    agent = config.agent
    values: dict[str, object] = {
        "MB_IP": mb_ip,
        "APPLICATION_PATH": agent.application_path or identity.application_path,
        "PARAM_FILE_PATH": agent.payload_file,
        "PERSISTENCE_MAPPINGS": identity.persistence_mapping,
    }
    lb_private = lb_public = None
    if topology is not None:
        with topology.lock:  # the dispatcher thread updates the model while a worker reads it here
            if identity.lb_cluster_id:
                lb_private, lb_public = _lb_ips(topology, identity.lb_cluster_id)
            service = topology.service(identity.service_name)
            cluster = topology.cluster(identity.cluster_id)
            member = topology.member(identity.member_id) if identity.member_id else None
            _properties(values, "SERVICE_PROPERTY_", service.properties if service is not None else None)
            _properties(values, "CLUSTER_PROPERTY_", cluster.properties if cluster is not None else None)
            _properties(values, "MEMBER_PROPERTY_", member.properties if member is not None else None)
    values["LB_IP"] = lb_private or agent.lb_private_ip
    values["LB_PUBLIC_IP"] = lb_public or agent.lb_public_ip
    values.update(config.payload)
    values.update(extra or {})
    result = {key: as_text(value) for key, value in values.items() if value is not None}
    result["EVENT"] = event
    return result


# --- Masking ----------------------------------------------------------------------------------------------


def _is_secret(key: str) -> bool:
    return is_secret_key(key) or bool(_SECRET_EXTRA.search(key))


class _Masker:
    """Masks the secret values of one run, and credentials in URLs, in text about to be logged."""

    def __init__(self, values: Mapping[str, str]) -> None:
        secrets = {value for key, value in values.items()
                   if _is_secret(key) and value.strip().lower() not in _NOT_SECRET_VALUES}
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted(secrets, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        if "://" not in text:
            return text
        # A credentialed URL holds no white space; masking word by word keeps the regex off long runs of
        # text, on which its backtracking grows with the square of the length.
        return "".join(mask_credentials(word) if "://" in word else word for word in _WORDS.split(text))


# --- Running ----------------------------------------------------------------------------------------------


def script_names(event: str) -> tuple[str, ...]:
    """The script names looked up for ``event``, in order: the PCA's name, then the Java agent's."""
    names = [f"{event}.sh"]
    java = JAVA_SCRIPT_NAMES.get(event)
    if java is not None and java not in names:
        names.append(java)
    return tuple(names)


def _valid_env(key: str, value: str) -> bool:
    # execve cannot carry a NUL anywhere, nor an '=' in a name.
    return bool(key) and "=" not in key and "\0" not in key and "\0" not in value


def _signal_groups(processes: Sequence[subprocess.Popen[bytes]], signum: int) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)


def _exited(processes: Sequence[subprocess.Popen[bytes]], timeout: float) -> bool:
    """Waits up to ``timeout`` seconds for every process to exit, without reaping any; True if all did."""
    deadline = time.monotonic() + timeout
    fds: list[int] = []  # each readable once its process has exited
    try:
        try:
            for process in processes:
                fds.append(os.pidfd_open(process.pid))
        except OSError:
            return _exited_by_polling(processes, deadline)
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        pending = len(fds)
        while pending:
            ready = poller.poll(max(deadline - time.monotonic(), 0.0) * 1000)
            if not ready:
                return False
            for fd, _ in ready:
                poller.unregister(fd)
            pending -= len(ready)
        return True
    finally:
        for fd in fds:
            os.close(fd)


def _exited_by_polling(processes: Sequence[subprocess.Popen[bytes]], deadline: float) -> bool:
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT  # WNOWAIT: look, but leave it to be reaped
    while not all(os.waitid(os.P_PID, process.pid, flags) is not None for process in processes):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(_POLL_INTERVAL, left))
    return True


def _read_bounded(handle: IO[bytes]) -> tuple[str, int]:
    """The first OUTPUT_LIMIT bytes of a finished output file as text, and how many bytes it holds."""
    size = os.fstat(handle.fileno()).st_size
    handle.seek(0)
    return handle.read(OUTPUT_LIMIT).decode("utf-8", errors="replace"), size


class ExtensionRunner:
    """Runs the extensions of an event: its bash script, then the Python handlers that want it.

    Runs on the caller's thread and starts none of its own; a script blocks the caller until it exits or
    its timeout expires. The scripts running now are tracked, one per calling thread at most (the agent
    calls from its lifecycle thread only), so that :meth:`close` and :meth:`kill_now` can end them.

    Args:
        extensions_dir: the directory of the bash scripts; None runs handlers only.
        handlers: the Python event handlers, called in this order.
        context: what the handlers get besides the values.
        timeout: seconds a script may run before its process group is killed.
    """

    def __init__(self, extensions_dir: Path | None, handlers: Sequence[EventHandler], context: HandlerContext,
                 *, timeout: float = 60.0) -> None:
        self.extensions_dir = extensions_dir
        self.handlers = tuple(handlers)
        self.context = context
        self.timeout = timeout
        # Scripts started and not yet reaped, by process id. A script is dropped from here before it is
        # reaped, both under the lock: while it is here its id (which is also its process group's id)
        # cannot have been reused, so signalling the group reaches only what the script started.
        # Reentrant: kill_now may run in a signal handler on a thread that holds it.
        self._running: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}
        # The mode last warned about, per script or directory: a warning once per path and mode. Bounded:
        # the paths are the extensions directory and the scripts named after the extendable events.
        self._warned: dict[Path, int] = {}
        self._lock = threading.RLock()
        self._closed = False
        self.runs = 0  # scripts and handlers run
        self.failures = 0  # those that failed (a script's non-zero exit, timeout, a handler that raised)

    def run(self, event: str, values: Mapping[str, str]) -> bool:
        """Runs the script of ``event``, if there is one, then every handler that wants ``event``.

        A missing script is not an error. Handlers run even when the script failed.

        Args:
            event: the extendable event's name.
            values: the values, keys without the ``STRATOS_`` prefix (see :func:`extension_values`).

        Returns:
            True when the script, if any, exited with 0 and no handler raised.
        """
        texts = {str(key): as_text(value) for key, value in values.items()}
        mask = _Masker(texts)
        ok = True
        script = self.find_script(event)
        if script is not None:
            ok = self._counted(self._run_script(event, script, texts, mask))
        view = MappingProxyType(texts)  # one handler cannot change what the next one gets
        for handler in self.handlers:
            if handler.wants(event):
                ok = self._counted(self._run_handler(handler, event, view, mask)) and ok
        return ok

    def _counted(self, ok: bool) -> bool:
        self.runs += 1
        self.failures += not ok
        return ok

    def wants(self, event: str) -> bool:
        """Whether anything runs for ``event``: a script, or a handler that wants it.

        Lets the caller skip working out the event's values (the whole topology as JSON, for one) when
        nothing would read them.
        """
        return self.find_script(event) is not None or any(handler.wants(event) for handler in self.handlers)

    def find_script(self, event: str) -> Path | None:
        """The script to run for ``event``: the first of :func:`script_names` that is a readable file."""
        directory = self.extensions_dir
        if directory is None:
            return None
        if not event or "/" in event or "\0" in event or event.startswith("."):
            _log.warning("no extension script for %r: not a valid event name", event)
            return None
        for name in script_names(event):
            path = directory / name
            if path.is_file() and (os.access(path, os.X_OK) or os.access(path, os.R_OK)):
                self._check_mode(directory, "directory")
                self._check_mode(path, "script")
                return path
        _log.debug("no extension script for %s in %s (looked for %s)", event, directory,
                   ", ".join(script_names(event)))
        return None

    def _check_mode(self, path: Path, what: str) -> None:
        """Warns, once per path and mode, when the group or others may write ``path``.

        The script still runs: refusing it would stop the lifecycle on installs that worked before.
        """
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            return
        writers = [who for who, bit in (("its group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit]
        if not writers or self._warned.get(path) == mode:
            return
        self._warned[path] = mode
        _log.warning("extension %s %s is writable by %s (mode %04o): whoever can write it runs commands as "
                     "this agent's user. It runs all the same; to fix: chmod go-w %s", what, path,
                     " and ".join(writers), mode, path)

    # --- The script --------------------------------------------------------------------------------------

    def _environment(self, event: str, values: Mapping[str, str]) -> dict[str, str]:
        env = {name: os.environ[name] for name in _BASE_ENV if name in os.environ}
        env.setdefault("PATH", os.defpath)
        for key, value in values.items():
            name = ENV_PREFIX + key
            if _valid_env(name, value):
                env[name] = value
            else:
                _log.warning("%s extension: value %r not passed: its name or value holds NUL or '='",
                             event, key)
        return env

    def _run_script(self, event: str, script: Path, values: Mapping[str, str], mask: _Masker) -> bool:
        argv = [str(script)]
        if event == "VolumeMount":
            mapping = values.get("VALUE1") or values.get("PERSISTENCE_MAPPINGS")
            if mapping and "\0" not in mapping:
                argv.append(mapping)
        env = self._environment(event, values)
        cwd = script.parent
        started = time.monotonic()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            # Output goes to files, not pipes: a server the script leaves running in the background keeps
            # its copy of stdout open, and a pipe would then make the agent wait for the server to exit.
            with self._lock:
                if self._closed:
                    _log.warning("%s extension %s not started: the agent is stopping", event, script)
                    return False
                try:
                    process = self._start(argv, script, env, cwd, out, err)
                except OSError as exc:
                    _log.error("%s extension %s could not be started: %s", event, script, exc.strerror or exc)
                    return False
                self._running[process.pid] = (event, process)
            code = self._wait(process, self.timeout)
            if code is None:
                self._kill(process)
                _log.error("%s extension %s timed out after %.1f s; its process group was killed",
                           event, script, self.timeout)
                self._log_output(event, out, err, mask, logging.WARNING)
                return False
            elapsed = time.monotonic() - started
            if code == 0:
                _log.info("%s extension %s finished in %.2f s", event, script.name, elapsed)
                self._log_output(event, out, err, mask, logging.INFO)
                return True
            described = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
            _log.error("%s extension %s failed: %s after %.2f s", event, script, described, elapsed)
            self._log_output(event, out, err, mask, logging.WARNING)
            return False

    @staticmethod
    def _start(argv: list[str], script: Path, env: dict[str, str], cwd: Path, out: IO[bytes],
               err: IO[bytes]) -> subprocess.Popen[bytes]:
        def popen(command: list[str]) -> subprocess.Popen[bytes]:
            return subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True, close_fds=True)

        if not os.access(script, os.X_OK):
            return popen(["/bin/bash", *argv])
        try:
            return popen(argv)
        except OSError as exc:
            if exc.errno != errno.ENOEXEC:
                raise
            # An executable without a "#!" line: run it with bash, as a shell would.
            return popen(["/bin/bash", *argv])

    def _wait(self, process: subprocess.Popen[bytes], timeout: float) -> int | None:
        """The script's exit code once it exited and was reaped; None if it still runs after ``timeout``."""
        if not _exited([process], timeout):
            return None
        with self._lock:
            del self._running[process.pid]
        return process.wait()  # it has exited: this only reaps it

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        # The script leads its own session and process group (start_new_session), so this reaches what it
        # started too. It is not reaped yet, so its id cannot have been reused.
        _signal_groups([process], signal.SIGKILL)
        if self._wait(process, _REAP_TIMEOUT) is None:
            _log.error("extension process %d did not exit after SIGKILL", process.pid)

    # --- Stopping ----------------------------------------------------------------------------------------

    def close(self, grace: float = STOP_GRACE) -> None:
        """Ends the scripts running now, and starts none from now on. Idempotent.

        Each running script's process group gets SIGTERM; once every script has exited, or after ``grace``
        seconds, the groups get SIGKILL, so that nothing a script started outlives the agent. The threads
        running the scripts then see them fail, as killed by a signal. Handlers are not affected.

        Args:
            grace: seconds the scripts get to exit after SIGTERM.
        """
        with self._lock:
            self._closed = True
            if not self._running:
                return
            for event, process in self._running.values():
                _log.warning("stopping: the %s extension (process %d) is still running; its process group "
                             "gets SIGTERM, and SIGKILL after %.1f s", event, process.pid, grace)
            processes = [process for _, process in self._running.values()]
            _signal_groups(processes, signal.SIGTERM)
            # The lock is held throughout, so no script is reaped meanwhile and each group id stays valid.
            _exited(processes, grace)
            _signal_groups(processes, signal.SIGKILL)

    def kill_now(self) -> None:
        """Sends SIGKILL to the process group of every script running now, and starts none from now on.

        For an agent about to exit at once (a second stop signal): it neither waits for the scripts nor
        logs, so that it is safe in a signal handler.
        """
        locked = self._lock.acquire(timeout=_LOCK_TIMEOUT)
        try:
            self._closed = True
            running = list(self._running.values())  # one step: it may run without the lock
            _signal_groups([process for _, process in running], signal.SIGKILL)
        finally:
            if locked:
                self._lock.release()

    @staticmethod
    def _log_output(event: str, out: IO[bytes], err: IO[bytes], mask: _Masker, stderr_level: int) -> None:
        for stream, handle, level in (("stdout", out, logging.INFO), ("stderr", err, stderr_level)):
            text, size = _read_bounded(handle)
            if not size or not _log.isEnabledFor(level):
                continue
            more = f" [{size - OUTPUT_LIMIT} more bytes not shown]" if size > OUTPUT_LIMIT else ""
            _log.log(level, "%s extension %s:\n%s%s", event, stream, mask(text.rstrip("\n")), more)

    # --- The handlers ------------------------------------------------------------------------------------

    def _run_handler(self, handler: EventHandler, event: str, values: Mapping[str, str],
                     mask: _Masker) -> bool:
        name = type(handler).__name__
        try:
            handler.handle(event, values, self.context)
        except Exception as exc:
            # Formatted here rather than with exc_info, so that a secret in the message is masked too.
            trace = "".join(traceback.format_exception(exc))
            _log.error("event handler %s failed on %s:\n%s", name, event, mask(trace.rstrip("\n")))
            return False
        _log.debug("event handler %s handled %s", name, event)
        return True
