"""LocalProcessRuntime: stands in for Docker, which has no engine on this machine.

It implements the agent's :class:`~bankflow_infra.host.runtime.Runtime` with local processes:
"starting a release" launches one small HTTP server per app service (``standin_server.py``) on
a free loopback port, and upstream addresses are ``127.0.0.1:<port>``. nginx is the REAL local
nginx: ``nginx -t`` / ``nginx -s reload`` / the master process started for the base project.
What it cannot stand in for -- compose files, images, registries, migrations -- it records in a
journal (``journal.jsonl``) that the tests read.

Images: ``registry.json`` in the run dir maps an image reference to the digest it resolves to
(a reference not in it resolves to a digest of its own text), so a test can move a tag to a new
image. ``fingerprints`` reads the base compose file (YAML) as compose would print it with
``--resolve-image-digests``. ``replace_nginx`` starts a SECOND real nginx master with the same
config (its listeners carry ``reuseport``, as two containers sharing the port holder's network
namespace do), checks it runs and its config passes ``nginx -t``, then sends the old master SIGQUIT
(what ``docker stop`` sends an nginx container) and waits until it has exited.

Markers a test puts into a bundle dir to make a step fail:
``standin-unhealthy`` (service names, one a line: /health answers 503), ``standin-fail-pull``,
``standin-fail-migrate``, ``standin-fail-validate``, ``standin-fail-through-nginx`` (healthy to
the runtime's own check, 502 to every request that came through nginx),
``standin-die-after-public`` (seconds: the servers exit that long after their first PUBLIC
request, i.e. after the public switch), ``standin-unhealthy-after-public`` (/health 503 from
the first public request on).

Every piece of state lives in files (the nginx master's pid file, ``standin.json``), never only in
this object: the fault tests run the agent in a child process they SIGKILL, and the next command
(another process, another instance) must see the same "containers" and the same nginx.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from bankflow_infra.contract.release import BASE_PROJECT, app_project_name
from bankflow_infra.host.manifest import load_manifest
from bankflow_infra.host.runtime import Project, RuntimeFailure

SERVER_SCRIPT = Path(__file__).with_name("standin_server.py")
SERVER_MAX_SECONDS = 600.0


class LocalProcessRuntime:
    """LocalProcessRuntime: stands in for Docker, which has no engine on this machine."""

    def __init__(self, run_dir: Path, nginx: str, nginx_conf: Path) -> None:
        self.run_dir = run_dir
        self.nginx = nginx
        self.nginx_conf = nginx_conf
        self.prefix = run_dir / "nginx-prefix"
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.state_file = run_dir / "standin.json"
        self.journal_file = run_dir / "journal.jsonl"
        self.nginx_proc: subprocess.Popen[bytes] | None = None
        self.pid_file = run_dir / "nginx.pid"  # the fixture and rendered configs both put it here
        self._servers: dict[int, subprocess.Popen[bytes]] = {}

    # ------------------------------------------------------------------ bookkeeping
    def _state(self) -> dict[str, dict[str, dict[str, int]]]:
        if not self.state_file.exists():
            return {}
        data: dict[str, dict[str, dict[str, int]]] = json.loads(self.state_file.read_text())
        return data

    def _save(self, state: Mapping[str, object]) -> None:
        self.state_file.write_text(json.dumps(state))

    def _journal(self, call: str, **fields: object) -> None:
        with self.journal_file.open("a") as journal:
            journal.write(json.dumps({"call": call, **fields}) + "\n")

    def journal(self) -> list[dict[str, object]]:
        if not self.journal_file.exists():
            return []
        return [json.loads(line) for line in self.journal_file.read_text().splitlines()]

    def count_file(self, project: str, service: str) -> Path:
        return self.run_dir / f"{project}-{service}.count"

    def proxied_requests(self, release: str) -> int:
        """Requests that reached a release's servers THROUGH nginx."""
        return sum(int(p.read_text() or 0) for p in self.run_dir.glob(f"{app_project_name(release)}-*.count"))

    def _marker(self, project: Project, name: str) -> bool:
        return (project.bundle / name).exists()

    def _nginx_argv(self, *args: str) -> list[str]:
        return [
            self.nginx,
            "-p",
            str(self.prefix),
            "-e",
            str(self.run_dir / "nginx-stderr.log"),
            "-c",
            str(self.nginx_conf),
            *args,
        ]

    # ------------------------------------------------------------------ the Runtime interface
    def validate(self, project: Project) -> None:
        self._journal("validate", project=project.name)
        missing = [str(f) for f in project.files if not f.is_file()]
        if missing or self._marker(project, "standin-fail-validate"):
            raise RuntimeFailure(f"compose config of {project.name}: invalid ({missing or 'marker'})")

    def login(self, registry: str, username: str, password: bytes) -> None:
        # the password's length only: a journal is a log, and logs never hold secrets
        self._journal("login", registry=registry, username=username, password_len=len(password))

    def pull(self, project: Project, services: Sequence[str] = ()) -> None:
        self._journal("pull", project=project.name, services=list(services))
        if self._marker(project, "standin-fail-pull"):
            raise RuntimeFailure(f"pull of {project.name} exited 1: manifest unknown")

    def run_once(
        self, project: Project, service: str, command: Sequence[str], environment: Mapping[str, str] = {}
    ) -> None:
        entry = {"project": project.name, "service": service, "command": list(command)}
        # Only when set, so a single-droplet release journals exactly what it did before issue 13.
        self._journal("run_once", **entry, **({"environment": dict(environment)} if environment else {}))
        if self._marker(project, "standin-fail-migrate"):
            raise RuntimeFailure(f"{service} {' '.join(command)} exited 1: migration failed")

    def start(self, project: Project, services: Sequence[str] = ()) -> None:
        self._journal("start", project=project.name, services=list(services))
        if project.name == BASE_PROJECT:
            if "nginx" in services and not self._nginx_running():
                self._start_nginx()
            return
        manifest = load_manifest(project.bundle)
        unhealthy_file = project.bundle / "standin-unhealthy"
        unhealthy = set(unhealthy_file.read_text().split()) if unhealthy_file.exists() else set()
        state = self._state()
        running = state.setdefault(project.name, {})
        for spec in manifest.app_services:
            if (services and spec.name not in services) or spec.name in running:
                continue
            running[spec.name] = self._start_server(project, spec.name, spec.name in unhealthy)
        self._save(state)

    def _start_server(self, project: Project, service: str, unhealthy: bool) -> dict[str, int]:
        argv = [
            sys.executable,
            str(SERVER_SCRIPT),
            "--release",
            project.release,
            "--service",
            service,
            "--count-file",
            str(self.count_file(project.name, service)),
            "--max-seconds",
            str(SERVER_MAX_SECONDS),
        ]
        if unhealthy:
            argv.append("--unhealthy")
        if self._marker(project, "standin-fail-through-nginx"):
            argv.append("--fail-through-nginx")
        if self._marker(project, "standin-unhealthy-after-public"):
            argv.append("--unhealthy-after-public")
        die = project.bundle / "standin-die-after-public"
        if die.exists():
            argv += ["--die-after-public", die.read_text().strip() or "0"]
        # its own session: a SIGKILL of the agent's process group (the fault tests) leaves it running,
        # as a container outlives the agent that started it
        # stderr not inherited: a "container" must not hold the agent's output pipe open
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            proc.kill()
            proc.wait(5)
            raise RuntimeFailure(f"start of {project.name}: {service} did not start")
        self._servers[proc.pid] = proc
        return {"pid": proc.pid, "port": int(line.split()[1])}

    def wait_healthy(self, project: Project, services: Sequence[str], timeout: float) -> Mapping[str, bool]:
        deadline = time.monotonic() + timeout
        while True:
            health = self.health(project, services)
            if all(health.values()) or time.monotonic() >= deadline:
                return health
            time.sleep(0.1)

    def health(self, project: Project, services: Sequence[str]) -> Mapping[str, bool]:
        if project.name == BASE_PROJECT:
            return {s: (self._nginx_running() if s == "nginx" else True) for s in services}
        running = self._state().get(project.name, {})
        return {s: s in running and _get_ok(running[s]["port"]) for s in services}

    def upstream_address(self, release: str, service: str, port: int) -> str:
        running = self._state().get(app_project_name(release), {})
        if service not in running:
            raise RuntimeFailure(f"{service} of release {release} is not running")
        return f"127.0.0.1:{running[service]['port']}"

    def stop(self, project: Project) -> None:
        self._journal("stop", project=project.name)
        state = self._state()
        for server in state.pop(project.name, {}).values():
            self._terminate(server["pid"])
        self._save(state)

    def nginx_test(self) -> None:
        done = subprocess.run(self._nginx_argv("-t"), capture_output=True, check=False, timeout=30)
        self._journal("nginx_test", ok=done.returncode == 0)
        if done.returncode != 0:
            raise RuntimeFailure(f"nginx -t exited {done.returncode}: {done.stderr.decode().strip()[-300:]}")

    def nginx_reload(self) -> None:
        done = subprocess.run(self._nginx_argv("-s", "reload"), capture_output=True, check=False, timeout=30)
        self._journal("nginx_reload", ok=done.returncode == 0)
        if done.returncode != 0:
            raise RuntimeFailure(
                f"nginx -s reload exited {done.returncode}: {done.stderr.decode().strip()[-300:]}"
            )

    def projects(self) -> Sequence[str]:
        names = [BASE_PROJECT] if self._nginx_running() else []
        return [*names, *sorted(self._state())]

    def nginx_draining(self) -> int:
        master = self._nginx_pid()
        if master is None:
            return 0
        return len(_children_titled(master, "nginx: worker process is shutting down"))

    # ------------------------------------------------------------------ base services (issue 12)
    def resolve(self, image: str) -> str:
        registry = self.run_dir / "registry.json"
        known = json.loads(registry.read_text()) if registry.is_file() else {}
        return str(known.get(image) or "sha256:" + hashlib.sha256(image.encode()).hexdigest())

    def fingerprints(self, project: Project, services: Sequence[str]) -> Mapping[str, str]:
        self._journal("fingerprints", project=project.name, services=list(services))
        documents = [yaml.safe_load(f.read_text()) for f in project.files if f.is_file()]
        defined: dict[str, dict[str, object]] = {}
        for document in documents:
            if isinstance(document, dict) and isinstance(document.get("services"), dict):
                defined.update(document["services"])
        result = {}
        for name in services:
            body = defined.get(name)
            if isinstance(body, dict):
                resolved = {k: v for k, v in body.items() if k != "labels"}
                if "image" in resolved:
                    resolved["image"] = f"{resolved['image']}@{self.resolve(str(resolved['image']))}"
                result[name] = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()
        return result

    def recreate(self, project: Project, services: Sequence[str]) -> None:
        self._journal("recreate", project=project.name, services=list(services))

    def replace_nginx(self, project: Project, timeout: float, drain: float) -> str:
        self._journal("replace_nginx", project=project.name)
        old = self._nginx_pid()
        if old is None:
            self._start_nginx()
            return "started (no nginx was running)"
        old_proc, self.nginx_proc = self.nginx_proc, None
        self._start_nginx()  # binds beside the old master: both listen with reuseport
        new = self.nginx_proc
        assert new is not None
        test = subprocess.run(self._nginx_argv("-t"), capture_output=True, check=False, timeout=30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not _children_titled(new.pid, "nginx: worker process"):
            time.sleep(0.05)
        if new.poll() is not None or test.returncode != 0 or not _children_titled(new.pid, "nginx: worker"):
            with contextlib.suppress(ProcessLookupError):
                new.kill()
            new.wait(5)
            self.pid_file.write_text(f"{old}\n")
            raise RuntimeFailure("new nginx not healthy, the running one kept")
        os.kill(old, signal.SIGQUIT)
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline and _alive(old):
            if old_proc is not None:
                old_proc.poll()  # reap it: an exited child of ours stays a zombie otherwise
            time.sleep(0.05)
        self._journal("replace_nginx_done", old=old, new=new.pid, old_alive=_alive(old))
        # the old master removed the shared pid file on its way out (separate files in containers)
        self.pid_file.write_text(f"{new.pid}\n")
        return f"nginx {new.pid} serving beside {old}, which quit gracefully"

    def remove_images(self, images: Sequence[str]) -> None:
        self._journal("remove_images", images=list(images))

    def logs(self, project: Project, services: Sequence[str], tail: int, follow: bool) -> int:
        # No containers, so no container logs: one line saying what would be shown.
        self._journal("logs", project=project.name, services=list(services), tail=tail, follow=follow)
        print(f"standin logs {project.name} {' '.join(services) or '(all)'} tail={tail}", flush=True)
        return 0

    def _terminate(self, pid: int) -> None:
        proc = self._servers.pop(pid, None)
        if proc is None:  # started by another stand-in instance: not our child to wait for
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            return
        proc.terminate()  # SIGTERM: the server finishes requests in flight, then exits
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    # ------------------------------------------------------------------ nginx process
    def _nginx_pid(self) -> int | None:
        if self.nginx_proc is not None and self.nginx_proc.poll() is None:
            return self.nginx_proc.pid
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid if _is_nginx(pid) else None

    def _nginx_running(self) -> bool:
        return self._nginx_pid() is not None

    def _start_nginx(self) -> None:
        # in the foreground, as in the container; its own session, so killing an agent process
        # group leaves it running (the container outlives the agent); teardown stops it by pid
        stderr_path = self.pid_file.with_name("nginx-stderr.log")
        with stderr_path.open("ab") as stderr:  # why it exited, for the failure message
            self.nginx_proc = subprocess.Popen(
                self._nginx_argv("-g", "daemon off;"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self._pid_file_names(self.nginx_proc.pid):
            time.sleep(0.05)
        if self.nginx_proc.poll() is not None:
            tail = stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeFailure("nginx did not start: " + (" | ".join(tail) or "no output"))

    def _pid_file_names(self, pid: int) -> bool:
        try:
            return self.pid_file.read_text().strip() == str(pid)
        except OSError:
            return False

    def shutdown(self) -> None:
        """Stop every process this stand-in started (test teardown)."""
        for project in list(self._state()):
            with contextlib.suppress(Exception):
                self.stop(Project(project, self.run_dir, (), None, ""))
        pid = self._nginx_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                if self.nginx_proc is not None and self.nginx_proc.pid == pid:
                    self.nginx_proc.poll()
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.nginx_proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.nginx_proc.wait(5)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _is_nginx(pid: int) -> bool:
    try:
        return b"nginx" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _children_titled(parent: int, title: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and cmdline.startswith(title):
            found.append(int(entry.name))
    return found


def _get_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
