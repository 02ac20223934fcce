"""Passwords belong to the data (issue 11 item 5), against a real PostgreSQL 15 checking SCRAM.

Every switch applies the release's passwords to the RUNNING cluster before migrate and before
any new app container starts; the apps' role is least-privilege and owns the app's objects.
"""

from __future__ import annotations

import json

from bankflow_infra.host import scram
from tests.host.fixtures import HostEnv
from tests.host.roles.rig import APP_ROLE, add_roles, new_password, server_log, tcp_login
from tests.support.postgres import SUPERUSER, PgCluster


def runtime_of(env: HostEnv):  # the RecordingPgRuntime of the fixture
    return env.runtime


def stored_verifier(pg: PgCluster) -> str:
    return pg.psql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{APP_ROLE}'")  # noqa: S608


def deploy_with(env: HostEnv, tag: str, app_password: str, superuser_password: str, **kw) -> tuple[int, str]:
    bundle = add_roles(env.bundle(tag, **kw), app_password, superuser_password)
    code, out, err = env.deploy(bundle)
    return code, out + err


def test_a_rotated_password_reaches_the_cluster_on_deploy_and_the_old_one_stops_working(
    roles_host: HostEnv, pg: PgCluster
) -> None:
    app_old, app_new, super_old, super_new = (new_password() for _ in range(4))
    code, output = deploy_with(roles_host, "v1", app_old, super_old)
    assert code == 0, output
    assert tcp_login(pg, APP_ROLE, app_old) == (True, APP_ROLE)

    code, output = deploy_with(roles_host, "v2", app_new, super_new)  # the rotation
    assert code == 0, output
    assert tcp_login(pg, APP_ROLE, app_new) == (True, APP_ROLE)
    ok, error = tcp_login(pg, APP_ROLE, app_old)
    assert not ok
    assert "password authentication failed" in error
    assert tcp_login(pg, SUPERUSER, super_new) == (True, SUPERUSER)
    assert not tcp_login(pg, SUPERUSER, super_old)[0]
    stored = stored_verifier(pg)
    assert stored.startswith("SCRAM-SHA-256$4096:")

    # Before the migrate step and before the new release's containers start.
    journal = runtime_of(roles_host).journal()
    calls = [(e["call"], e.get("project", "")) for e in journal]
    last_roles = max(i for i, e in enumerate(journal) if e["call"] == "exec" and "-c" not in e["argv"])
    migrate = next(i for i, c in enumerate(calls) if c[0] == "run_once" and i > last_roles)
    start = next(
        i
        for i, c in enumerate(calls)
        if c[0] == "start" and c[1].startswith("bankflow-app-") and i > last_roles
    )
    assert last_roles < migrate < start

    # The plaintext never left the agent: not in argv, not on psql's stdin, not in the server's
    # log (log_statement=all), not in the audit log or the output. Not even the verifier is logged.
    sent = json.dumps([e.get("argv") for e in journal]) + "".join(runtime_of(roles_host).stdin_seen)
    assert "ALTER ROLE" in sent
    assert "SCRAM-SHA-256$4096:" in sent
    log = server_log(pg).read_text()
    assert "ALTER ROLE" not in log
    audit = (roles_host.home / "state" / "audit.log").read_text()
    for password in (app_old, app_new, super_old, super_new):
        for place, text in (("sent", sent), ("server log", log), ("audit", audit), ("output", output)):
            assert password not in text, f"a password appears in {place}"
    assert "SCRAM-SHA-256$" not in log
    roles_lines = [json.loads(line) for line in audit.splitlines() if '"database-roles"' in line]
    assert roles_lines[-1]["result"] == "ok"
    assert f"password of {APP_ROLE} set" in roles_lines[-1]["message"]


def test_an_unchanged_password_writes_nothing(roles_host: HostEnv, pg: PgCluster) -> None:
    app, superuser = new_password(), new_password()
    assert deploy_with(roles_host, "v1", app, superuser)[0] == 0
    before = stored_verifier(pg)
    code, output = deploy_with(roles_host, "v2", app, superuser)
    assert code == 0, output
    assert stored_verifier(pg) == before
    assert f"password of {APP_ROLE} unchanged" in output
    assert f"password of {SUPERUSER} unchanged" in output


def test_the_app_role_is_least_privilege_and_owns_the_schema(roles_host: HostEnv, pg: PgCluster) -> None:
    app = new_password()
    assert deploy_with(roles_host, "v1", app, new_password())[0] == 0
    attributes = pg.psql(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin "  # noqa: S608
        f"FROM pg_roles WHERE rolname = '{APP_ROLE}'"
    ).strip()
    assert attributes == "f|f|f|f|f|t"
    ok, error = tcp_login(pg, APP_ROLE, app, "CREATE ROLE intruder LOGIN")
    assert not ok
    assert "permission denied" in error
    ok, error = tcp_login(pg, APP_ROLE, app, "SELECT rolpassword FROM pg_authid")
    assert not ok
    assert "permission denied" in error
    # migrations run as the app role (its DATABASE_URL): it creates and alters in `public`
    ok, out = tcp_login(pg, APP_ROLE, app, "CREATE TABLE app_made (id int); ALTER TABLE app_made ADD b text")
    assert ok, out


def test_ownership_transfer_is_complete_and_idempotent(roles_host: HostEnv, pg: PgCluster) -> None:
    app = new_password()
    assert deploy_with(roles_host, "v1", app, new_password())[0] == 0
    # What the apps created as the superuser before the roles existed (or a restored old dump).
    pg.psql(
        "CREATE TYPE legacy_state AS ENUM ('a', 'b'); CREATE DOMAIN legacy_cents AS bigint;"
        "CREATE TABLE legacy_serial (id serial PRIMARY KEY, s legacy_state, c legacy_cents);"
        "CREATE TABLE legacy_identity (id bigint GENERATED ALWAYS AS IDENTITY, v text);"
        "CREATE SEQUENCE legacy_free_seq; CREATE VIEW legacy_view AS SELECT id FROM legacy_serial;"
        "CREATE MATERIALIZED VIEW legacy_mat AS SELECT 1 AS one;"
        "CREATE FUNCTION legacy_fn(int) RETURNS int LANGUAGE sql AS 'SELECT $1';"
        "ALTER SCHEMA public OWNER TO bankflow;"
    )
    not_app = (
        "SELECT count(*) FROM (SELECT relowner AS o FROM pg_class "  # noqa: S608 - a constant
        "WHERE relnamespace = 'public'::regnamespace "
        "UNION ALL SELECT proowner FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
        "UNION ALL SELECT typowner FROM pg_type WHERE typnamespace = 'public'::regnamespace "
        "UNION ALL SELECT nspowner FROM pg_namespace WHERE nspname = 'public') x "
        f"WHERE o <> '{APP_ROLE}'::regrole"
    )
    assert int(pg.psql(not_app)) > 0
    first = roles_host.agent("database-roles")
    assert first[0] == 0, first
    assert int(pg.psql(not_app)) == 0
    second = roles_host.agent("database-roles")
    assert second[0] == 0, second
    assert "0 object(s) in schema public" in second[1]
    assert int(pg.psql(not_app)) == 0
    ok, out = tcp_login(
        pg, APP_ROLE, app,
        "INSERT INTO legacy_serial (s, c) VALUES ('a', 1); INSERT INTO legacy_identity (v) VALUES ('x');"
        "SELECT nextval('legacy_free_seq'); REFRESH MATERIALIZED VIEW legacy_mat;"
        "ALTER TABLE legacy_identity ADD w int; DROP VIEW legacy_view",
    )  # fmt: skip
    assert ok, out


def test_a_refused_roles_transaction_stops_the_deploy_before_any_app_container(
    roles_host: HostEnv, pg: PgCluster
) -> None:
    app_old, superuser = new_password(), new_password()
    assert deploy_with(roles_host, "v1", app_old, superuser)[0] == 0
    serving = roles_host.current()
    runtime = runtime_of(roles_host)
    runtime.fail_roles = True  # PostgreSQL itself refuses the transaction, after the ALTER ROLEs ran
    pg.psql(f'ALTER ROLE "{APP_ROLE}" CREATEDB')  # drift the one transaction must also keep
    seen = len(runtime.journal())
    app_new = new_password()
    code, output = deploy_with(roles_host, "v2", app_new, new_password())
    assert code == 1
    assert "step 'database-roles' failed" in output
    assert "division by zero" in output
    assert f"release {serving} still serving" in output
    assert "SCRAM-SHA-256$" not in output
    after = runtime.journal()[seen:]
    app_steps = [e for e in after if e["call"] in ("run_once", "start")]
    assert not [e for e in app_steps if str(e.get("project")).startswith("bankflow-app-")]
    assert roles_host.current() == serving
    # Nothing of the transaction stayed: old password, old attributes.
    assert tcp_login(pg, APP_ROLE, app_old)[0]
    assert not tcp_login(pg, APP_ROLE, app_new)[0]
    assert pg.psql(f"SELECT rolcreatedb FROM pg_roles WHERE rolname = '{APP_ROLE}'").strip() == "t"  # noqa: S608
    assert "SCRAM-SHA-256$" not in server_log(pg).read_text()
    runtime.fail_roles = False
    assert roles_host.agent("database-roles")[0] == 0  # puts the attributes right again


def test_a_failed_switch_puts_the_serving_release_passwords_back(roles_host: HostEnv, pg: PgCluster) -> None:
    app_old, app_new, superuser = new_password(), new_password(), new_password()
    assert deploy_with(roles_host, "v1", app_old, superuser)[0] == 0
    code, output = deploy_with(roles_host, "v2", app_new, superuser, unhealthy=["api"])
    assert code == 1, output
    assert "wait-healthy" in output
    assert tcp_login(pg, APP_ROLE, app_old)[0], "the serving release's apps must still log in"
    assert not tcp_login(pg, APP_ROLE, app_new)[0]


def test_bad_password_files_are_refused_before_the_host_changes(roles_host: HostEnv, pg: PgCluster) -> None:
    superuser = new_password()
    assert deploy_with(roles_host, "v1", new_password(), superuser)[0] == 0
    runtime = runtime_of(roles_host)
    seen = len(runtime.journal())
    bundle = add_roles(roles_host.bundle("v2"), new_password(), superuser, app_user=SUPERUSER)
    code, _out, err = roles_host.deploy(bundle)
    assert code == 2
    assert "secrets/app.env DATABASE_URL: must be postgres://bankflow_app:PASSWORD@" in err
    assert not runtime.journal()[seen:], "nothing ran on the host"
    bundle = add_roles(roles_host.bundle("v3"), "short", superuser)
    code, _out, err = roles_host.deploy(bundle)
    assert code == 2
    assert "must be 20-256 characters" in err
    assert "short" not in err


def test_error_text_never_carries_a_verifier_and_only_scram_matches() -> None:
    text = "psql exited 3: LINE 1: ALTER ROLE \"x\" PASSWORD 'SCRAM-SHA-256$4096:abc=$def=:ghi=';"
    assert "abc=" not in scram.scrub(text)
    password = new_password()
    stored = scram.verifier(password)
    assert scram.matches(stored, password)
    assert not scram.matches(stored, new_password())
    assert not scram.matches("md5" + "0" * 32, password)
    assert not scram.matches("", password)
