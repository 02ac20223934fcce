"""Database backups on the droplet: dump, upload, list, restore. Stdlib only, like all of host/.

Modules: ``config`` (the release's backup.json, the database backups act on, the backup lock),
``archive`` (dump names, checksums, retention, listing rows), ``storage`` (the bucket through
rclone), ``database`` (PostgreSQL through the runtime), ``dump`` and ``restore`` (the two
procedures), ``commands`` (their subcommands: argparse, exit codes, audit lines).

    bankflow-agent backup                          pg_dump -Fc + pg_dumpall --globals-only inside the
                                                   postgres container, sha256 recorded, uploaded to the
                                                   stack's Spaces bucket and verified, old local dumps
                                                   pruned (the systemd timer runs this nightly)
    bankflow-agent backups [--json]                the bucket's dumps, newest first (key, size, age)
    bankflow-agent restore --from KEY|latest --yes [--bucket NAME --endpoint URL]
                                                   download, verify, stop the apps, restore into a
                                                   fresh database, swap it in by rename, start the apps

Point-in-time recovery (pgBackRest, ``pitr``, ``pitr_restore``, ``pitr_commands``):

    bankflow-agent pitr-backup [--type full|diff|incr|auto] [--if-configured]
    bankflow-agent pitr-backups [--json] | pitr-status --json
    bankflow-agent restore --to-time 'YYYY-MM-DD HH:MM:SSZ' | --latest | --backup-set LABEL --yes
    bankflow-agent restore --discard-previous     what earlier restores kept (clusters, databases)

Where dumps go comes from the current release's ``backup/backup.json`` (rendered by
``bankflow_infra.render.backup``); the Spaces key is ``secrets/rclone.conf`` (0600), which only
rclone reads (``rclone --config FILE``): no credential is ever in a command line, the agent's
environment or its output. rclone runs with a clean environment, so no AWS_*/RCLONE_* variable of
the caller can redirect it.

Restore never touches the live database until the dump has been restored completely somewhere
else: it is downloaded and checked (size and MD5 against the bucket, sha256 against the dump's
checksum file, ``pg_restore --list``), restored with ``--single-transaction --exit-on-error``
into a scratch database, and only then swapped in with two ``ALTER DATABASE ... RENAME`` in one
transaction. An expired, missing or corrupt dump therefore leaves the database exactly as it
was; the previous database is kept as ``<db>_before_restore_<UTC time>`` to drop by hand once
the restored data is confirmed. App services are stopped for the restore (no write may land in
a database that is about to be replaced) and always started again, also when it fails.

Exit codes: 0 done, 1 a step failed (the message says what, and that the database is
unchanged), 2 bad input (unknown key, missing --yes, no configuration), 3 another backup,
restore or deploy is running.
"""
