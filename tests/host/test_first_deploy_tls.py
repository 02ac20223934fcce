"""A failed FIRST deploy of a stack whose nginx serves TLS (the rendered config, real nginx).

Nothing served before, so there is nothing to put back: nginx was started on this release's
config, which reads the live certificate and key. Reverting them to "no files" (the snapshot of
an empty host) made the revert's nginx reload fail and the agent exit 4 ("restoring nginx
failed: look now") on a host that had only failed to start; the next deploy then found nginx
unable to load its own config.
"""

from __future__ import annotations

from pathlib import Path

from bankflow_infra.contract import exit_codes
from tests.host.fleet import fleet_settings, make_droplet, receive, render_payload
from tests.render import helpers
from tests.support.tools import require_tool


def test_a_failed_first_deploy_keeps_nginx_able_to_reload_and_the_next_deploy_serves(tmp_path: Path) -> None:
    nginx, openssl = require_tool("nginx"), require_tool("openssl")
    droplet = make_droplet(tmp_path, 1, nginx)
    cert = helpers.make_cert(openssl, tmp_path / "cert", fleet_settings().all_hostnames)
    try:
        bad = render_payload(droplet, "v1", cert, ["standin-fail-through-nginx"])
        code, out, err = receive(droplet, bad, deploy=True)
        assert code == exit_codes.FAILED, out + err  # a failed deploy, not "restoring nginx failed"
        assert "step 'verify' failed" in err
        assert "no release was serving (first deploy)" in err
        assert "ATTENTION" not in err
        assert droplet.host.current() is None
        failed = f"bankflow-app-{droplet.releases['v1']}"
        assert {"call": "stop", "project": failed} in droplet.host.runtime.journal()  # reverted
        # nothing of the failed release serves: the public include is the bundle's placeholder
        code, out, err = receive(droplet, render_payload(droplet, "v2", cert), deploy=True)
        assert code == exit_codes.OK, out + err
        assert droplet.host.current() == droplet.releases["v2"]
    finally:
        droplet.host.runtime.shutdown()
