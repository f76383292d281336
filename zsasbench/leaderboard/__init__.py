"""Leaderboard in the IAP-AS paper's Table 1 form, built from MLflow runs."""
from .render import FORMATS, render
from .table import Leaderboard, build_leaderboard

__all__ = ["FORMATS", "Leaderboard", "build_leaderboard", "render"]
