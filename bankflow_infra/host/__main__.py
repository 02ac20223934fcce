"""Run the shipped agent: ``/usr/bin/python3 -I /opt/bankflow/bin/bankflow_infra/host deploy DIR``.

The droplet gets ``bankflow_infra/{host,contract}/`` under ``/opt/bankflow/bin`` (see
``render/payloads.agent_files``) and the launcher ``bankflow-agent`` that runs this directory.
Python runs a directory by executing its ``__main__.py`` as a top-level script, where relative
imports do not work, so this file puts ``bin/`` on ``sys.path`` and imports the agent as the
package it is (it needs ``contract/`` beside it). Under ``python3 -m bankflow_infra.host`` it is
already a package and imports normally.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def _main() -> int:
    if __package__:
        from .agent import main
    else:
        host = Path(__file__).resolve().parent  # <bin>/bankflow_infra/host
        sys.path.insert(0, str(host.parent.parent))
        main = importlib.import_module(f"{host.parent.name}.{host.name}.agent").main
    result: int = main()
    return result


if __name__ == "__main__":
    raise SystemExit(_main())
