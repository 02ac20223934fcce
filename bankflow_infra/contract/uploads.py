"""Uploads backups: the names the renderer (``render/uploads_backup.py``) writes and the host agent
(``host/backups/uploads*.py``) reads. Stdlib only; shipped with the agent.

The uploaded files (customers' bank statements) are backed up with restic into the stack's
backups bucket under ``uploads/``; see ``render/uploads_backup.py`` for why restic.
"""

from __future__ import annotations

from typing import Final

UPLOADS_CONFIG_FILE: Final = "backup/uploads.json"  # not secret: repository URL, paths, schedule
UPLOADS_CONFIG_SCHEMA: Final = 1
# secrets/<this>, 0600: RESTIC_PASSWORD and the Spaces key, handed to restic in its environment
UPLOADS_SECRET_ENV: Final = "uploads-restic.env"  # noqa: S105 - a file name
UPLOADS_SECRET_NAMES: Final = ("RESTIC_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
UPLOADS_REPOSITORY_PATH: Final = "uploads"  # restic repository s3:<endpoint>/<bucket>/uploads
UPLOADS_TAG: Final = "bankflow-uploads"  # every snapshot carries it; listings filter on it
# systemd OnCalendar of the uploads backup timer: every 5 minutes, so the uploads RPO is 5 minutes
# plus the duration of one backup run.
UPLOADS_SCHEDULE: Final = "*:0/5"
UPLOADS_RPO_SECONDS: Final = 300
