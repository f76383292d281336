"""SDP text side: CLIP-AD's prompt ensemble and its representative text vectors (mean or DBSCAN).

Follows ByChelsea/CLIP-AD @ f004973, `util/prompt_ensemble.py`: 9 normal and 10 anomalous state
phrases, 22 templates, prompts in state-major order, each CLIP text embedding L2-normalised, then one
representative vector per state (normal, anomalous), L2-normalised.

Difference from the reference: its DBSCAN branch casts the representative vector to float16 (a
leftover of its CUDA-autocast setup; it breaks on CPU). Here everything stays in float32, as in the
parity fixture. When DBSCAN finds no cluster at all (every prompt is noise) the reference crashes on
`argmax` of an empty array; here the plain mean of all prompts is used and the fallback is reported.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMAL_STATES: tuple[str, ...] = (
    "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
    "{} without damage", "{} without scratch", "{} without crack", "{} without contamination",
)
ANOMALOUS_STATES: tuple[str, ...] = (
    "damaged {}", "imperfect {}", "blemished {}", "broken {}", "{} with flaw", "{} with defect",
    "{} with damage", "{} with scratch", "{} with crack", "{} with contamination",
)
TEMPLATES: tuple[str, ...] = (
    "a cropped photo of the {}.", "a cropped photo of a {}.",
    "a close-up photo of a {}.", "a close-up photo of the {}.",
    "a bright photo of a {}.", "a bright photo of the {}.",
    "a dark photo of the {}.", "a dark photo of a {}.",
    "a jpeg corrupted photo of a {}.", "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.", "a blurry photo of a {}.",
    "a photo of the {}.", "a photo of a {}.",
    "a photo of a large {}.", "a photo of the small {}.",
    "a photo of the large {}.", "a photo of a small {}.",
    "a photo of the {} for visual inspection.", "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.", "a photo of a {} for anomaly detection.",
)
REP_VEC_METHODS = ("dbscan", "mean")


def state_prompts(states: tuple[str, ...], object_name: str) -> list[str]:
    """Every template applied to every state phrase, state-major (the reference's order)."""
    return [template.format(state.format(object_name)) for state in states for template in TEMPLATES]


@dataclass
class RepresentativeVector:
    vector: np.ndarray  # (D,) float32, unit norm
    labels: np.ndarray  # (N,) int: DBSCAN labels (-1 noise); all 0 for "mean"
    cluster_size: int  # prompts averaged
    fell_back: bool  # DBSCAN found no cluster: mean of all prompts used


def representative_vector(raw_embeddings: np.ndarray, method: str = "dbscan", eps: float = 0.5,
                          min_samples: int = 15) -> RepresentativeVector:
    """One unit vector standing for a set of prompt embeddings (rows; need not be normalised).

    "dbscan": Euclidean DBSCAN on the L2-normalised embeddings; the largest non-noise cluster (ties go
    to the lowest label, as numpy's argmax); mean of its members, L2-normalised. "mean": plain mean.
    """
    data = np.asarray(raw_embeddings, dtype=np.float32)
    if data.ndim != 2 or len(data) == 0:
        raise ValueError(f"representative_vector: expected a non-empty (N, D) array, got shape {data.shape}")
    data = data / np.linalg.norm(data, axis=1, keepdims=True)
    labels = np.zeros(len(data), dtype=np.int64)
    fell_back = False
    if method == "dbscan":
        from sklearn.cluster import DBSCAN

        labels = DBSCAN(eps=eps, min_samples=min_samples).fit(data).labels_.astype(np.int64)
        clustered = labels[labels >= 0]
        if len(clustered):
            members = labels == int(np.argmax(np.bincount(clustered)))
        else:
            members, fell_back = np.ones(len(data), dtype=bool), True
    elif method == "mean":
        members = np.ones(len(data), dtype=bool)
    else:
        raise ValueError(f"unknown representative-vector method {method!r}; valid: {', '.join(REP_VEC_METHODS)}")
    vector = np.mean(data[members], axis=0, dtype=np.float32)
    vector = (vector / np.linalg.norm(vector)).astype(np.float32)
    return RepresentativeVector(vector, labels, int(members.sum()), fell_back)


@dataclass
class TextFeatures:
    features: np.ndarray  # (D, 2) float32: column 0 normal, column 1 anomalous
    prompts: tuple[list[str], list[str]]
    embeddings: tuple[np.ndarray, np.ndarray]  # L2-normalised prompt embeddings per state
    reps: tuple[RepresentativeVector, RepresentativeVector]


def _causal_argmax_tower(model) -> bool:
    """True for open_clip's standard CLIP text tower: causal mask and pooling at the EOT (argmax) token."""
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
    return (all(getattr(model, n, None) is not None for n in needed)
            and getattr(model, "text_pool_type", None) == "argmax")


def _encode_truncated(model, tokens):
    """open_clip's CLIP.encode_text on the first L positions only, L = last EOT position + 1.

    With a causal mask no position attends to a later one, and the pooled feature is read at the EOT
    token, so the padding after the longest prompt cannot change the result: dropping it is exact
    in exact arithmetic and ~5x faster on CPU for these short prompts (77 -> 12-16 positions).
    """
    import torch

    eot = tokens.argmax(dim=-1)
    length = int(eot.max()) + 1
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens[:, :length]).to(cast) + model.positional_embedding[:length].to(cast)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)[torch.arange(x.shape[0], device=x.device), eot]
    proj = model.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


def encode_prompts(model, tokenizer, prompts: list[str], device: str) -> np.ndarray:
    """L2-normalised CLIP text embeddings (N, D) float32 of an open_clip model."""
    import torch

    with torch.no_grad():
        tokens = tokenizer(prompts).to(device)
        if _causal_argmax_tower(model):
            # One pass per prompt length, so no prompt carries padding (~25% less work than one batch).
            lengths = tokens.argmax(dim=-1)
            emb = None
            for length in sorted(set(lengths.tolist())):
                rows = (lengths == length).nonzero()[:, 0]
                part = _encode_truncated(model, tokens[rows]).float()
                if emb is None:
                    emb = part.new_empty((len(tokens), part.shape[1]))
                emb[rows] = part
        else:  # other towers (e.g. Hugging Face text encoders): the model's own full-length pass
            emb = model.encode_text(tokens).float()
        emb = emb / emb.norm(dim=-1, keepdim=True)
    return emb.cpu().numpy()


def text_features(model, tokenizer, object_name: str, device: str = "cpu", method: str = "dbscan",
                  eps: float = 0.5, min_samples: int = 15) -> TextFeatures:
    prompts = (state_prompts(NORMAL_STATES, object_name), state_prompts(ANOMALOUS_STATES, object_name))
    embeddings = tuple(encode_prompts(model, tokenizer, p, device) for p in prompts)
    reps = tuple(representative_vector(e, method, eps, min_samples) for e in embeddings)
    features = np.stack([r.vector for r in reps], axis=1)
    return TextFeatures(features, prompts, embeddings, reps)
