"""`zsasbench datasets check`: validate a dataset folder and report counts and every problem.

Listing problems (pairing, missing masks, layout) are collected in one scan; then every image and
mask is decoded to find unreadable or truncated files and masks whose size differs from their
image. Nothing stops at the first problem.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DataError
from .base import Sample, read_image, read_mask
from .common import LoaderDataset


@dataclass
class Problem:
    file: str
    rule: str


@dataclass
class CategoryRow:
    category: str
    normal: int  # normal test images
    defective: int  # defective test images
    reference: int  # reference images (never tested)
    unlabelled: int = 0  # test images without labels (folder dataset)
    empty_masks: int = 0  # defective images whose mask has no pixel > 127 (after decoding)
    empty_mask_files: list[str] = field(default_factory=list)
    object_name: str = ""


@dataclass
class DatasetReport:
    dataset: str
    root: str
    kind: str
    categories: list[CategoryRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    decoded: bool = True

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def check_dataset(name: str, root: str | Path, decode: bool = True) -> DatasetReport:
    """Validate dataset `name` at `root`. decode=False checks only the file listing."""
    from . import dataset_class

    cls = dataset_class(name)
    report = DatasetReport(dataset=name, root=str(root), kind=getattr(cls, "kind", ""), decoded=decode)
    try:
        ds = cls(root)
    except DataError as exc:
        report.problems.append(_problem(str(exc), str(root)))
        return report
    report.kind = ds.kind
    try:
        splits = ds.scan_all() if isinstance(ds, LoaderDataset) else ds._scan()
    except DataError as exc:
        splits = None
        fatal = _problem(str(exc), str(root))
    if isinstance(ds, LoaderDataset):  # everything collected before any fatal error
        report.problems += [Problem(f, r) for f, r in ds.issues.problems]
    if splits is None:
        report.problems.append(fatal)
        return report
    if not splits:
        report.problems.append(Problem(str(root), f"no category found. Expected layout: {ds.layout}"))
    for cat, (test, refs) in sorted(splits.items()):
        if not test:
            report.problems.append(Problem(f"{root} [{cat}]", "category has no test image"))
        row = CategoryRow(category=cat, normal=sum(s.label == 0 for s in test),
                          defective=sum(s.label == 1 for s in test), reference=len(refs),
                          unlabelled=sum(s.label not in (0, 1) for s in test),
                          object_name=ds.object_name(cat))
        if decode:
            for s in test + refs:
                _decode(s, row, report.problems)
        report.categories.append(row)
    if row_empty := sum(r.empty_masks for r in report.categories):
        files = [f for r in report.categories for f in r.empty_mask_files]
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        report.warnings.append(f"{row_empty} defective image(s) have an empty mask ({shown}): labelled defective "
                               "(image level) with all pixels normal")
    report.warnings += _count_warnings(ds, report.categories)
    return report


def _problem(message: str, default_file: str) -> Problem:
    # DataError messages start with "<file>: <rule>".
    head, sep, rule = message.partition(": ")
    return Problem(head, rule) if sep and ("/" in head or "\\" in head) else Problem(default_file, message)


def _decode(s: Sample, row: CategoryRow, problems: list[Problem]) -> None:
    if s.image_path is None:
        return
    try:
        hw = read_image(s.image_path).shape[:2]
    except DataError as exc:
        problems.append(_problem(str(exc), str(s.image_path)))
        return
    if s.mask_path is None:
        return
    try:
        mask = read_mask(s.mask_path, hw)
    except DataError as exc:
        problems.append(_problem(str(exc), str(s.mask_path)))
        return
    if s.label == 1 and not mask.any():
        row.empty_masks += 1
        row.empty_mask_files.append(str(s.mask_path))
    elif s.label == 0 and mask.any():
        problems.append(Problem(str(s.mask_path), f"mask of normal image {s.image_path.name} has "
                                                  "defect pixels (> 127); a normal image's mask must be empty"))


def _count_warnings(ds, rows: list[CategoryRow]) -> list[str]:
    official = getattr(ds, "official_counts", {}) or {}
    if not official:
        return []
    out = []
    have = {r.category: r for r in rows}
    for cat in sorted(official, key=_natural):
        if cat not in have:
            out.append(f"category {cat!r} of the official release is missing")
    totals = getattr(ds, "counts_before_split", False)
    for cat, row in have.items():
        exp = official.get(cat)
        if exp is None:
            out.append(f"category {cat!r} is not in the official release")
            continue
        if totals:  # the release has no split: compare all normal images
            got = (row.normal + row.reference, row.defective)
            want = (exp.normal + exp.reference, exp.defective)
            label = "normal (test + reference), defective"
        else:
            got = (row.normal, row.defective, row.reference)
            want = (exp.normal, exp.defective, exp.reference)
            label = "normal, defective, reference"
        if got != want:
            out.append(f"{cat}: counts ({label}) are {got}, the official release has {want}")
    return out


def _natural(name: str) -> list:
    """Class2 before Class10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def render_report(report: DatasetReport) -> str:
    """A readable plain-text table with the problems and warnings under it."""
    head = f"{report.dataset} ({report.kind}) at {report.root}"
    cols = ["category", "normal", "defective", "reference", "empty masks", "object name"]
    show_unl = any(r.unlabelled for r in report.categories)
    if show_unl:
        cols.insert(3, "unlabelled")
    rows = []
    for r in report.categories:
        vals = [r.category, r.normal, r.defective, r.reference, r.empty_masks if report.decoded else "-",
                r.object_name]
        if show_unl:
            vals.insert(3, r.unlabelled)
        rows.append([str(v) for v in vals])
    if report.categories:
        tot = [sum(getattr(r, k) for r in report.categories) for k in ("normal", "defective", "reference")]
        empty = str(sum(r.empty_masks for r in report.categories)) if report.decoded else "-"
        total = ["total", *map(str, tot), empty, ""]
        if show_unl:
            total.insert(3, str(sum(r.unlabelled for r in report.categories)))
        rows.append(total)
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    status = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    lines.append(f"status: {status}" + ("" if report.decoded else " (listing only; files not decoded)"))
    lines += [f"  problem: {p.file}: {p.rule}" for p in report.problems]
    lines += [f"  warning: {w}" for w in report.warnings]
    return "\n".join(lines)
