"""A throw-away PostgreSQL 15 that behaves like a managed cluster's direct port: TLS only, a
password for the role, a server certificate from a test CA (DigitalOcean's CA stand-in).

Built on tests/support/postgres.py: the cluster starts as usual (unix socket, trust), then gets
its certificate, ``ssl=on``, ``listen_addresses='localhost'`` and a pg_hba.conf that admits TCP
only over TLS with scram-sha-256 (``hostnossl ... reject``), and restarts. Certificates come from
the openssl CLI; the server's names ``localhost`` only (no IP), so verify-full to 127.0.0.1 fails.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.postgres import SUPERUSER, PgCluster, start_cluster
from tests.support.tools import require_tool

# A test value; ':' and '\' need escaping in a pgpass line.
PASSWORD = "s3cr3t:with\\colon-" + "x" * 16
HOST = "localhost"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # signs the server certificate: the right CA
    other_ca: Path  # a CA that signed nothing here: the wrong one
    cert: Path
    key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run([require_tool("openssl"), *map(str, args)], check=True, capture_output=True, timeout=60)


def make_tls_files(directory: Path) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "other-ca.pem", directory / "server.pem",
                     directory / "server.key")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for name, cert in (("ca", files.ca), ("other-ca", files.other_ca)):
        _openssl("req", "-x509", *ec, "-keyout", directory / f"{name}.key", "-out", cert, "-days", "2",
                 "-subj", f"/CN=Test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-new", *ec, "-keyout", files.key, "-out", directory / "server.csr",
             "-subj", "/CN=localhost")
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", directory / "server.csr", "-CA", files.ca, "-CAkey", directory / "ca.key",
             "-CAcreateserial", "-out", files.cert, "-days", "2", "-extfile", extensions)
    return files


def start_tls_cluster(files: TlsFiles) -> PgCluster:
    cluster = start_cluster()
    try:
        tls = cluster.root / "tls"
        tls.mkdir()
        shutil.copy(files.cert, tls / "server.pem")
        shutil.copy(files.key, tls / "server.key")
        os.chmod(tls / "server.key", 0o600)
        if cluster.owner:
            info = pwd.getpwnam(cluster.owner)
            for path in (tls, tls / "server.pem", tls / "server.key"):
                os.chown(path, info.pw_uid, info.pw_gid)
        hba = cluster.data / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostssl all all ::1/128 scram-sha-256\n"
            "hostnossl all all 0.0.0.0/0 reject\n"
            "hostnossl all all ::/0 reject\n"
        )
        escaped = PASSWORD.replace("'", "''")
        cluster.psql(f"ALTER ROLE {SUPERUSER} PASSWORD '{escaped}'", "postgres")
        cluster.stop_server()
        cluster.options = cluster.options.replace("listen_addresses=''", "listen_addresses='localhost'") + (
            f" -c ssl=on -c ssl_cert_file={tls / 'server.pem'} -c ssl_key_file={tls / 'server.key'}")
        cluster.start_server()
    except BaseException:
        cluster.stop()
        raise
    return cluster
