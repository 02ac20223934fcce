"""``python -m bankflow_infra.ops.cli``: the same as the ``bankflow-infra`` console script."""

from __future__ import annotations

import sys

from bankflow_infra.ops.cli import main

sys.exit(main())
