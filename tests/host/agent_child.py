"""Run the host agent in a child process with the stand-in runtime, for the fault tests.

    python -m tests.host.agent_child RUN_DIR NGINX NGINX_CONF -- AGENT ARGS...

The fault tests SIGKILL this process, hang up on it or close its stdout: only a real process
can be killed like the agent on the droplet. ``FAULT_KILL_AT=<step>`` makes it SIGKILL itself as
the switch journals that step (after the journal write, before the step acts), so "killed at
every named step" is exact, not a race. ``FAULT_HANGUP_AFTER=<runtime call>`` sends it SIGHUP
right after that stand-in runtime call returns (what sshd does when the session drops); the
test closes the child's stdout/stderr pipes itself.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from bankflow_infra.host import agent
from tests.host.standin import LocalProcessRuntime


def _kill_at_step(step_name: str) -> None:
    from bankflow_infra.host import journal

    real_update = journal.update_step

    def update_step(paths: Any, intent: Any, step: str) -> Any:
        moved = real_update(paths, intent, step)
        if step == step_name:
            os.kill(os.getpid(), signal.SIGKILL)
        return moved

    journal.update_step = update_step


def _hangup_after(runtime: LocalProcessRuntime, call: str) -> None:
    real = getattr(runtime, call)

    def hung_up(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGHUP)
        return result

    setattr(runtime, call, hung_up)


def main() -> int:
    separator = sys.argv.index("--")
    run_dir, nginx, conf = sys.argv[1:separator]
    runtime = LocalProcessRuntime(Path(run_dir), nginx, Path(conf))
    if os.environ.get("FAULT_KILL_AT"):
        _kill_at_step(os.environ["FAULT_KILL_AT"])
    if os.environ.get("FAULT_HANGUP_AFTER"):
        _hangup_after(runtime, os.environ["FAULT_HANGUP_AFTER"])
    code: int = agent.main(sys.argv[separator + 1 :], runtime=runtime)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
