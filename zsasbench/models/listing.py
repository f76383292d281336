"""Rows for `zsasbench models [--json]`: every model spec, where it loads from, present or not, its size."""
from __future__ import annotations

from ..errors import UserError
from .base import ModelSpec, availability
from .hub import human_size

COLUMNS = ("spec", "role", "family", "location", "present", "size", "how_to_get")


def model_rows(specs: list[ModelSpec]) -> list[dict]:
    """One row per distinct spec (first occurrence order), from each family's `availability`.

    A spec whose family cannot be checked (unknown family, bad variant) still gets a row: present False
    and the reason in `how_to_get`, so one bad entry does not hide the others.
    """
    rows = []
    for spec in dict.fromkeys(specs):  # dedupe, keep order
        try:
            av = availability(spec)
            location, present, size_bytes, how = av.location, av.present, av.size_bytes, av.how_to_get
        except UserError as exc:
            location, present, size_bytes, how = spec.source, False, None, f"cannot check: {exc}"
        rows.append({
            "spec": spec.describe(),
            "role": spec.role,
            "family": spec.family,
            "location": location,
            "present": bool(present),
            "size": human_size(size_bytes) if size_bytes is not None else "",
            "size_bytes": size_bytes,
            "how_to_get": "" if present else how,
        })
    return rows


def format_rows(rows: list[dict]) -> str:
    """A plain-text table of `model_rows` (for the CLI without --json)."""
    header = ["present", "family", "spec", "role", "size", "location / how to get"]
    lines = [header]
    for row in rows:
        where = row["location"] if row["present"] else f"{row['location']} -> {row['how_to_get']}"
        lines.append(["yes" if row["present"] else "NO", row["family"], row["spec"], row["role"], row["size"],
                      where])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)) + "  " + str(line[-1])
                     for line in lines)
