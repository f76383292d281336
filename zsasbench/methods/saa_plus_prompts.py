"""SAA+ hybrid-prompt tables: general defect prompts, per-category manual prompts and property prompts.

Values are those of the reference implementation (caoyunkang/Segment-Any-Anomaly, branch SAA-plus @
23acbd9, `SAA/prompts/*.py`), transcribed as data. The reference stores each property prompt as an
English sentence and parses numbers out of it by word position; here they are stored as fields, and
`property_sentence` / `parse_property_sentence` reproduce the sentence form and the reference parser
(tested to round-trip for every entry).

Manual prompts are kept verbatim (including trailing spaces and missing periods): each is one Grounding
DINO caption, paired with the word whose presence in a box's decoded phrase drops that box.

Differences from the reference tables, all deliberate:
- MTD: the reference keys the MTD property prompt `'ksdd2'` while looking it up as `'mtd'` (KeyError as
  shipped); here it is keyed `mtd`.
- Datasets the reference has no table for (MPDD, BTAD, DTD-Synthetic, DAGM, ...) and unknown categories
  get `default_prompts(kind, object_name)` (see there). KolektorSDD (v1 or v2) uses the reference's
  `ksdd2` entry, its only KolektorSDD table.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UserError

GENERAL_TEMPLATES: tuple[str, ...] = ("defect on {}", "damage on {}", "flaw on {}")


@dataclass(frozen=True)
class PropertyPrompt:
    """The numbers of a property prompt (what the reference parses out of its sentence)."""

    object_word: str  # object-pass caption word, with the reference's trailing comma (e.g. "tile,")
    object_number: int  # n: objects expected per image; object boxes must have area < 1/n
    k_mask: int  # at most this many defect masks enter the map
    area_ratio: float  # r: a defect box must be smaller than r * (largest object box area)
    similar: str = "dissimilar"  # parsed by the reference, never used

    def __post_init__(self):
        if self.object_number < 1:
            raise UserError(f"SAA+ property prompt: object_number must be >= 1, got {self.object_number}")
        if self.k_mask < 1:
            raise UserError(f"SAA+ property prompt: k_mask must be >= 1, got {self.k_mask}")
        if not self.area_ratio > 0:
            raise UserError(f"SAA+ property prompt: area_ratio must be > 0, got {self.area_ratio}")
        if not self.object_word.strip() or " " in self.object_word:
            raise UserError(f"SAA+ property prompt: object_word must be one word, got {self.object_word!r}")


@dataclass(frozen=True)
class CategoryPrompts:
    """Everything SAA+ needs to know about one category before it sees an image."""

    class_name: str  # the word the general prompts and their filter use
    textual: tuple[tuple[str, str], ...]  # (caption, filter word): general prompts first, then manual ones
    prop: PropertyPrompt
    source: str  # where the values come from, e.g. "mvtec/tile" or "default/texture"


def _p(word: str, n: int, k: int, r: float, similar: str = "dissimilar") -> PropertyPrompt:
    return PropertyPrompt(object_word=word, object_number=n, k_mask=k, area_ratio=r, similar=similar)


# --- MVTec AD (SAA/prompts/mvtec_parameters.py) ----------------------------------------------------
MVTEC_MANUAL: dict[str, tuple[tuple[str, str], ...]] = {
    "carpet": (("black hole", "carpet"), ("thread", "carpet"), ("defect.", "carpet")),
    "grid": (("irregular pattern", "grid"), ("defect.", "grid")),
    "leather": (("defect.", "leather"),),
    "tile": (("defect.", "tile"),),
    "wood": (("defect.", "wood"),),
    "bottle": (("broken part. contamination. white broken.", "bottle"),),
    "cable": (("crack. flawed golden wire. black hole.", "cable"),),
    "capsule": (("white crack. hole.", "capsule"),),
    "hazelnut": (("white print. crack. thread.", "hazelnut"),),
    "metal_nut": (("blue defect. black defect. red defect. scratch.", "nut"),),
    "pill": (("red defect. yellow defect. blue defect. crack. scratch.", "pill"),),
    "screw": (("defect.", "screw"),),
    "toothbrush": (("defect.", "toothbrush"),),
    "transistor": (("defect.", "transistor"),),
    "zipper": (("crack. broken leather.", "zipper"),),
}
MVTEC_PROPERTY: dict[str, PropertyPrompt] = {
    "carpet": _p("carpet,", 1, 5, 0.9),
    "grid": _p("grid,", 1, 5, 0.9),
    "leather": _p("leather,", 1, 5, 0.9),
    "tile": _p("tile,", 1, 5, 0.9),
    "wood": _p("wood,", 1, 5, 0.9),
    "bottle": _p("bottle,", 1, 5, 0.3),
    "cable": _p("cable,", 1, 5, 0.9),
    "capsule": _p("capsule,", 1, 5, 0.6),
    "hazelnut": _p("hazelnut,", 1, 5, 0.9),
    "metal_nut": _p("metal_nut,", 1, 5, 1.0),
    "pill": _p("pill,", 1, 5, 1.0),
    "screw": _p("screw,", 1, 5, 0.1),
    "toothbrush": _p("toothbrush,", 1, 5, 0.5),
    "transistor": _p("transistor,", 1, 5, 1.0),
    "zipper": _p("zipper,", 1, 5, 0.5),
}

# --- VisA (SAA/prompts/visa_parameters.py; used for visa_public and visa_challenge) ------------------
VISA_MANUAL: dict[str, tuple[tuple[str, str], ...]] = {
    "candle": (("color defect. hole. black defect. wick hole. spot. ", "candle"),),
    "capsules": (("black melt. dark liquid.", "capsules"), ("bubble", "capsules")),
    "cashew": (("yellow defect. black defect. small holes. scratch. breakage. crack.", "cashew"),
               ("small spot.", "cashew")),
    "chewinggum": (("crack. yellow defect. color defect. black defect. thread.", "chewinggum"),),
    "fryum": (("broken part. purple defect. black defect. red defect. color defect. color crack. break", "fryum"),),
    "macaroni1": (("broken part. red defect. black defect. crack. hole. scratch. color crack.", "macaroni"),),
    "macaroni2": (("broken part. red defect. black defect. crack. hole. scratch.", "macaroni"),
                  ("edge. spot. chip.", "macaroni")),
    "pcb1": (("bent wire on pcb", "pcb"), ("white scratch on pcb", "pcb"), ("white defect on pcb", "pcb"),
             ("white circle.", "pcb")),
    "pcb2": (("bent wire", "pcb"), ("pointed", "pcb"), ("wire", "pcb")),
    "pcb3": (("bent wire on pcb", "pcb"), ("scratch on pcb", "pcb"), ("defect on pcb", "pcb")),
    "pcb4": (("yellow paper on pcb", "pcb"), ("yellow defect on pcb", "pcb"), ("black defect on pcb", "pcb"),
             ("color defect on pcb", "pcb"), ("scratch on pcb", "pcb"), ("defect on pcb", "pcb")),
    "pipe_fryum": (("broken part. red defect. black defect. crack. hole. scratch.", "fryum"),),
}
VISA_PROPERTY: dict[str, PropertyPrompt] = {
    "candle": _p("candle,", 4, 1, 0.3, "similar"),
    "capsules": _p("capsule,", 20, 15, 1.0),
    "cashew": _p("cashew,", 1, 17, 0.05),
    "chewinggum": _p("chewinggum", 1, 50, 0.2),  # no comma in the reference sentence
    "fryum": _p("fryum,", 1, 5, 1.0),
    "macaroni1": _p("macaroni,", 4, 5, 0.3, "similar"),
    "macaroni2": _p("macaroni,", 4, 50, 0.3),
    "pcb1": _p("printed_circuit_board,", 1, 1, 0.3),
    "pcb2": _p("pcb,", 1, 9, 0.3),
    "pcb3": _p("printed_circuit_board,", 1, 5, 0.3),
    "pcb4": _p("pcb,", 1, 7, 0.3),
    "pipe_fryum": _p("pipe_fryum,", 1, 19, 0.3),
}

# --- KolektorSDD2 and MTD: one class each (SAA/prompts/ksdd2_parameters.py, mtd_parameters.py) ------
KSDD2_MANUAL = (("black hole.", "ksdd2"), ("defect.", "ksdd2"))
KSDD2_PROPERTY = _p("ksdd2,", 1, 5, 0.9)
MTD_MANUAL = (("black hole. blow hole. break. crack. fray. uneven.", "mtd"), ("defect.", "mtd"))
MTD_PROPERTY = _p("mtd,", 1, 5, 0.9)  # keyed 'ksdd2' in the reference file (a KeyError there)

# Per-category tables, keyed by the reference's dataset key.
TABLES: dict[str, tuple[dict[str, tuple[tuple[str, str], ...]], dict[str, PropertyPrompt]]] = {
    "mvtec": (MVTEC_MANUAL, MVTEC_PROPERTY),
    "visa": (VISA_MANUAL, VISA_PROPERTY),
}
# Datasets the reference treats as a single class: (class name used in the prompts, manual, property).
SINGLE_CLASS: dict[str, tuple[str, tuple[tuple[str, str], ...], PropertyPrompt]] = {
    "ksdd2": ("ksdd2", KSDD2_MANUAL, KSDD2_PROPERTY),
    "mtd": ("mtd", MTD_MANUAL, MTD_PROPERTY),
}

# Dataset names as this harness or users may spell them (lower case, non-alphanumerics removed).
DATASET_ALIASES: dict[str, str] = {
    "mvtec": "mvtec", "mvtecad": "mvtec",
    "visa": "visa", "visapublic": "visa", "visachallenge": "visa",
    "ksdd2": "ksdd2", "kolektorsdd2": "ksdd2", "ksdd": "ksdd2", "kolektorsdd": "ksdd2", "kolektor": "ksdd2",
    "mtd": "mtd", "magnetictile": "mtd", "magnetictiledefects": "mtd", "magnetictiles": "mtd",
}

# Defaults for categories the reference has no entry for. n = 1 and k = 5 are the values of every
# MVTec AD, KSDD2 and MTD entry. r: every texture-like reference entry (5 MVTec textures, KSDD2, MTD)
# uses 0.9; for objects, 0.75 is the median of the ten MVTec AD object classes' values.
DEFAULT_K_MASK = 5
DEFAULT_AREA_RATIO = {"texture": 0.9, "object": 0.75}


def dataset_key(dataset: str) -> str | None:
    """The reference's table for a dataset name (None when the reference defines none)."""
    return DATASET_ALIASES.get(re.sub(r"[^a-z0-9]", "", dataset.lower()))


def general_prompts(class_name: str) -> tuple[tuple[str, str], ...]:
    """The three general prompts of the reference, each filtered by the class name."""
    return tuple((t.format(class_name), class_name) for t in GENERAL_TEMPLATES)


def default_prompts(kind: str, object_name: str) -> CategoryPrompts:
    """Prompts for a category the reference has no entry for, from the dataset kind and object name.

    The general prompts name the object (`object_name`, e.g. "metal plate"); the one manual prompt is
    `defect.` (used by 9 of the 15 MVTec AD classes); the filter word is the object's last word, its
    head noun (as the reference filters `metal_nut` boxes by `nut`); the object-pass word is the name
    with underscores and the reference's trailing comma ("metal_plate,").
    """
    if kind not in DEFAULT_AREA_RATIO:
        raise UserError(f"SAA+: dataset kind must be one of {', '.join(DEFAULT_AREA_RATIO)}, got {kind!r}")
    name = " ".join(object_name.lower().replace("_", " ").split())
    if not name:
        raise UserError("SAA+: an unknown category needs a non-empty object name for its prompts")
    head = name.split(" ")[-1]
    textual = tuple((t.format(name), head) for t in GENERAL_TEMPLATES) + (("defect.", head),)
    prop = _p(name.replace(" ", "_") + ",", 1, DEFAULT_K_MASK, DEFAULT_AREA_RATIO[kind])
    return CategoryPrompts(class_name=name, textual=textual, prop=prop, source=f"default/{kind}")


def category_prompts(dataset: str, category: str, kind: str, object_name: str) -> CategoryPrompts:
    """The reference's prompts for (dataset, category), or the kind-based default when it has none."""
    key = dataset_key(dataset)
    if key in SINGLE_CLASS:
        class_name, manual, prop = SINGLE_CLASS[key]
        return CategoryPrompts(class_name, general_prompts(class_name) + manual, prop, f"{key}/{class_name}")
    if key in TABLES:
        manual_table, prop_table = TABLES[key]
        cat = category.lower()
        if cat in manual_table:
            return CategoryPrompts(cat, general_prompts(cat) + manual_table[cat], prop_table[cat], f"{key}/{cat}")
    return default_prompts(kind, object_name or category)


def property_sentence(name: str, prop: PropertyPrompt) -> str:
    """The reference's property-prompt sentence for these numbers (the form its parser reads)."""
    ratio = f"{prop.area_ratio:g}" if prop.area_ratio != int(prop.area_ratio) else f"{int(prop.area_ratio)}."
    return (f"the image of {name} have {prop.object_number} {prop.similar} {prop.object_word} with a maximum of "
            f"{prop.k_mask} anomaly. The anomaly would not exceed {ratio} object area. ")


def parse_property_sentence(sentence: str) -> PropertyPrompt:
    """Parse a property sentence the way the reference does (split on single spaces, fixed positions)."""
    words = sentence.split(" ")
    try:
        return _p(words[7], int(words[5]), int(words[12]), float(words[19]), words[6])
    except (IndexError, ValueError) as exc:
        raise UserError(f"SAA+ property prompt {sentence!r}: expected the form "
                        f"'the image of NAME have N similar|dissimilar WORD, with a maximum of K anomaly. "
                        f"The anomaly would not exceed R object area. ' ({exc})") from exc
