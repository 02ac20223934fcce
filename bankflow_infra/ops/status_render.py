"""The ``status`` screen: the ``--json`` document (ops/status.py) drawn as rich tables.

Drawn from the document, not from the report, so the screen and the machine output can never
say different things. Colours only on a terminal (rich decides); piped, it is plain text.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

MESSAGE_WIDTH = 60


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", expand=False, show_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _error(section: str, error: str) -> Text:
    return Text(f"{section}: cannot tell: {error}", style="yellow")


def header(doc: dict[str, Any]) -> Text:
    server = doc["server"]
    if server["own"]:
        where = f"droplet {server['origin_ip']}"
        if server["size"]:
            where += f", {server['size']} in {server['region']}"
        elif server["error"]:
            where += f" (size/region unknown: {server['error']})"
    else:
        where = f"no server of its own: served by stack {server['origin_stack']!r}"
    line = Text(f"stack {doc['stack']} ", style="bold")
    line.append(f"({doc['environment']}) ", style="cyan")
    line.append(f"{where}; as of {doc['generated_at']}")
    return line


def releases(doc: dict[str, Any]) -> RenderableType:
    part = doc["releases"]
    if part["error"]:
        return _error("releases", part["error"])
    table = _table("Releases", "RELEASE", "", "ACTIVATED", "BY")
    for row in part["kept"]:
        mark = "serving" if row.get("current") else "previous" if row.get("previous") else "kept"
        style = "green" if row.get("current") else None
        table.add_row(_cell(row.get("release")), mark, _cell(row.get("activated")), _cell(row.get("action")),
                      style=style)
    return table if part["kept"] else Text("Releases: none deployed yet")


def deploys(doc: dict[str, Any]) -> RenderableType:
    part = doc["deploys"]
    if part["error"]:
        return _error("deploys", part["error"])
    table = _table("Last deploys (audit log)", "WHEN", "WHO", "ACTION", "RELEASE", "RESULT", "MESSAGE")
    for entry in part["entries"]:
        result = _cell(entry.get("result"))
        style = {"ok": "green", "noop": None, "unfinished": "yellow"}.get(result, "red")
        message = _cell(entry.get("message"))
        if len(message) > MESSAGE_WIDTH:
            message = message[: MESSAGE_WIDTH - 1] + "…"
        table.add_row(_cell(entry.get("time")), _cell(entry.get("actor")), _cell(entry.get("action")),
                      _cell(entry.get("release")), Text(result, style=style or ""), message)
    return table if part["entries"] else Text("Last deploys: none recorded")


def health(doc: dict[str, Any]) -> RenderableType:
    part = doc["health"]
    if part.get("error") and not part["probes"]:
        return _error("health", part["error"])
    via = "through Cloudflare" if part.get("mode") == "edge" else "at the origin"
    table = _table(f"Health ({via})", "SERVICE", "URL", "STATUS", "MS", "")
    for probe in part["probes"]:
        verdict = Text("healthy", style="green") if probe["healthy"] else Text(
            probe["error"] or "unhealthy", style="red")
        latency = f"{probe['latency_ms']:.0f}" if probe["latency_ms"] is not None else "-"
        table.add_row(probe["service"], probe["url"], _cell(probe["status"]), latency, verdict)
    return table


def _backup_text(backup: dict[str, Any], own: bool) -> Text:
    if not own:
        return Text("-")
    if backup["error"]:
        return Text(f"cannot tell: {backup['error']}", style="yellow")
    if backup["newest"] is None:
        return Text("none in the bucket", style="red")
    style = "red" if backup["stale"] else "green"
    return Text(f"{backup['newest']} ({backup['age_hours']} h ago)", style=style)


def _certificate_text(certificate: dict[str, Any]) -> Text:
    if certificate["expires_on"] is None:
        return Text("-")
    days = certificate["days_left"]
    style = "red" if certificate["warning"] else "green"
    return Text(f"expires {certificate['expires_on']}" + (f" ({days} days)" if days is not None else ""),
                style=style)


def _drift_text(drift: dict[str, Any]) -> Text:
    if drift["state"] == "error":
        return Text(f"cannot tell: {drift['error']}", style="yellow")
    if drift["checked_at"] is None:
        return Text("unknown: pass --drift FILE (the drift workflow's artifact)", style="yellow")
    style = {"clean": "green", "drifted": "red"}.get(drift["state"], "yellow")
    text = Text(f"{drift['state']} (checked {drift['checked_at']})", style=style)
    if drift["run_url"]:
        text.append(f" {drift['run_url']}", style="")
    return text


def facts(doc: dict[str, Any]) -> Table:
    table = Table(show_header=False, show_edge=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("newest backup", _backup_text(doc["backup"], doc["server"]["own"]))
    table.add_row("archive lag", Text(doc["archive"]["state"], style="dim"))
    table.add_row("origin certificate", _certificate_text(doc["certificate"]))
    table.add_row("drift", _drift_text(doc["drift"]))
    return table


def verdict(doc: dict[str, Any]) -> Text:
    if not doc["problems"]:
        return Text("all good", style="bold green")
    text = Text(f"{len(doc['problems'])} thing(s) need attention:", style="bold red")
    for problem in doc["problems"]:
        text.append(f"\n  - {problem}", style="red")
    return text


def screen(doc: dict[str, Any]) -> Group:
    parts: list[RenderableType] = [header(doc), Text("")]
    if doc["server"]["own"]:
        parts += [releases(doc), Text(""), deploys(doc), Text("")]
    parts += [health(doc), Text(""), facts(doc), Text(""), verdict(doc)]
    return Group(*parts)


def print_screen(doc: dict[str, Any], console: Console) -> None:
    console.print(screen(doc))
