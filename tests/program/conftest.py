"""Stand-in answers the shared plan mocks (bankflow_infra/ops/mocks.py) do not give yet, for the
origin-pull resources of issue 12: a PEM for pulumi-tls certificates (`certPem`) and, in the
default referenced outputs, another stack's `origin_pull_client`. The same two additions are
requested for ops/mocks.py itself (then `plan` shows them too); once there, this file does
nothing and can go. Patched for tests/program only (package scope), never for other folders'
plans."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pulumi
import pytest

from bankflow_infra.ops import mocks

_CERTIFICATE_TYPES = (
    "tls:index/selfSignedCert:SelfSignedCert",
    "tls:index/locallySignedCert:LocallySignedCert",
)
_original_init = mocks.PlanMocks.__init__
_original_new_resource = mocks.PlanMocks.new_resource


def _init(self: mocks.PlanMocks, recorder: mocks.Recorder, seed: str,
          referenced_outputs: dict[str, Any] | None = None) -> None:
    _original_init(self, recorder, seed, referenced_outputs)
    if referenced_outputs is None and "origin_pull_client" not in self.referenced_outputs:
        name = f"{seed}/referenced-origin-pull"
        self.referenced_outputs["origin_pull_client"] = {
            "certificate": mocks._pem("CERTIFICATE", name),
            "private_key": mocks._pem("PRIVATE KEY", name),
        }


def _new_resource(self: mocks.PlanMocks, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
    resource_id, state = _original_new_resource(self, args)
    if args.typ in _CERTIFICATE_TYPES and "certPem" not in state:
        state = {**state, "certPem": mocks._pem("CERTIFICATE", f"{self.seed}/{args.name}")}
    return resource_id, state


@pytest.fixture(scope="package", autouse=True)
def _origin_pull_mock_answers() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mocks.PlanMocks, "__init__", _init)
        patch.setattr(mocks.PlanMocks, "new_resource", _new_resource)
        yield
