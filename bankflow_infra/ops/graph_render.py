"""Text of a stack's ``Graph`` (ops/graph.py): Mermaid (GitHub renders it), Graphviz DOT, and the
Markdown that the README and the pull-request comment embed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from bankflow_infra.ops.graph import LAYER_TITLES, MARKER, Box, Graph

_MERMAID_CLASSES: Final = (
    "classDef added fill:#dcfce7,stroke:#16a34a,color:#14532d",
    "classDef changed fill:#fef9c3,stroke:#ca8a04,color:#713f12",
    "classDef removed fill:#fee2e2,stroke:#dc2626,color:#7f1d1d,stroke-dasharray:4",
    "classDef host fill:#eff6ff,stroke:#3b82f6",
)
_DOT_FILL: Final = {"added": "#dcfce7", "changed": "#fef9c3", "removed": "#fee2e2", "host": "#eff6ff"}
HOST_TITLE: Final = "on the droplet (host bundle, services from catalog.py)"


def _quoted(text: str) -> str:
    return text.replace('"', "#quot;")


def _layers(graph: Graph) -> Iterator[tuple[str, dict[str, list[Box]]]]:
    """Each layer with its boxes by component, in a fixed order (edge first: where traffic enters)."""
    for layer in ("edge", "server", "stack"):
        components: dict[str, list[Box]] = {}
        for box in graph.boxes:
            if box.layer == layer:
                components.setdefault(box.component, []).append(box)
        if components or (layer == "server" and graph.host):
            yield layer, components


def mermaid(graph: Graph) -> str:
    lines = ["flowchart LR"]
    lines += [f'  {b.id}(["{_quoted(b.label)}"])' for b in graph.boxes if b.layer == "outside"]
    for layer, components in _layers(graph):
        lines.append(f'  subgraph L_{layer}["{LAYER_TITLES[layer]}"]')
        for component, boxes in components.items():
            indent = "    "
            if component:
                lines.append(f'    subgraph C_{component.replace("-", "_")}["{graph.titles[component]}"]')
                indent = "      "
            lines += [f'{indent}{b.id}["{_quoted(b.label)}"]' for b in boxes]
            if component:
                lines.append("    end")
        if layer == "server" and graph.host:
            lines.append(f'    subgraph H_droplet["{HOST_TITLE}"]')
            lines += [f'      {b.id}["{_quoted(b.label)}"]' for b in graph.host]
            lines.append("    end")
        lines.append("  end")
    if graph.removed:
        lines.append('  subgraph X_removed["removed by this change"]')
        lines += [f'    x_{i}["{_quoted(name)}"]' for i, name in enumerate(graph.removed)]
        lines.append("  end")
    for source, target, label in graph.edges:
        arrow = f'-->|"{_quoted(label)}"|' if label else "-->"
        lines.append(f"  {source} {arrow} {target}")
    lines += [f"  {c}" for c in _MERMAID_CLASSES]
    for kind in ("added", "changed"):
        ids = [b.id for b in graph.boxes if b.change == kind]
        if ids:
            lines.append(f"  class {','.join(ids)} {kind}")
    if graph.host:
        lines.append(f"  class {','.join(b.id for b in graph.host)} host")
    if graph.removed:
        lines.append(f"  class {','.join(f'x_{i}' for i in range(len(graph.removed)))} removed")
    return "\n".join(lines) + "\n"


def _dot_node(box: Box, indent: str, fill: str | None) -> str:
    label = box.label.replace("<br/>", "\\n").replace('"', '\\"')
    style = f', style=filled, fillcolor="{fill}"' if fill else ""
    return f'{indent}{box.id} [label="{label}"{style}];'


def dot(graph: Graph) -> str:
    lines = [f'digraph "{graph.stack}" {{', "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    lines += [_dot_node(b, "  ", None) for b in graph.boxes if b.layer == "outside"]
    for layer, components in _layers(graph):
        lines.append(f'  subgraph cluster_{layer} {{ label="{LAYER_TITLES[layer]}";')
        for component, boxes in components.items():
            if component:
                cluster = component.replace("-", "_")
                lines.append(f'    subgraph cluster_{cluster} {{ label="{graph.titles[component]}";')
            lines += [_dot_node(b, "      ", _DOT_FILL.get(b.change or "")) for b in boxes]
            if component:
                lines.append("    }")
        if layer == "server" and graph.host:
            lines.append(f'    subgraph cluster_droplet {{ label="{HOST_TITLE}";')
            lines += [_dot_node(b, "      ", _DOT_FILL["host"]) for b in graph.host]
            lines.append("    }")
        lines.append("  }")
    if graph.removed:
        lines.append('  subgraph cluster_removed { label="removed by this change";')
        lines += [
            f'    x_{i} [label="{name}", style="filled,dashed", fillcolor="{_DOT_FILL["removed"]}"];'
            for i, name in enumerate(graph.removed)
        ]
        lines.append("  }")
    for source, target, label in graph.edges:
        lines.append(f'  {source} -> {target} [label="{label}"];' if label else f"  {source} -> {target};")
    return "\n".join(lines) + "\n}\n"


def summary(graph: Graph, base_label: str | None) -> str:
    """One line: how many resources, and with a base what the change adds, changes and removes."""
    count = sum(1 for b in graph.boxes if b.layer != "outside")
    if base_label is None:
        return f"**{graph.stack}**: {count} boxes (resources of one type under one component share a box)"
    added = sum(1 for b in graph.boxes if b.change == "added")
    changed = sum(1 for b in graph.boxes if b.change == "changed")
    return (
        f"**{graph.stack}** compared with `{base_label}`: {added} boxes added, {changed} changed "
        f"(yellow), {len(graph.removed)} resources removed"
    )


def markdown(graph: Graph, base_label: str | None) -> str:
    """A Markdown comment: the marker (to find and update it), the summary, the Mermaid block."""
    return f"{MARKER}\n{summary(graph, base_label)}\n\n```mermaid\n{mermaid(graph)}```\n"
