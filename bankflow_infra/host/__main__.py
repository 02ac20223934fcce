"""Run the agent from the shipped directory: ``python3 /opt/bankflow/bin/host deploy DIR``.

The droplet gets ``bankflow_infra/host/`` copied as a plain directory (any name) and nothing
else of this repository. Python runs a directory by executing its ``__main__.py`` as a
top-level script, where relative imports do not work, so this file puts the directory's parent
on ``sys.path`` and imports the agent as the package it is. Under
``python3 -m bankflow_infra.host`` it is already a package and imports normally.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def _main() -> int:
    if __package__:
        from .agent import main
    else:
        # climb while the parent is itself a package: /opt/bankflow/bin/bankflow_infra/host is
        # imported as bankflow_infra.host, a lone copied dir under its own name
        package = Path(__file__).resolve().parent
        names = [package.name]
        while (package.parent / "__init__.py").is_file():
            package = package.parent
            names.insert(0, package.name)
        sys.path.insert(0, str(package.parent))
        main = importlib.import_module(".".join([*names, "agent"])).main
    result: int = main()
    return result


if __name__ == "__main__":
    raise SystemExit(_main())
