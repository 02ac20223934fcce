"""Run ``uploads-seed`` in a child process the test can SIGKILL at a chosen point.

    python -m tests.host.uploads.seed_child HOME SOURCE_STACK restore|move

``restore``: restic restores throttled (300 KiB/s), so the parent's kill of the process group
lands while restic writes into the scratch dir. ``move``: the child kills itself (SIGKILL) right
after the first entry was moved into place, between two renames.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.host.backups import uploads_restic, uploads_seed
from bankflow_infra.host.context import Context, Options
from bankflow_infra.host.runtime import Completed


def main(home: str, source: str, kill_in: str) -> None:
    real_run, real_move = uploads_restic.run_process, uploads_seed._move_into_place

    def throttled(argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> Completed:
        extra = ["--limit-download", "300"] if "restore" in argv else []
        print("restoring" if extra else "listing", flush=True)
        return real_run([*argv, *extra], env=env, timeout=timeout)

    def move_then_die(source: Path, target: Path) -> None:
        real_move(source, target)
        print(f"moved {target.name}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    if kill_in == "restore":
        uploads_restic.run_process = throttled
    else:
        uploads_seed._move_into_place = move_then_die  # type: ignore[assignment]
    ctx = Context(HostPaths(Path(home)), None, Options(), "test", io.StringIO(), io.StringIO())  # type: ignore[arg-type]
    print(uploads_seed.seed_uploads(ctx, uploads_seed.Request(source, None)), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
