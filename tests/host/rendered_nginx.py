"""The rendered nginx config's parameters for a stand-in host on loopback: its own ports and
paths, the current user's workers, and per-IP limits the load generator (one client address) does
not trip. Shared by the zero-downtime rig and the load-balanced fleet (fleet.py)."""

from __future__ import annotations

import os
import pwd
from typing import Any

from bankflow_infra import render
from tests.host.fixtures import HostEnv
from tests.support.ports import free_port


def loopback_nginx_params(host: HostEnv, **listeners: Any) -> Any:
    """render.NginxParams for ``host``; ``listeners`` adds or overrides fields (verify_port)."""
    (host.run / "temp").mkdir(exist_ok=True)
    fields: dict[str, Any] = {
        "http_port": free_port(),
        "https_port": free_port(),
        "health_port": free_port(),
        "listen_addresses": ("127.0.0.1",),
        "config_dir": str(host.live),
        "cert_path": str(host.home / "tls" / "origin.pem"),
        "key_path": str(host.home / "secrets" / "origin.key"),
        "access_log": str(host.run / "access.log"),
        "error_log": str(host.run / "nginx-error.log"),
        "pid_path": str(host.run / "nginx.pid"),
        # as root, workers would drop to `nobody`, who cannot enter pytest's 0700 tmp dir
        "user": pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None,
        "temp_dir": str(host.run / "temp"),
        # the load generator is one client IP: the droplet's per-IP limits (tests/render) would
        # refuse it as they would refuse one visitor sending this much
        "limits": render.model.ClientLimits(conn_per_ip=1000, rate_per_ip=10_000, burst_per_ip=10_000),
    }
    return render.NginxParams(**{**fields, **listeners})
