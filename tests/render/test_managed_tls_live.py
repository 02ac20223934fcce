"""The rendered connection strings against a real PostgreSQL 15 with TLS (issue 13, item 3).

DigitalOcean's managed PostgreSQL presents a certificate from the account's CA for the cluster's
private hostname; the bundle's URLs say ``sslmode=verify-full`` with that CA. Here a test CA signs
the certificate of a real PostgreSQL on 127.0.0.1 (TCP: ``hostssl`` + scram-sha-256 only), and
libpq's psql connects with exactly the rendered URL. The one rewrite: ``sslrootcert`` names the
CA's path inside the app container, which does not exist here, so it is pointed at the test CA's
file. PGHOSTADDR=127.0.0.1 makes libpq dial loopback while it still checks the certificate against
the URL's hostname (libpq: hostaddr is where it connects, host what verify-full matches).

Refused: a CA that did not sign the server's certificate, and -- what verify-full adds over
verify-ca -- a certificate from the right CA for another hostname (another cluster of the same
account would have one).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

from bankflow_infra.render import Bundle, BundleSecrets, ManagedServices, render_bundle
from bankflow_infra.render import managed as managed_render
from tests.render.helpers import CLOUDFLARE, SECRETS_NO_KEY, OriginCert
from tests.render.managed_helpers import (
    DATABASE_HOST,
    DATABASE_PASSWORD,
    managed_database,
    managed_services,
    scaled_settings,
)
from tests.render.perimeter import Pem, make_ca
from tests.support.postgres import PgCluster, _owner, start_cluster
from tests.support.tools import require_tool

APP_ROLE = "bankflow_app"
OTHER_HOST = "private-another-cluster-do-user-1-0.b.db.ondigitalocean.com"


@dataclass(frozen=True)
class TlsPostgres:
    cluster: PgCluster  # serves a certificate for DATABASE_HOST from ``ca``
    impostor: PgCluster  # serves a certificate for OTHER_HOST from the same ``ca``
    ca: Pem  # stands for DigitalOcean's CA
    other_ca: Pem  # signed neither


def _server_cert(openssl: str, ca: Pem, directory: Path, hostname: str) -> Pem:
    """A server certificate from ``ca`` for ``hostname`` (in the SAN: a CN holds 64 characters at
    most, and DigitalOcean's private hostnames are longer)."""
    cert, key, csr = (directory / f"{hostname}.{ext}" for ext in ("pem", "key", "csr"))
    extensions = directory / f"{hostname}.ext"
    extensions.write_text(
        f"basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:{hostname}\n"
    )
    for argv in (
        [openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-subj", "/CN=bankflow test cluster", "-keyout", str(key), "-out", str(csr)],
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
         "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(extensions), "-out", str(cert)],
    ):  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    # PostgreSQL refuses a key others can read: 0600, its server's user's (root runs it as another)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    owner = _owner()
    if owner:
        info = pwd.getpwnam(owner)
        os.chown(key, info.pw_uid, info.pw_gid)
    return Pem(cert, key)


def _tls_cluster(server: Pem) -> PgCluster:
    cluster = start_cluster([
        "-c listen_addresses=127.0.0.1", "-c ssl=on", f"-c ssl_cert_file={server.cert}",
        f"-c ssl_key_file={server.key}", "-c password_encryption=scram-sha-256",
    ])  # fmt: skip
    # TCP: TLS and a password only; the socket keeps trust for the test's own set-up psql.
    rules = (
        "local all all trust",
        "hostssl all all 127.0.0.1/32 scram-sha-256",
        "hostnossl all all 0.0.0.0/0 reject",
    )
    (cluster.data / "pg_hba.conf").write_text("\n".join(rules) + "\n")
    cluster.psql("SELECT pg_reload_conf()")
    cluster.psql(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{DATABASE_PASSWORD}'")
    return cluster


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[TlsPostgres]:
    openssl = require_tool("openssl")
    require_tool("initdb")
    directory = Path(tempfile.mkdtemp(prefix="bankflow-pg-tls-"))
    os.chmod(directory, 0o755)  # noqa: S103 - the server's user reads its certificate here
    clusters: list[PgCluster] = []
    try:
        ca, other_ca = make_ca(openssl, directory, "do-account"), make_ca(openssl, directory, "other")
        clusters.append(_tls_cluster(_server_cert(openssl, ca, directory, DATABASE_HOST)))
        clusters.append(_tls_cluster(_server_cert(openssl, ca, directory, OTHER_HOST)))
        yield TlsPostgres(clusters[0], clusters[1], ca, other_ca)
    finally:
        for cluster in clusters:
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _bundle(origin_cert: OriginCert, port: int, ca: Pem) -> Bundle:
    """The scaled bundle with the cluster's direct port and pool port both on the test server."""
    database = managed_database(ca_pem=ca.cert.read_text(), port=port, pool_port=port, pool_name="bankflow")
    others = managed_services()
    secrets = BundleSecrets(origin_private_key_pem=origin_cert.key_pem, **SECRETS_NO_KEY)
    services = ManagedServices(database, others.cache, others.uploads)
    return render_bundle(scaled_settings(), secrets, CLOUDFLARE, origin_cert.cert_pem, managed=services)


def _with_ca_file(url: str, ca_file: Path) -> str:
    """The rendered URL with sslrootcert at this machine's copy of a CA (the only rewrite)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert query["sslrootcert"] == [managed_render.DATABASE_CA_CONTAINER_PATH]
    query["sslrootcert"] = [str(ca_file)]
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True, safe="/")))


def _psql(cluster: PgCluster, conninfo: str, **env: str) -> subprocess.CompletedProcess[str]:
    sql = "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGHOSTADDR": "127.0.0.1",
                   "PGCONNECT_TIMEOUT": "10", "LC_ALL": "C.UTF-8", **env}  # fmt: skip
    return subprocess.run(
        [cluster.client("psql"), "-X", "-At", "-w", "-d", conninfo, "-c", sql],
        env=environment, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("secret", ["saas.database_url", "api.database_url", "api.database_migrate_url"])
def test_the_rendered_urls_log_in_over_verified_tls(
    tls_postgres: TlsPostgres, origin_cert: OriginCert, secret: str
) -> None:
    bundle = _bundle(origin_cert, tls_postgres.cluster.port, tls_postgres.ca)
    url = _with_ca_file(bundle.file(f"secrets/{secret}").text, tls_postgres.ca.cert)
    done = _psql(tls_postgres.cluster, url)
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip() == f"{APP_ROLE} true"
    )  # the app role, with its percent-encoded password, over TLS


def test_the_server_checks_the_password(tls_postgres: TlsPostgres, origin_cert: OriginCert) -> None:
    # the login above is the password's doing, not a trust rule
    bundle = _bundle(origin_cert, tls_postgres.cluster.port, tls_postgres.ca)
    url = _with_ca_file(bundle.file("secrets/saas.database_url").text, tls_postgres.ca.cert)
    done = _psql(tls_postgres.cluster, url.replace("AVNS_", "AVNX_", 1))
    assert done.returncode != 0
    assert "password authentication failed" in done.stderr


def test_a_ca_that_did_not_sign_the_server_is_refused(
    tls_postgres: TlsPostgres, origin_cert: OriginCert
) -> None:
    bundle = _bundle(origin_cert, tls_postgres.cluster.port, tls_postgres.ca)
    url = _with_ca_file(bundle.file("secrets/saas.database_url").text, tls_postgres.other_ca.cert)
    done = _psql(tls_postgres.cluster, url)
    assert done.returncode != 0
    assert "certificate verify failed" in done.stderr
    assert DATABASE_PASSWORD not in done.stderr


def test_the_right_ca_for_another_hostname_is_refused(
    tls_postgres: TlsPostgres, origin_cert: OriginCert
) -> None:
    # Another cluster of the same account: its certificate chains to the same CA. verify-full
    # refuses it because it names another host; verify-ca would have sent the password.
    bundle = _bundle(origin_cert, tls_postgres.impostor.port, tls_postgres.ca)
    url = _with_ca_file(bundle.file("secrets/saas.database_url").text, tls_postgres.ca.cert)
    done = _psql(tls_postgres.impostor, url)
    assert done.returncode != 0
    assert "does not match host name" in done.stderr


def test_the_dump_password_file_logs_in(
    tls_postgres: TlsPostgres, origin_cert: OriginCert, tmp_path: Path
) -> None:
    # backup.json + secrets/managed-database.pgpass: what the nightly dump from droplet 1 uses
    bundle = _bundle(origin_cert, tls_postgres.cluster.port, tls_postgres.ca)
    passfile = tmp_path / "pgpass"
    passfile.write_text(bundle.file(managed_render.DATABASE_PGPASS_FILE).text)
    passfile.chmod(0o600)
    conninfo = (
        f"host={DATABASE_HOST} port={tls_postgres.cluster.port} dbname=bankflow user={APP_ROLE} "
        f"sslmode=verify-full sslrootcert={tls_postgres.ca.cert}"
    )
    done = _psql(tls_postgres.cluster, conninfo, PGPASSFILE=str(passfile))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{APP_ROLE} true"
