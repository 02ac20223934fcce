"""The backup alerts' shared facts: the limits both the host's watch and ``health`` judge by,
and the secret file that carries the webhook to the droplet. Stdlib only (shipped with the agent).
"""

from __future__ import annotations

from typing import Final

# WAL archiving: the oldest completed WAL segment still waiting to be archived (its ``.ready``
# file in pg_wal/archive_status) may be at most this old. archive_timeout is 60 s, so a healthy
# archiver never lets one wait more than a few seconds; 5 minutes is the limit.
ARCHIVE_LAG_LIMIT_SECONDS: Final = 5 * 60
# The newest database backup (pgBackRest, any type) may be at most this old: the schedule is
# daily, plus 2 h for a slow backup.
BACKUP_MAX_AGE_SECONDS: Final = 26 * 3600
# A check that stays failing is reminded at most this often (the first alert and the recovery
# are sent at once).
REMINDER_SECONDS: Final = 3600
# A restore drill (the weekly workflow) older than this is reported as overdue by ``health``.
DRILL_MAX_AGE_SECONDS: Final = 8 * 24 * 3600

ALERTS_FILE: Final = "alerts.json"  # under the bundle's secrets/ (0600): the webhook URL is a secret
ALERTS_SCHEMA: Final = 1
WATCH_STATE_FILE: Final = "backup-watch.json"  # in the host's state dir: what was sent, since when
# The audit-log actions whose last run must have succeeded: the nightly database backup, the
# uploads backup (every 5 minutes) and the uploads repository check (restic check: damage).
WATCHED_RUNS: Final = ("backup", "uploads-backup", "uploads-check")
