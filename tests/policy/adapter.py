"""Turn an offline plan (the mock engine's recorder) into the SDK's policy args, and run the pack.

Inputs reach ``ResourceValidationArgs`` through the pack's own marking deserializer, from the
recorder's wire-format values, so a rule sees what it sees under the engine: secrets as
``pulumi_policy.Secret``, everything wrapped in the SDK's unknown-checking proxy. Stack
resources carry the mock's state (the outputs), with the resource's additional secret outputs
marked the way the engine marks them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from bankflow_policy.markers import checked
from bankflow_policy.pack import policies
from pulumi.runtime import rpc
from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY

from bankflow_infra.ops.mocks import Recorder, Registration
from bankflow_infra.ops.plan import PlanResult


@dataclass(frozen=True)
class Violation:
    policy: str
    urn: str
    message: str

    @property
    def resource(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


def options(reg: Registration) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=reg.protect,
        ignore_changes=[],
        delete_before_replace=reg.delete_before_replace,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(reg.additional_secret_outputs),
        parent=reg.parent or None,
    )


def resource_args(reg: Registration, config: dict[str, Any] | None = None) -> ResourceValidationArgs:
    props = checked(reg.inputs)
    return ResourceValidationArgs(reg.type, props, reg.urn, reg.name, options(reg), None, config)


def _outputs(reg: Registration) -> dict[str, Any]:
    state = dict(reg.state)
    for key in reg.additional_secret_outputs:
        if key in state and not rpc.is_rpc_secret(state[key]):
            state[key] = {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": state[key]}
    return state


def stack_args(recorder: Recorder) -> StackValidationArgs:
    """Every resource with its outputs and, as the engine gives them, the resources it depends on
    (``dependencies``; the mock records no per-property dependencies, so those stay empty)."""
    resources = [
        PolicyResource(r.type, checked(_outputs(r)), r.urn, r.name, options(r), None, None, [], {})
        for r in recorder.resources
    ]
    by_urn = {resource.urn: resource for resource in resources}
    for resource, reg in zip(resources, recorder.resources, strict=True):
        resource.dependencies = [by_urn[urn] for urn in reg.dependencies if urn in by_urn]
    return StackValidationArgs(resources)


def run_pack(recorder: Recorder, only: Iterable[Policy] | None = None) -> list[Violation]:
    """Every violation the pack reports on this plan, as the engine would collect them."""
    found: list[Violation] = []
    for policy in list(only) if only is not None else policies():
        if isinstance(policy, ResourceValidationPolicy):
            for reg in recorder.resources:
                policy.validate(resource_args(reg), _collector(found, policy.name, reg.urn))
        elif isinstance(policy, StackValidationPolicy):
            policy.validate(stack_args(recorder), _collector(found, policy.name, ""))
    return found


def _collector(found: list[Violation], policy: str, urn: str) -> Callable[[str, str | None], None]:
    def report(message: str, reported_urn: str | None = None) -> None:
        found.append(Violation(policy, reported_urn or urn, message))

    return report


# --------------------------------------------------------------------------- breaking a plan


def edited(result: PlanResult, edit: Callable[[list[Registration]], None]) -> Recorder:
    """A deep copy of the plan's registrations after ``edit`` (the original stays cached)."""
    resources = copy.deepcopy(result.recorder.resources)
    edit(resources)
    return Recorder(resources)


def one(resources: list[Registration], type_: str, name_part: str = "") -> Registration:
    exact = [r for r in resources if r.type == type_ and r.name == name_part]
    found = exact or [r for r in resources if r.type == type_ and name_part in r.name]
    assert found, f"no {type_} named like {name_part!r} in the plan"
    return found[0]


def set_option(resources: list[Registration], type_: str, **changes: Any) -> None:
    """Change options of every registration of ``type_`` in place."""
    for index, reg in enumerate(resources):
        if reg.type == type_:
            resources[index] = replace(reg, **changes)
