"""Leaderboard rendering: best bold, second underlined, per row; NaN shown as '-'."""
from __future__ import annotations

import math

from zsasbench.leaderboard.render import render
from zsasbench.leaderboard.table import Leaderboard


def _board():
    rows = [("MVTec AD", "AP"), ("MVTec AD", "F1-max")]
    values = {rows[0]: {"A": 0.30, "B": 0.50, "C": 0.40}, rows[1]: {"A": 0.2, "B": math.nan, "C": 0.2}}
    return Leaderboard(methods=["A", "B", "C"], rows=rows, values=values, protocol="400x400")


def test_ranks_and_ties():
    board = _board()
    assert board.ranks(("MVTec AD", "AP")) == {"B": 1, "C": 2, "A": 3}
    assert board.ranks(("MVTec AD", "F1-max")) == {"A": 1, "C": 1}


def test_markdown_latex_html_csv():
    board = _board()
    md = render(board, "md")
    assert "| MVTec AD | AP | 30.0 | **50.0** | <u>40.0</u> |" in md
    assert "| MVTec AD | F1-max | **20.0** | - | **20.0** |" in md
    latex = render(board, "latex")
    assert r"\textbf{50.0}" in latex and r"\underline{40.0}" in latex
    html = render(board, "html")
    assert "<b>50.0</b>" in html and "<u>40.0</u>" in html
    csv_text = render(board, "csv").splitlines()
    assert csv_text[0] == "dataset,metric,A,B,C"
    assert csv_text[2] == "MVTec AD,F1-max,0.200000,,0.200000"
