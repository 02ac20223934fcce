"""Run the uploads migration in a child process the test can SIGKILL at a chosen point.

    python -m tests.host.uploads.migrate_child HOME VOLUME copy|link

Prints one line per copied file ("copied NAME") and "linking" before the switch's symlink, and
then pauses there, so the parent's kill lands exactly in that step.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.host.backups import uploads_migrate
from bankflow_infra.host.context import Context, Options


def main(home: str, volume: str, pause_in: str) -> None:
    copy_file, link = uploads_migrate._copy_file, uploads_migrate._link

    def slow_copy(src: Path, dst: Path) -> int:
        done = copy_file(src, dst)
        print(f"copied {src.name}", flush=True)
        if pause_in == "copy":
            time.sleep(0.2)
        return done

    def slow_link(name: Path, target: Path) -> None:
        print("linking", flush=True)
        if pause_in == "link":
            time.sleep(30)
        link(name, target)

    uploads_migrate._copy_file = slow_copy  # type: ignore[assignment]
    uploads_migrate._link = slow_link  # type: ignore[assignment]
    ctx = Context(HostPaths(Path(home)), None, Options(), "test", io.StringIO(), io.StringIO())  # type: ignore[arg-type]
    print(uploads_migrate.migrate_uploads(ctx, Path(volume)), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
