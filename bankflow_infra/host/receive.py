"""``receive --stdin [--deploy]``: a release bundle sent on stdin, written as a release dir.

Stdlib only. The Pulumi deploy command sends the whole bundle -- secret files included -- as
one JSON document on SSH stdin: ``{"digest": HEX64, "files": [{"path", "mode", "text"}]}``
(``render.remote_payloads.deploy_payload``). Nothing of it is ever printed: errors name paths only.
The digest is recomputed here, so a truncated or altered payload is refused before it is used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Final

from ..contract.exit_codes import OK
from ..contract.layout import SECRET_DIR_MODE, SECRET_FILE_MODE, HostPaths
from ..contract.release import digest_files, is_secret_path, release_id
from . import state as st
from .context import Context
from .deploy import cmd_deploy
from .files import check_free_space
from .manifest import ManifestError
from .reconcile import reconcile
from .release_dir import STATE_HEADROOM

MAX_PAYLOAD_BYTES: Final = 256 * 1024 * 1024
_DIGEST_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_PATH_RE: Final = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")


@dataclass(frozen=True)
class PayloadFile:
    path: str
    mode: int
    content: bytes


def _is_secret(path: str) -> bool:
    return is_secret_path(path)


def parse_payload(raw: bytes) -> tuple[str, tuple[PayloadFile, ...]]:
    """(digest, files) of a received payload, or :class:`ManifestError` with every problem."""
    problems: list[str] = []
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ManifestError("stdin payload", [f"not JSON: {exc.__class__.__name__}"]) from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise ManifestError("stdin payload", ["expected {digest, files: [...]}"])
    digest = data.get("digest")
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        problems.append("digest: expected 64 lowercase hex chars")
    files: list[PayloadFile] = []
    for index, item in enumerate(data["files"]):
        path = item.get("path") if isinstance(item, dict) else None
        mode = item.get("mode") if isinstance(item, dict) else None
        text = item.get("text") if isinstance(item, dict) else None
        # only names that stay inside the release dir: no absolute paths, no `..`
        if not isinstance(path, str) or not _PATH_RE.match(path) or ".." in PurePosixPath(path).parts:
            problems.append(f"files[{index}].path: refused {path!r}")
            continue
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o777:
            problems.append(f"files[{index}] ({path}): mode must be 0..0o777")
            continue
        if not isinstance(text, str):
            problems.append(f"files[{index}] ({path}): text must be a string")
            continue
        files.append(PayloadFile(path, mode, text.encode()))
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        problems.append("files: duplicate paths")
    if not problems and digest_files((f.path, f.mode, f.content) for f in files) != digest:
        problems.append("digest: does not match the files (truncated or altered payload)")
    if problems:
        raise ManifestError("stdin payload", problems)
    assert isinstance(digest, str)  # for mypy: checked above
    return digest, tuple(files)


def write_release(paths: HostPaths, digest: str, files: Sequence[PayloadFile]) -> Path:
    """Write the files as ``releases/<release>`` (temp dir + rename): secrets 0600 in a 0700 dir."""
    release = release_id(digest)
    target = paths.release_dir(release)
    size = sum(len(item.content) for item in files)
    check_free_space(paths.releases, 2 * size + STATE_HEADROOM, f"release {release}")
    tmp = paths.releases / f".{release}.incoming-{os.getpid()}"  # reconcile prunes leftovers
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(mode=0o755)
    for item in files:
        dest = tmp / item.path
        if _is_secret(item.path):
            dest.parent.mkdir(mode=SECRET_DIR_MODE, parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
        st.write_atomic(dest, item.content, SECRET_FILE_MODE if _is_secret(item.path) else item.mode)
    st.lock_down_secrets(tmp / "secrets")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def read_limited(stream: BinaryIO) -> bytes:
    data = stream.read(MAX_PAYLOAD_BYTES + 1)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ManifestError("stdin payload", [f"larger than {MAX_PAYLOAD_BYTES} bytes"])
    return data


def cmd_receive(ctx: Context, stdin: BinaryIO, deploy: bool) -> int:
    digest, files = parse_payload(read_limited(stdin))  # refused before the host is touched
    reconcile(ctx)
    release = release_id(digest)
    current = st.read_current(ctx.paths)
    if current is not None and current.release == release:
        # never rewrite the serving release's dir; the deploy below says it is a no-op
        target = ctx.paths.release_dir(release)
    else:
        target = write_release(ctx.paths, digest, files)
        ctx.say(f"receive {release}: {len(files)} files in {target}")
    if not deploy:
        return OK
    return cmd_deploy(ctx, target, release, reconciled=True)
