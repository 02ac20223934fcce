"""Entry point Pulumi runs for `--policy-pack policy`: serve BankFlow's policies to the engine."""

from bankflow_policy.markers import keep_secret_markers
from bankflow_policy.pack import PACK_NAME, policies
from pulumi_policy import EnforcementLevel, PolicyPack

# Before the pack starts serving: rules must see which inputs are secrets (see markers.py).
keep_secret_markers()

PolicyPack(name=PACK_NAME, policies=policies(), enforcement_level=EnforcementLevel.MANDATORY)
