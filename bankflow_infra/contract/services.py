"""Environments and app services: the names every layer uses to talk about the same thing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

Environment = Literal["staging", "production"]
ENVIRONMENTS: Final[tuple[Environment, ...]] = ("staging", "production")

# The product's three services (the catalog says what each runs and listens on).
APP_SERVICES: Final = ("site", "saas", "api")

# Each environment's stack deploys from one branch only: git is the record of what runs there.
DEPLOY_BRANCH: Final[Mapping[Environment, str]] = {"staging": "staging", "production": "main"}
