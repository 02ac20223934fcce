"""DigitalOcean Spaces keys, modelled on moto's S3 with IAM identity policies.

Spaces has no IAM: a key carries grants, one per bucket, ``read`` or ``readwrite`` (the program's
grants: ``components.backups``). moto 5.2.5 enforces IAM *identity* policies on every S3 call once
``INITIAL_NO_AUTH_ACTION_COUNT`` is finite (``moto/core/authorization.py``,
``ActionAuthenticatorMixin._authenticate_and_authorize_s3_action`` -> ``IAMRequestBase.
check_action_permitted``, which evaluates only the access key's user policies). It does NOT
enforce bucket policies in general: ``moto/s3/responses.py`` consults ``FakeBucket.get_permission``
only for object GET/PUT/HEAD and for the bulk DeleteObjects, never for DeleteObject(Version),
lifecycle, versioning or policy calls, and ignores the principal. That matches what matters
here anyway: Spaces refuses bucket policies on buckets with limited-access keys (docs/PROVIDERS.md).

So each Spaces key becomes an IAM user whose one policy is its grants, read the way an attacker
may use them: DigitalOcean documents ``readwrite`` as "Read/Write/Delete" and documents no
limit on bucket configuration, so ``readwrite`` is modelled as every S3 action on the bucket
(versions, lifecycle, versioning, policy included): the worst case, never a hopeful one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from bankflow_infra.components.backups import READ, READ_WRITE, Grant

READ_ACTIONS = ("s3:Get*", "s3:List*", "s3:HeadBucket")


def _resources(bucket: str) -> list[str]:
    return [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]


def grant_statement(grant: Grant) -> dict[str, object]:
    if grant.permission == READ:
        actions: Sequence[str] = READ_ACTIONS
    elif grant.permission == READ_WRITE:
        actions = ("s3:*",)
    else:  # fullaccess would be every bucket of the account: the program never grants it
        raise ValueError(f"unmodelled Spaces permission {grant.permission!r}")
    return {"Effect": "Allow", "Action": list(actions), "Resource": _resources(grant.bucket)}


def key_policy(grants: Sequence[Grant]) -> str:
    """The IAM identity policy equal to a Spaces key's grants (nothing outside them is allowed)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [grant_statement(g) for g in grants]})
