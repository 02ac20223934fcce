"""The end of a successful switch: the state names the new release, the previous one drains and
stops, old releases are pruned, the attempt is closed. Stdlib only.

Once the state is recorded the new release serves and is on record, so nothing here fails the
switch: a problem is a warning in the result line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

from ..contract.exit_codes import OK
from . import journal, traffic
from . import state as st
from .context import Context, describe
from .plan import NGINX_SERVICE, SwitchPlan

KNOWN_GOOD_DIR = "nginx-good"  # in the state dir: the live nginx files of the last good switch

Step = Callable[[str, str], None]


def record(ctx: Context, plan: SwitchPlan, images: Mapping[str, str]) -> st.Current:
    """The state names the new release: base digests (and what the base containers were created
    from), history, then current.json (the one file reconciliation can always rebuild from the
    live include, so it goes last)."""
    manifest = plan.manifest
    if plan.action == "deploy" and dict(images) != dict(plan.base_images):
        st.write_base_images(ctx.paths, images)
    base = dict(plan.running_base)
    base[NGINX_SERVICE] = manifest.service_digests[NGINX_SERVICE]
    if plan.action == "deploy":
        base.update({s: manifest.service_digests[s] for s in manifest.base_services})
    st.write_base(ctx.paths, base)
    st.append_history(
        ctx.paths,
        {"release": plan.release, "app_release": plan.app_release, "action": plan.action, "actor": ctx.actor},
    )
    serving = st.Current(plan.release, plan.app_release, plan.fingerprint)
    st.write_current(ctx.paths, serving)
    return serving


def save_known_good(ctx: Context) -> None:
    """A COPY of the live nginx files (not links: a file edited in place must not change it too),
    which reconciliation puts back when the live config fails nginx -t."""
    good = ctx.paths.state / KNOWN_GOOD_DIR
    good.mkdir(mode=0o700, exist_ok=True)
    st.mirror_files(ctx.paths.nginx, good, None)


def _quietly(step: Step, name: str, what: str) -> None:
    with contextlib.suppress(OSError):  # a cleanup step's journal write: never worth failing a done switch
        step(name, what)


def finish(
    ctx: Context, plan: SwitchPlan, serving: st.Current, step: Step, prune: Callable[..., list[str]]
) -> int:
    warnings: list[str] = []
    manifest = plan.manifest
    try:
        if traffic.write_public(ctx, manifest, plan.release, plan.app_release):
            _quietly(step, "settle", "public upstreams without the previous release as backup")
            traffic.reload_nginx(ctx.runtime)
            ctx.sleep(ctx.options.settle)  # the reload has landed before the drain counts workers
        save_known_good(ctx)
    except Exception as exc:
        warnings.append(f"dropping the backup upstreams failed: {describe(exc)}")
    if plan.old_app is not None:
        _quietly(step, "drain", f"requests in flight to {plan.old_app.name}, up to {plan.drain_limit_old:g}s")
        ctx.say(f"{plan.action} {plan.release}: drain: {traffic.drain(ctx, plan.drain_limit_old)}")
        _quietly(step, "stop-old", plan.old_app.name)
        try:
            ctx.runtime.stop(plan.old_app)
        except Exception as exc:  # the new release serves: a leftover old one is a warning
            warnings.append(f"stopping the old release {plan.old_app.release} failed: {describe(exc)}")
    try:
        warnings += prune(ctx, serving)
    except OSError as exc:
        warnings.append(f"pruning old releases failed: {describe(exc)}")
    journal.clear_intent(ctx.paths)
    current = plan.current
    message = f"{plan.action} {plan.release}: done; release {plan.release} serving"
    if current is not None:
        message += f" (was {current.release})"
    if warnings:
        message += "; warnings: " + "; ".join(warnings)
    ctx.say(message)
    ctx.audit(plan.action, plan.release, "ok", message)
    return OK
