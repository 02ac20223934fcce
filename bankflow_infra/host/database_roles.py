"""The bundle's database roles and passwords, applied to the RUNNING cluster on every switch.

Stdlib only. PostgreSQL's image applies ``POSTGRES_PASSWORD`` only when it initialises an empty
data directory: a rotated password would otherwise never reach the cluster on the data volume,
and the apps could no longer log in. So before the migrate step and before any new app container
starts (``switch.py``), the agent:

1. creates the apps' role when missing (LOGIN, no superuser, cannot create roles or databases,
   no replication, no RLS bypass) and re-asserts those attributes;
2. sets the app role's and the superuser's passwords as SCRAM-SHA-256 verifiers computed here
   (``scram.py``) -- only when the stored verifier does not already match, so an unchanged
   password writes nothing;
3. makes the app role the owner of the ``public`` schema and of every object in it (tables,
   views, sequences, routines, types; extension members excepted) -- idempotent, so dumps
   restored as the superuser are handed back too.

All of it in ONE transaction, sent to ``psql`` on stdin (never in argv) through the runtime's
``exec`` in the postgres container over its local socket, with statement logging switched off
for that transaction: neither a plaintext password nor a verifier reaches the server log. The
manifest's ``database`` entry names the roles and the bundle files holding their passwords; a
release rendered before it has no roles to apply.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from ..contract.exit_codes import FAILED, OK
from ..contract.release import MANIFEST_NAME
from . import scram
from . import state as st
from .context import Context, UsageError
from .manifest import load_manifest
from .release_dir import projects
from .runtime import Project, RuntimeFailure

ACTION: Final = "database-roles"
SQL_TIMEOUT: Final = 120.0
APP_ROLE_ATTRIBUTES: Final = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
_IDENT: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# The renderer's password alphabet (render/model.py): URL-safe, and SASLprep is the identity on it.
_PASSWORD: Final = re.compile(r"[A-Za-z0-9._~-]{20,256}")


class RolesError(UsageError):
    """The release's roles or password files are unusable; names the file/key, never a value."""


@dataclass(frozen=True)
class RolesSpec:
    """Who to create and which passwords to apply; passwords are hidden from repr."""

    service: str
    database: str
    superuser: str
    app_role: str
    superuser_password: str = field(repr=False)
    app_password: str = field(repr=False)


def _name(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise RolesError(f"{where}: database.{key} must be a lower-case SQL identifier, got {value!r}")
    return value


def _env_value(bundle: Path, ref: object, where: str) -> tuple[str, str]:
    """(file, value) of a ``{"file": ..., "key": ...}`` reference into the bundle's env files."""
    if not isinstance(ref, dict) or not all(isinstance(ref.get(k), str) for k in ("file", "key")):
        raise RolesError(f"{where}: expected {{'file': 'secrets/...', 'key': NAME}}")
    name, key = ref["file"], ref["key"]
    if not name.startswith("secrets/") or ".." in name.split("/"):
        raise RolesError(f"{where}: {name!r} is not a file under secrets/")
    try:
        lines = (bundle / name).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RolesError(f"{where}: cannot read {bundle / name}: {type(exc).__name__}") from exc
    values = [line.split("=", 1)[1] for line in lines if line.startswith(f"{key}=")]
    if len(values) != 1:
        raise RolesError(f"{bundle / name}: expected exactly one {key}= line, found {len(values)}")
    return str(bundle / name), values[0]


def _password(value: str, where: str) -> str:
    if not _PASSWORD.fullmatch(value):
        raise RolesError(f"{where}: must be 20-256 characters of A-Z a-z 0-9 . _ ~ - (value not shown)")
    return value


def _app_password(bundle: Path, ref: object, names: dict[str, str], where: str) -> str:
    """The password in the apps' DATABASE_URL, which must log in as the app role to the database."""
    file, url = _env_value(bundle, ref, f"{where} app_url")
    what = f"{file} {ref['key']}" if isinstance(ref, dict) else file
    try:
        parts = urlsplit(url)
        user, password, path = parts.username, parts.password, parts.path
    except ValueError as exc:
        raise RolesError(f"{what}: not a URL (value not shown)") from exc
    if parts.scheme not in ("postgres", "postgresql") or user != names["app_role"]:
        raise RolesError(f"{what}: must be postgres://{names['app_role']}:PASSWORD@... (value not shown)")
    if path != f"/{names['database']}":
        raise RolesError(f"{what}: must name the database {names['database']!r} (value not shown)")
    return _password(password or "", what)


# release.json: true when the bundle uses a managed PostgreSQL cluster (render/bundle.py writes it)
MANAGED_DATABASE_KEY: Final = "managed_database"


def load_roles(bundle: Path) -> RolesSpec | None:
    """The release's roles (None when its manifest has no ``database`` entry), fully checked:
    names, both passwords, and that the apps' DATABASE_URL logs in as the app role."""
    where = str(bundle / MANIFEST_NAME)
    try:
        manifest = json.loads((bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
        entry = manifest.get("database")
    except (OSError, ValueError, AttributeError) as exc:
        raise RolesError(f"{where}: unreadable: {type(exc).__name__}") from exc
    if entry is None or manifest.get(MANAGED_DATABASE_KEY) is True:
        # a managed cluster (issue 13): DigitalOcean owns the roles; the app role and its password
        # are the program's DatabaseUser, nothing runs on this droplet to apply them to
        return None
    if not isinstance(entry, dict):
        raise RolesError(f"{where}: database must be an object")
    names = {key: _name(entry, key, where) for key in ("service", "database", "superuser", "app_role")}
    if names["app_role"] == names["superuser"]:
        raise RolesError(f"{where}: database.app_role must not be the superuser {names['superuser']!r}")
    file, superuser_password = _env_value(
        bundle, entry.get("superuser_password"), f"{where} superuser_password"
    )
    superuser_password = _password(superuser_password, f"{file} {entry['superuser_password']['key']}")
    app_password = _app_password(bundle, entry.get("app_url"), names, where)
    return RolesSpec(**names, superuser_password=superuser_password, app_password=app_password)


def _psql_argv(spec: RolesSpec, extra: tuple[str, ...] = ()) -> list[str]:
    return ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "--no-password", "-U", spec.superuser,
            "-d", spec.database, *extra]  # fmt: skip


def stored_verifiers(ctx: Context, base: Project, spec: RolesSpec) -> dict[str, str]:
    """role -> its stored password (``''`` when none) for the two roles that exist."""
    query = (
        "SELECT rolname || '|' || coalesce(rolpassword, '') FROM pg_authid "  # noqa: S608 - checked names
        f"WHERE rolname IN ('{spec.superuser}', '{spec.app_role}')"
    )
    out = ctx.runtime.exec(base, spec.service, _psql_argv(spec, ("-c", query)), timeout=SQL_TIMEOUT)
    rows = (line.split("|", 1) for line in out.splitlines() if "|" in line)
    return {name: stored for name, stored in rows}


# Objects in `public` handed to the app role. Extension members keep their owner; sequences owned
# by a table column (serial/identity: pg_depend 'a'/'i') move with their table and cannot move
# alone. search_path is pg_catalog, so every ::regclass/::regprocedure/::regtype text is qualified.
_TRANSFER: Final = """DO $transfer$
DECLARE
  app CONSTANT name := '{app}';
  app_oid oid := (SELECT oid FROM pg_roles WHERE rolname = '{app}');
  ns oid := to_regnamespace('public');
  moved integer := 0;
  obj record;
BEGIN
  IF ns IS NOT NULL THEN
    IF (SELECT nspowner FROM pg_namespace WHERE oid = ns) <> app_oid THEN
      EXECUTE format('ALTER SCHEMA public OWNER TO %I', app);
      moved := moved + 1;
    END IF;
    FOR obj IN
      SELECT c.oid::regclass::text AS ident, CASE c.relkind WHEN 'v' THEN 'VIEW'
        WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE'
        WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind
      FROM pg_class c
      WHERE c.relnamespace = ns AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c', 'S')
        AND c.relowner <> app_oid
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
          AND d.objid = c.oid AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
      ORDER BY c.relkind = 'S'
    LOOP
      EXECUTE format('ALTER %s %s OWNER TO %I', obj.kind, obj.ident, app);
      moved := moved + 1;
    END LOOP;
    FOR obj IN
      SELECT p.oid::regprocedure::text AS ident, CASE p.prokind WHEN 'p' THEN 'PROCEDURE'
        WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END AS kind
      FROM pg_proc p
      WHERE p.pronamespace = ns AND p.proowner <> app_oid
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
          AND d.objid = p.oid AND d.deptype = 'e')
    LOOP
      EXECUTE format('ALTER %s %s OWNER TO %I', obj.kind, obj.ident, app);
      moved := moved + 1;
    END LOOP;
    FOR obj IN
      SELECT t.oid::regtype::text AS ident, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END AS kind
      FROM pg_type t
      WHERE t.typnamespace = ns AND t.typowner <> app_oid AND t.typtype IN ('e', 'd', 'r')
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
          AND d.objid = t.oid AND d.deptype = 'e')
    LOOP
      EXECUTE format('ALTER %s %s OWNER TO %I', obj.kind, obj.ident, app);
      moved := moved + 1;
    END LOOP;
  END IF;
  PERFORM set_config('bankflow.transferred', moved::text, true);
END
$transfer$;
"""


def roles_script(spec: RolesSpec, stored: dict[str, str]) -> tuple[str, list[str]]:
    """(the SQL, what it changes in words). Verifiers only for the passwords that changed."""
    statements = [
        "BEGIN;",
        # Never log this transaction's statements, not even on error (they hold verifiers).
        "SET LOCAL log_statement = 'none';",
        "SET LOCAL log_min_duration_statement = -1;",
        "SET LOCAL log_min_error_statement = 'panic';",
        "SET LOCAL search_path = pg_catalog;",
    ]
    changes: list[str] = []
    if spec.app_role not in stored:
        statements.append(f'CREATE ROLE "{spec.app_role}" {APP_ROLE_ATTRIBUTES};')
        changes.append(f"role {spec.app_role} created")
    statements.append(f'ALTER ROLE "{spec.app_role}" WITH {APP_ROLE_ATTRIBUTES};')
    for role, password in ((spec.app_role, spec.app_password), (spec.superuser, spec.superuser_password)):
        if scram.matches(stored.get(role, ""), password):
            changes.append(f"password of {role} unchanged")
            continue
        statements.append(f"ALTER ROLE \"{role}\" PASSWORD '{scram.verifier(password)}';")
        changes.append(f"password of {role} set")
    statements.append(_TRANSFER.format(app=spec.app_role))
    statements += ["SELECT current_setting('bankflow.transferred');", "COMMIT;"]
    return "\n".join(statements) + "\n", changes


def _run_script(ctx: Context, base: Project, spec: RolesSpec, script: str) -> str:
    """psql with the script on stdin: a 0600 file in the state dir, removed whatever happens."""
    fd, name = tempfile.mkstemp(prefix=".database-roles-", suffix=".sql", dir=ctx.paths.state)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(script)
        argv = _psql_argv(spec)
        return ctx.runtime.exec(base, spec.service, argv, stdin_path=Path(name), timeout=SQL_TIMEOUT)
    finally:
        Path(name).unlink(missing_ok=True)


def apply_roles(ctx: Context, spec: RolesSpec, base: Project, release: str) -> str:
    """Apply ``spec`` to the running cluster in one transaction; the summary (audited). Raises
    RuntimeFailure (no verifier in its text) when PostgreSQL refuses: nothing was changed."""
    try:
        script, changes = roles_script(spec, stored_verifiers(ctx, base, spec))
        out = _run_script(ctx, base, spec, script)
    except RuntimeFailure as exc:
        message = f"roles of {spec.database}: {scram.scrub(str(exc))}; nothing changed (one transaction)"
        _audit(ctx, release, "failed", message)
        raise RuntimeFailure(message) from None
    moved = out.strip().splitlines()[-1] if out.strip() else "0"
    changes.append(f"{moved} object(s) in schema public handed to {spec.app_role}")
    message = "; ".join(changes)
    _audit(ctx, release, "ok", message)
    return message


def _audit(ctx: Context, release: str, result: str, message: str) -> None:
    # Not an end line: `within` ties it to the switch's attempt without closing it (journal.py).
    if not st.audit(ctx.paths.audit_log, ctx.actor, ACTION, release, result, message,
                    within=ctx.attempt or None, pid=os.getpid()):  # fmt: skip
        ctx.complain(f"{ACTION}: the audit line could not be written to {ctx.paths.audit_log}")


def cmd_database_roles(ctx: Context) -> int:
    """``database-roles``: apply the serving release's roles again (e.g. after a restore brought
    back an older pg_authid). Exit 1 when PostgreSQL refuses."""
    current = st.read_current(ctx.paths)
    if current is None:
        raise UsageError("no release deployed yet: no roles to apply")
    bundle = ctx.paths.release_dir(current.release)
    spec = load_roles(bundle)
    if spec is None:
        message = f"{ACTION} {current.release}: the release has no database roles; nothing to do"
        ctx.say(message)
        ctx.audit(ACTION, current.release, "noop", message)
        return OK
    _, base = projects(ctx.paths, current.release, load_manifest(bundle))
    try:
        summary = apply_roles(ctx, spec, base, current.release)
    except RuntimeFailure as exc:
        ctx.complain(f"{ACTION} {current.release}: failed: {exc}")
        ctx.audit(ACTION, current.release, "failed", str(exc))
        return FAILED
    ctx.say(f"{ACTION} {current.release}: {summary}")
    ctx.audit(ACTION, current.release, "ok", summary)
    return OK


COMMANDS: Final = {ACTION: (lambda ctx, _a, _s: cmd_database_roles(ctx), True)}  # under the deploy lock


def register(sub: Any) -> None:
    sub.add_parser(ACTION, help="apply the serving release's database roles and passwords to the cluster")
