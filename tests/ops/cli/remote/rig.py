"""A "droplet" on loopback for the over-SSH tests: the real sshd, the real host agent.

- sshd: tests/support/sshd.py's ``SshServer`` (the droplet's hardening drop-in, a fresh pinned host
  key), with ``SetEnv`` giving each SSH session the test host's environment: BANKFLOW_HOME (a
  temporary dir instead of /opt/bankflow), PATH with the docker stand-in first,
  BANKFLOW_VERIFY_URL (the agent's "nginx as seen from the host", here ``VerifyServer``) and the
  stand-in's journal.
- the agent: the shipped files (launcher + ``bankflow_infra/host``), unpacked into a temporary
  bin dir -- from the registered bootstrap payload in the deploy test, from the same
  ``agent_files()`` elsewhere -- and run by the launcher with the system python3.
- Docker: ``docker_standin.py`` (Docker has no engine here), behind a ``docker`` wrapper.
- nginx as seen from the host: ``VerifyServer`` answers the agent's verify step (GET /health
  per public hostname) and records what was asked. There is no real nginx in this rig: the
  rendered nginx config runs for real in tests/host/test_zero_downtime_rendered.py.
"""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bankflow_infra.ops.plan import PlanResult
from tests.support.outputs import outputs_document
from tests.support.sshd import SshServer, generate_ed25519_key

STANDIN = Path(__file__).with_name("docker_standin.py")
COMMAND_TYPE = "command:remote:Command"
SSH_TIMEOUT_SECONDS = 180


class VerifyServer:
    """Plays nginx for the agent's verify step: 200 on /health, every request recorded."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append((self.headers.get("Host", ""), self.path))
                status = 200 if self.path == "/health" else 404
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> VerifyServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def registered_commands(result: PlanResult) -> dict[str, Any]:
    """name -> registration of the program's remote commands (``host-deploy`` -> ``deploy``)."""
    return {r.name.removeprefix("host-"): r for r in result.recorder.of_type(COMMAND_TYPE)}


def registered_payload(result: PlanResult) -> tuple[bytes, str]:
    """(the deploy command's stdin exactly as registered, the release id it creates)."""
    from bankflow_infra.ops.mocks import unwrap

    assert result.bundle is not None
    stdin: str = unwrap(registered_commands(result)["deploy"].inputs)["stdin"]
    return stdin.encode(), result.bundle.digest[:12]


def generate_other_host_key(directory: Path) -> str:
    """A fresh ed25519 public key: the same type as the pinned one, another key."""
    return generate_ed25519_key(directory / "impostor_host_key", "impostor")


def agent_entries_of_bootstrap(bootstrap_stdin: str) -> list[tuple[str, bytes, int]]:
    """The ``agent/`` entries of the registered bootstrap payload (base64 tar.gz), unprefixed."""
    entries = []
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(bootstrap_stdin)), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.startswith("agent/"):
                extracted = archive.extractfile(member)
                assert extracted is not None
                entries.append((member.name.removeprefix("agent/"), extracted.read(), member.mode))
    return entries


def install(bin_dir: Path, entries: Iterable[tuple[str, bytes, int]]) -> None:
    for path, content, mode in entries:
        target = bin_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)


@dataclass
class RemoteHost:
    root: Path
    verify: VerifyServer
    server: SshServer = field(init=False)

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.bin_dir = self.root / "bin"  # stands for /opt/bankflow/bin
        self.standin_bin = self.root / "standin-bin"
        self.journal_path = self.root / "docker-journal.jsonl"
        for path in (self.home, self.bin_dir, self.standin_bin):
            path.mkdir(parents=True)
        docker = self.standin_bin / "docker"
        docker.write_text(f'#!/bin/sh\nexec {sys.executable} {STANDIN} "$@"\n')
        docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
        env = " ".join(f"{key}={value}" for key, value in self.session_env().items())
        self.server = SshServer(self.root / "sshd", extra_config=[f"SetEnv {env}"])

    def session_env(self) -> dict[str, str]:
        return {
            "BANKFLOW_HOME": str(self.home),
            "BANKFLOW_VERIFY_URL": self.verify.url,
            # The loopback verify listener (127.0.0.1:8443 on a droplet): the same recording server here.
            "BANKFLOW_CANDIDATE_URL": self.verify.url,
            "BANKFLOW_DOCKER_STANDIN_JOURNAL": str(self.journal_path),
            "PATH": f"{self.standin_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        }

    @property
    def agent(self) -> Path:
        return self.bin_dir / "bankflow-agent"

    # ------------------------------------------------------------------ client side
    def ssh(self, command: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """The harness's own pinned ssh client (what Pulumi's remote command does)."""
        return subprocess.run(
            self.server.ssh_argv(command),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=SSH_TIMEOUT_SECONDS,
            check=False,
        )

    def outputs_document(self, **overrides: Any) -> dict[str, Any]:
        """Staging's outputs, with `ssh` pointing at this sshd and the deploy key = its client key."""
        document = outputs_document(origin_certificate=None)
        document["ssh"] = {
            "host": self.server.host,
            "port": self.server.port,
            "user": self.server.user,
            "host_public_key": self.server.host_public_key,
        }
        document["deploy_private_key"] = self.server.client_private_key_path.read_text()
        document.update(overrides)
        return document

    def write_outputs(self, name: str = "outputs.json", **overrides: Any) -> str:
        path = self.root / name
        path.write_text(json.dumps(self.outputs_document(**overrides)))
        return str(path)

    def agent_locally(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """The installed agent run directly (no SSH), in the sessions' environment: test set-up."""
        return subprocess.run(
            [str(self.agent), *args],
            input=stdin,
            capture_output=True,
            env={**os.environ, **self.session_env()},
            timeout=SSH_TIMEOUT_SECONDS,
            check=False,
        )

    # ------------------------------------------------------------------ what happened
    def journal(self) -> list[list[str]]:
        if not self.journal_path.exists():
            return []
        return [json.loads(line)["argv"] for line in self.journal_path.read_text().splitlines()]

    def audit(self) -> list[dict[str, Any]]:
        path = self.home / "state" / "audit.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def current(self) -> str | None:
        """The serving release id, from the agent's state."""
        path = self.home / "state" / "current.json"
        return str(json.loads(path.read_text())["release"]) if path.exists() else None

    def logins(self) -> int:
        """Sessions sshd accepted so far (its log): proves whether a command connected at all."""
        return self.server.log_text().count("Accepted publickey")
