"""One nginx replacement under load, run in a PRIVATE network namespace by
``test_base_images.py`` (``unshare --net``), where ``net.ipv4.tcp_migrate_req`` can be set as the
port holder sets it in production (render/edge_ports.py) without touching this machine's.

    python -m tests.host.replace_under_load ROOT NGINX   -> one JSON line: total, failures, out

The stand-in host as in the other tests (real nginx, local processes for containers); the load is
bounded (workers, a time cap) and goes to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tests.host.fixtures import Load, make_host


def main(root: str, nginx: str) -> int:
    host = make_host(Path(root), nginx)
    try:
        code, _, err = host.deploy(host.bundle("v1"))
        if code != 0:
            print(json.dumps({"error": err[-500:]}))
            return 1
        with Load(host.port, workers=6, max_seconds=60) as load:
            time.sleep(0.5)
            for index in range(3):
                code, out, err = host.deploy(host.bundle("v1", nginx_image=f"nginx:1.28.{index + 1}"))
                if code != 0 or "replace-nginx:" not in out:
                    print(json.dumps({"error": err[-500:] or out[-500:]}))
                    return 1
            time.sleep(0.5)
        result = load.result
        print(json.dumps({"total": result.total, "failures": result.failures}))
        return 0
    finally:
        host.runtime.shutdown()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
