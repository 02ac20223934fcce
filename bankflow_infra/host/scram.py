"""SCRAM-SHA-256 password verifiers as PostgreSQL stores them, computed by the agent.

Stdlib only. ``ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'`` stores a verifier as it is, so the
plaintext never reaches the server: not in the SQL text, the server log or pg_stat_activity.

RFC 5802 section 3 (SCRAM) with SHA-256 (RFC 7677):
    SaltedPassword := Hi(Normalize(password), salt, i)   -- PBKDF2-HMAC-SHA-256
    ClientKey      := HMAC(SaltedPassword, "Client Key")
    StoredKey      := H(ClientKey)
    ServerKey      := HMAC(SaltedPassword, "Server Key")
PostgreSQL's text form (src/common/scram-common.c, scram_build_secret):
    SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>

Normalize is SASLprep; for the printable ASCII without spaces we accept it is the identity
(RFC 4013 maps and prohibits only non-ASCII and control/space characters), so anything else is
refused here instead of being normalised differently from libpq.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from typing import Final

SCHEME: Final = "SCRAM-SHA-256"
ITERATIONS: Final = 4096  # PostgreSQL's default scram_iterations
SALT_BYTES: Final = 16  # PostgreSQL's SCRAM_DEFAULT_SALT_LEN
_ASCII_PRINTABLE: Final = re.compile(r"[\x21-\x7e]+")
_VERIFIER: Final = re.compile(
    r"SCRAM-SHA-256\$(?P<iterations>[0-9]{1,7}):(?P<salt>[A-Za-z0-9+/=]+)"
    r"\$(?P<stored>[A-Za-z0-9+/=]+):(?P<server>[A-Za-z0-9+/=]+)"
)


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    if not _ASCII_PRINTABLE.fullmatch(password):
        raise ValueError("password: only printable ASCII without spaces is accepted (value not shown)")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("ascii"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The verifier PostgreSQL would store for ``password`` (a fresh random salt by default)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    stored_key, server_key = _keys(password, salt, iterations)
    return f"{SCHEME}${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def matches(stored: str, password: str) -> bool:
    """Whether ``stored`` (pg_authid.rolpassword) is a SCRAM verifier of ``password``: recomputed
    with its own salt and iteration count. Anything else (md5, empty, garbled) does not match."""
    found = _VERIFIER.fullmatch(stored.strip())
    if found is None:
        return False
    try:
        salt = base64.b64decode(found["salt"], validate=True)
    except (binascii.Error, ValueError):
        return False
    iterations = int(found["iterations"])
    if iterations < 1:
        return False
    return hmac.compare_digest(verifier(password, salt, iterations), stored.strip())


def scrub(text: str) -> str:
    """``text`` with every verifier replaced: for error messages that may quote our SQL."""
    return re.sub(r"SCRAM-SHA-256\$[^\s']*", "SCRAM-SHA-256$[verifier]", text)
