"""The operator's side: the offline plan and the day-2 commands of ``bankflow-infra``.

Two layers. Engines (typed, no argparse, nothing printed to the operator, unit-tested alone):

- ``plan``, ``mocks``: the real program under Pulumi's mock engine (``plan``, rebuild checks);
- ``stack_access``: the pulumi CLI (every command line, queries bounded, steps streamed);
- ``outputs``: a stack's outputs, from a saved file or pulumi, as ``contract.outputs.StackOutputs``;
- ``ssh``: the SSH transport to a stack's droplet (pinned host key, deploy key, host agent argv);
- ``probes``, ``health``: the health probes, and the report built from them;
- ``backups``: the host agent's backups listing, read over SSH;
- ``rebuild``, ``stack_inventory``, ``rebuild_prepare``: the emergency rebuild/cutover/retire
  steps and plans, what exists, and the checks that turn a request into a plan.

Commands: ``ops/cli/``, one module per command group plus the shared ``session``. Engines never
import ``ops.cli``.
"""
