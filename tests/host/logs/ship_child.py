"""Run the shipper in a child process the test can SIGKILL in the middle of an upload.

    python -m tests.host.logs.ship_child ENDPOINT WORK DIR SPOOL before|after

On the second upload it prints "uploading" and pauses -- before rclone runs ("before") or after
rclone stored the object but before the shipper checked it and removed the file ("after") --
so the parent's kill lands exactly there.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bankflow_infra import catalog
from bankflow_infra.host.access_logs_ship import ship_access_logs
from bankflow_infra.host.backups.storage import Bucket, run_process
from bankflow_infra.host.runtime import Completed
from bankflow_infra.render.backup import RCLONE_REMOTE
from tests.host.logs.ship_rig import BUCKET, PREFIX


def main(endpoint: str, work: str, directory: str, spool: str, pause: str) -> None:
    uploads = 0

    def runner(argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> Completed:
        nonlocal uploads
        if "copyto" not in argv:
            return run_process(argv, env=env, timeout=timeout)
        uploads += 1
        if uploads == 2 and pause == "before":
            print("uploading", flush=True)
            time.sleep(60)
        done = run_process(argv, env=env, timeout=timeout)
        if uploads == 2 and pause == "after":
            print("uploading", flush=True)
            time.sleep(60)
        return done

    root = Path(work)
    bucket = Bucket(root / "rclone.conf", RCLONE_REMOTE, BUCKET, endpoint, root / "rclone-home", runner)
    report = ship_access_logs(bucket, Path(directory), catalog.ACCESS_LOG_NAME, PREFIX, Path(spool), settle=0)
    print(report, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:6])
