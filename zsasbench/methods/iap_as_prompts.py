"""IAP-AS prompt logic: tag filtering, the LLM request, parsing its answer, and the final prompt.

Plain functions on strings, so every rule can be tested without a model.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

FIXED_PROMPTS = ("abnormal", "defect")

# Tags that name anomalies themselves: a detector prompt built from them would find defects on the
# normal reference images, and they must not become the object tag.
ANOMALY_STOP_WORDS = (
    "crack", "cracked", "scratch", "scratched", "hole", "holes", "stain", "stained", "defect", "defective",
    "damage", "damaged", "dent", "rust", "rusty", "broken", "break", "tear", "torn", "spot", "dirt", "dirty",
    "flaw", "fault", "anomaly", "abnormal", "contamination", "burn", "chip", "chipped", "cut", "bent",
    "missing", "fracture", "corrosion", "scrape", "smudge", "blemish", "leak", "wear", "worn",
)

# Words an LLM puts around a list that are never anomaly names.
FILLER_WORDS = frozenset({"sorry", "sure", "yes", "no", "none", "okay", "ok", "here", "certainly", "etc", "n/a",
                          "answer", "anomalies", "anomaly", "words", "list", "nouns"})

# Words of the request itself: a small LLM that echoes "non-redundant nouns" has not answered.
_REQUEST_WORDS = frozenset({"noun", "nouns", "non-redundant", "prompt", "prompts", "detector", "image", "images"})
_LIST_INTRO = re.compile(r"\b(?:include|includes|including|such as|like|are)\s+")

_BULLET = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d+[.)]|\(?[a-z][.)](?=\s))\s*")
_PREAMBLE = re.compile(r"^(?:sure|here|certainly|okay|ok|the following|answer|anomal(?:y|ies)|words?|list)\b[^:]*:\s*",
                       re.IGNORECASE)
_ALLOWED = re.compile(r"^[a-z][a-z \-]*[a-z]$|^[a-z]$")


def _words(tag: str) -> list[str]:
    return re.findall(r"[a-z]+", tag.lower())


def names_anomaly(tag: str, stop_words: Iterable[str] = ANOMALY_STOP_WORDS) -> bool:
    stop = {w.lower() for w in stop_words}
    return any(w in stop for w in _words(tag))


def unique(items: Iterable[str]) -> list[str]:
    """Duplicates removed, first occurrence kept (never set order: it reaches prompts and files)."""
    seen: dict[str, None] = {}
    for item in items:
        key = item.strip().lower()
        if key and key not in seen:
            seen[key] = None
    return list(seen)


def rank_tags(tags_per_image: Sequence[Sequence[str]], stop_words: Iterable[str] = ANOMALY_STOP_WORDS) -> list[str]:
    """Tags over all reference images, anomaly words dropped, most frequent first (ties: first seen)."""
    counts: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    for tags in tags_per_image:
        for tag in unique(tags):
            if names_anomaly(tag, stop_words):
                continue
            counts[tag] += 1
            first_seen.setdefault(tag, len(first_seen))
    return sorted(counts, key=lambda t: (-counts[t], first_seen[t]))


def llm_messages(object_tags: Sequence[str], system_prompt: str, iap_prompt: str) -> list[dict[str, str]]:
    """The image-aware prompt merged with the object tag set T_n."""
    objects = ", ".join(object_tags)
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": iap_prompt.format(object=objects)})
    return messages


def parse_anomaly_words(answer: str, max_words: int = 10, max_tokens_per_word: int = 3,
                        exclude: Iterable[str] = ()) -> list[str]:
    """Anomaly nouns from an LLM answer: tolerant of numbering, bullets, prose and duplicates.

    Splits on commas, semicolons and new lines; strips bullets, numbering, quotes and a leading
    "Here are ...:" preamble; keeps lowercase entries of letters, spaces and hyphens with at most
    `max_tokens_per_word` words (longer entries are prose); drops `exclude` and duplicates.
    """
    excluded = {e.strip().lower() for e in exclude} | FILLER_WORDS
    words: list[str] = []
    for line in answer.replace("\r", "\n").split("\n"):
        line = _PREAMBLE.sub("", line.strip())
        items = []
        for piece in re.split(r"[,;]|\band\b", line):
            item = _BULLET.sub("", piece.strip()).strip().strip("\"'`*.:!?()[]{}").strip().lower()
            items.append(re.sub(r"\s+", " ", item))
        for item in items:
            if len(item.split()) > max_tokens_per_word:
                # prose: keep what follows "include", "such as", ":" ... ("defects include scratches")
                # (only inside a list: a lone sentence is a refusal or an explanation, not an answer)
                tail = _LIST_INTRO.split(item) if len(items) > 1 else []
                item = tail[-1].strip() if len(tail) > 1 else ""
            if not item or not _ALLOWED.match(item) or len(item.split()) > max_tokens_per_word:
                continue
            if item in excluded or any(w in _REQUEST_WORDS for w in item.split()):
                continue
            words.append(item)
    return unique(words)[:max_words]


def final_prompt_phrases(llm_words: Sequence[str], object_tags: Sequence[str],
                         fixed: Sequence[str] = FIXED_PROMPTS) -> list[str]:
    """P_final: the LLM's words, then the fixed prompts, then T_n; duplicates removed in that order."""
    return unique([*llm_words, *fixed, *object_tags])

