"""What an exit status means, for the host agent and the ``bankflow-infra`` CLI alike.

The workflows branch on these (a failed health gate rolls back; bad input does not), so they
are stated once, here.
"""

from __future__ import annotations

from typing import Final

OK: Final = 0
# A step failed (the previous release still serves), a service is unhealthy, or the operator
# answered "no" to a confirmation: nothing the command asked for happened.
FAILED: Final = 1
# Bad input: usage, config, stack outputs, manifest, unknown release. Checked before any change.
USAGE: Final = 2
# Another deploy/backup/restore holds the host's lock.
LOCKED: Final = 3
# A step failed AND restoring the previous nginx state failed too: look now.
RESTORE_FAILED: Final = 4
# Interrupted (Ctrl-C), as shells report SIGINT.
INTERRUPTED: Final = 130
