"""Renderers for the leaderboard: Markdown, CSV, LaTeX and HTML (best bold, second underlined)."""
from __future__ import annotations

import csv
import html
import io
import math

from .table import Leaderboard

FORMATS = ("md", "csv", "latex", "html")


def _cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}"


def _styled(board: Leaderboard, row, method: str, bold: str, underline: str) -> str:
    value = board.values[row].get(method, math.nan)
    text = _cell(value)
    rank = board.ranks(row).get(method)
    if rank == 1:
        return bold.format(text)
    if rank == 2:
        return underline.format(text)
    return text


def to_markdown(board: Leaderboard) -> str:
    header = ["Dataset", "Metric", *board.methods]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * len(board.methods)]
    for row in board.rows:
        cells = [_styled(board, row, m, "**{}**", "<u>{}</u>") for m in board.methods]
        lines.append("| " + " | ".join([row[0], row[1], *cells]) + " |")
    note = f"\nPixel-level metrics x100; best **bold**, second <u>underlined</u>. Protocol: {board.protocol}.\n"
    note += "".join(f"{n}\n" for n in board.notes)
    return "\n".join(lines) + "\n" + note


def to_csv(board: Leaderboard) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["dataset", "metric", *board.methods])  # values in [0, 1], unlike the x100 tables
    for row in board.rows:
        writer.writerow([row[0], row[1], *["" if math.isnan(v) else f"{v:.6f}"
                                          for v in (board.values[row].get(m, math.nan) for m in board.methods)]])
    return buf.getvalue()


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def to_latex(board: Leaderboard) -> str:
    cols = "ll" + "c" * len(board.methods)
    out = [r"% needs \usepackage{booktabs}", r"\begin{tabular}{" + cols + "}", r"\toprule",
           " & ".join(["Dataset", "Metric", *map(_latex_escape, board.methods)]) + r" \\", r"\midrule"]
    previous = None
    for row in board.rows:
        name = _latex_escape(row[0]) if row[0] != previous else ""
        previous = row[0]
        cells = [_styled(board, row, m, r"\textbf{{{}}}", r"\underline{{{}}}") for m in board.methods]
        out.append(" & ".join([name, row[1], *cells]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    out += [f"% {n}" for n in board.notes]
    return "\n".join(out) + "\n"


def to_html(board: Leaderboard) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["Dataset", "Metric", *board.methods])
    body = []
    for row in board.rows:
        cells = "".join(f"<td>{_styled(board, row, m, '<b>{}</b>', '<u>{}</u>')}</td>" for m in board.methods)
        body.append(f"<tr><td>{html.escape(row[0])}</td><td>{html.escape(row[1])}</td>{cells}</tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>zsasbench leaderboard</title>"
            "<style>table{border-collapse:collapse;font-family:sans-serif}td,th{border:1px solid #ccc;"
            "padding:4px 8px;text-align:center}</style></head><body>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<p>Pixel-level metrics x100; best bold, second underlined. Protocol: {html.escape(board.protocol)}.</p>"
            + "".join(f"<p>{html.escape(n)}</p>" for n in board.notes) +
            "</body></html>\n")


def render(board: Leaderboard, fmt: str) -> str:
    renderers = {"md": to_markdown, "csv": to_csv, "latex": to_latex, "html": to_html}
    if fmt not in renderers:
        from ..errors import UserError

        raise UserError(f"unknown leaderboard format {fmt!r}; valid: {', '.join(FORMATS)}")
    return renderers[fmt](board)
