"""Segment Anything (family "sam"): boxes in, one mask per box out, through one `Segmenter` wrapper.

Two backends behind the same wrapper:
- transformers `SamModel` + `SamProcessor` (hub id such as `facebook/sam-vit-huge`, or a saved folder);
- Meta's `segment-anything` package for the official checkpoint files (`sam_vit_h_4b8939.pth`,
  `sam_vit_l_0b3195.pth`, `sam_vit_b_01ec64.pth`), driven by its `SamPredictor`. The variant comes from
  `spec.variant` or the file name and is built with `sam_model_registry`; a state dict of another size
  (e.g. a tiny test model) has its architecture read from the tensor shapes and is built from the same
  modeling classes. The official builder loads with `torch.load` unrestricted; here the file is read with
  `weights_only=True` and loaded strictly, so a truncated or foreign file fails with its name.

Both follow SAM's predictor: multimask output off, the low-resolution mask logits upsampled (bilinear) to
the padded 1024 frame, cropped to the resized image and upsampled to the original image size; masks are
logits > 0. The image embedding of the last image is kept, so several calls on one image (SAA+ segments
object and defect boxes separately) encode it once.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, UserError
from . import hub
from .base import Availability, Family, ModelSpec, Runtime, register_family

SAM_VIT_H = ModelSpec("sam", "facebook/sam-vit-huge", revision="87aecf0df4ce6b30cd7de76e87673c49644bdf67",
                      role="segmenter")

CHECKPOINT_URLS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}
# encoder width and depth of each official variant (segment_anything/build_sam.py)
VARIANT_SHAPES = {"vit_h": (1280, 32), "vit_l": (1024, 24), "vit_b": (768, 12)}
_REQUIRED = ("config.json", "model.safetensors|pytorch_model.bin",
             "preprocessor_config.json|processor_config.json")  # transformers 5 saves the latter
_TINY_SEED = 4321


@dataclass
class Masks:
    masks: np.ndarray  # (N, H, W) bool: logits > 0
    logits: np.ndarray  # (N, H, W) float32 mask logits at the image size
    iou_scores: np.ndarray  # (N,) float32 predicted IoU

    def __len__(self) -> int:
        return len(self.iou_scores)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UserError(f"image must be an HxWx3 uint8 RGB array, got shape {getattr(image, 'shape', None)} "
                        f"dtype {getattr(image, 'dtype', type(image).__name__)}")
    return image


def _check_boxes(boxes) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise UserError(f"boxes must be an (N, 4) xyxy array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise UserError("boxes contain NaN or infinite coordinates")
    return arr


def _image_key(image: np.ndarray) -> tuple:
    return image.shape, hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest()


class _HFBackend:
    """transformers SamModel + SamProcessor."""

    def __init__(self, model, processor, device: str):
        self.model = model.eval()
        self.processor = processor
        self.device = device
        self._key = None
        self._cache = None

    def _embed(self, image: np.ndarray):
        import torch

        key = _image_key(image)
        if key != self._key:
            inputs = self.processor(images=image, return_tensors="pt")
            dtype = next(self.model.parameters()).dtype
            with torch.inference_mode():
                emb = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device, dtype))
            self._key, self._cache = key, (emb, inputs["original_sizes"], inputs["reshaped_input_sizes"])
        return self._cache

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        emb, original, reshaped = self._embed(image)
        # xyxy pixels -> the resized (longest side 1024) frame, as SamProcessor._normalize_coordinates
        (old_h, old_w), (new_h, new_w) = original[0].tolist(), reshaped[0].tolist()
        scaled = boxes.astype(np.float64) * np.array([new_w / old_w, new_h / old_h] * 2)
        dtype = next(self.model.parameters()).dtype
        box_t = torch.as_tensor(scaled[None], dtype=dtype, device=self.device)
        with torch.inference_mode():
            out = self.model(image_embeddings=emb, input_boxes=box_t, multimask_output=False)
        logits = self.processor.post_process_masks(out.pred_masks.float().cpu(), original, reshaped,
                                                   binarize=False)[0]  # (N, 1, H, W)
        return logits[:, 0].numpy(), out.iou_scores[0, :, 0].float().cpu().numpy()


class _SegmentAnythingBackend:
    """Meta's segment_anything Sam driven by its SamPredictor."""

    def __init__(self, sam, device: str):
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(sam.to(device).eval())
        self.device = device
        self._key = None

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        key = _image_key(image)
        if key != self._key:
            self.predictor.set_image(image, image_format="RGB")
            self._key = key
        box_t = torch.as_tensor(boxes, dtype=torch.float32, device=self.device)
        box_t = self.predictor.transform.apply_boxes_torch(box_t, image.shape[:2])  # returns float32
        box_t = box_t.to(next(self.predictor.model.parameters()).dtype)
        with torch.inference_mode():
            logits, iou, _ = self.predictor.predict_torch(point_coords=None, point_labels=None, boxes=box_t,
                                                          multimask_output=False, return_logits=True)
        return logits[:, 0].float().cpu().numpy(), iou[:, 0].float().cpu().numpy()


class Segmenter:
    """Box-prompted SAM: `segment_boxes(image, boxes)` gives one mask per box (multimask off)."""

    def __init__(self, backend, source: str = ""):
        self._backend = backend
        self.source = source

    @property
    def backend(self) -> str:
        return "transformers" if isinstance(self._backend, _HFBackend) else "segment-anything"

    def segment_boxes(self, image: np.ndarray, boxes: np.ndarray) -> Masks:
        image = _check_image(image)
        boxes = _check_boxes(boxes)
        h, w = image.shape[:2]
        if len(boxes) == 0:
            return Masks(np.zeros((0, h, w), bool), np.zeros((0, h, w), np.float32), np.zeros(0, np.float32))
        logits, iou = self._backend(image, boxes)
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        return Masks(logits > 0, logits, np.asarray(iou, dtype=np.float32))


# ---------------------------------------------------------------- segment-anything checkpoints

@dataclass(frozen=True)
class SaArch:
    """The hyper-parameters of a segment_anything `Sam` (official values for ViT-H in the defaults)."""

    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    window_size: int = 14
    img_size: int = 1024
    patch_size: int = 16
    mlp_ratio: float = 4.0
    prompt_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8  # not recoverable from weights; every official model uses 8
    iou_head_depth: int = 3
    iou_head_hidden: int = 256
    num_multimask_outputs: int = 3


TINY_SA_ARCH = SaArch(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4, img_size=64,
                      patch_size=8, prompt_dim=32, mask_in_chans=8, decoder_mlp_dim=64, iou_head_hidden=32)


def build_sa_sam(arch: SaArch):
    """A segment_anything `Sam` of the given architecture (random weights), from its modeling classes."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = arch.img_size // arch.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.depth, embed_dim=arch.embed_dim, img_size=arch.img_size, mlp_ratio=arch.mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=arch.num_heads,
            patch_size=arch.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=list(arch.global_attn_indexes), window_size=arch.window_size,
            out_chans=arch.prompt_dim),
        prompt_encoder=PromptEncoder(embed_dim=arch.prompt_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(arch.img_size, arch.img_size),
                                     mask_in_chans=arch.mask_in_chans),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=arch.num_multimask_outputs,
            transformer=TwoWayTransformer(depth=arch.decoder_depth, embedding_dim=arch.prompt_dim,
                                          mlp_dim=arch.decoder_mlp_dim, num_heads=arch.decoder_heads),
            transformer_dim=arch.prompt_dim, iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def _count(state: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for key in state if (m := pattern.match(key))})


def infer_sa_arch(state: dict, name: str = "checkpoint") -> SaArch:
    """Read a segment_anything Sam's architecture off its state-dict tensor shapes."""
    try:
        proj = state["image_encoder.patch_embed.proj.weight"]
        embed_dim, patch = int(proj.shape[0]), int(proj.shape[-1])
        grid = int(state["image_encoder.pos_embed"].shape[1])
        depth = _count(state, "image_encoder.blocks.")
        head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
        sizes = [(int(state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) + 1) // 2 for i in range(depth)]
        windows = {s for s in sizes if s != grid}
        mlp_dim = int(state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0])
        prompt_dim = int(state["image_encoder.neck.0.weight"].shape[0])
        return SaArch(
            embed_dim=embed_dim, depth=depth, num_heads=embed_dim // head_dim,
            global_attn_indexes=tuple(i for i, s in enumerate(sizes) if s == grid),
            window_size=windows.pop() if len(windows) == 1 else grid, img_size=grid * patch, patch_size=patch,
            mlp_ratio=mlp_dim / embed_dim, prompt_dim=prompt_dim,
            mask_in_chans=int(state["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
            decoder_depth=_count(state, "mask_decoder.transformer.layers."),
            decoder_mlp_dim=int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
            iou_head_depth=_count(state, "mask_decoder.iou_prediction_head.layers."),
            iou_head_hidden=int(state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]),
            num_multimask_outputs=int(state["mask_decoder.mask_tokens.weight"].shape[0]) - 1,
        )
    except (KeyError, IndexError) as exc:
        raise DataError(f"{name} is not a segment-anything SAM state dict (missing or odd tensor {exc})") from None


def variant_of(spec: ModelSpec) -> str | None:
    """The official variant a checkpoint spec names (spec.variant, else the file name), or None."""
    if spec.variant:
        if spec.variant not in VARIANT_SHAPES:
            raise UserError(f"unknown SAM variant {spec.variant!r}; valid: {', '.join(VARIANT_SHAPES)}")
        return spec.variant
    m = re.search(r"vit_([hlb])", Path(spec.source).name)
    return f"vit_{m.group(1)}" if m else None


def load_sa_checkpoint(path: Path, variant: str | None):
    """A segment_anything Sam with the weights of an official-format state-dict file."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise DataError(f"cannot read SAM checkpoint {path}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise DataError(f"SAM checkpoint {path} does not hold a state dict")
    arch = infer_sa_arch(state, str(path))
    if variant is not None:
        from segment_anything import sam_model_registry

        want = VARIANT_SHAPES[variant]
        if (arch.embed_dim, arch.depth) != want:
            raise DataError(f"SAM checkpoint {path} has encoder width {arch.embed_dim} and depth {arch.depth}, "
                            f"but variant {variant} has {want[0]} and {want[1]}; fix the variant or the file")
        sam = sam_model_registry[variant]()
    else:
        sam = build_sa_sam(arch)
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(f"SAM checkpoint {path} does not fit the segment-anything model: {exc}") from None
    return sam.eval()


# ---------------------------------------------------------------- transformers models

def build_tiny_hf(seed: int = _TINY_SEED):
    """A tiny random-weight transformers SamModel with its processor (real architecture, toy width)."""
    import torch
    from transformers import (SamConfig, SamImageProcessor, SamMaskDecoderConfig, SamModel, SamProcessor,
                              SamPromptEncoderConfig, SamVisionConfig)

    size = 64
    vision = SamVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
                             image_size=size, patch_size=8, output_channels=32, window_size=2,
                             global_attn_indexes=[1], num_pos_feats=16, initializer_range=0.02)
    prompt = SamPromptEncoderConfig(hidden_size=32, image_size=size, patch_size=8, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
                                   iou_head_hidden_dim=32)
    config = SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SamModel(config).eval()
    processor = SamProcessor(image_processor=SamImageProcessor(size={"longest_edge": size},
                                                               pad_size={"height": size, "width": size}))
    return model, processor


def _is_checkpoint_file(spec: ModelSpec) -> bool:
    return hub.is_local(spec.source) and (hub.local_path(spec.source).is_file()
                                          or spec.source.lower().endswith((".pth", ".pt")))


def availability(spec: ModelSpec) -> Availability:
    if _is_checkpoint_file(spec):
        variant = variant_of(spec) or "vit_h"
        how = f"curl -L -o {hub.local_path(spec.source)} {CHECKPOINT_URLS[variant]}"
        return hub.local_availability(spec.source, how)
    if hub.is_local(spec.source):
        how = (f"`{hub.hub_command(SAM_VIT_H.source, SAM_VIT_H.revision)}` and pass the folder it prints, "
               f"or give an official checkpoint file ({CHECKPOINT_URLS['vit_h']})")
        return hub.local_availability(spec.source, how)
    return hub.hub_availability(spec.source, spec.revision, _REQUIRED)


def load(spec: ModelSpec, runtime: Runtime) -> Segmenter:
    av = availability(spec)
    hub.require_present(spec, av)
    device = runtime.torch_device
    dtype = hub.torch_dtype(runtime.dtype)
    if _is_checkpoint_file(spec):
        sam = load_sa_checkpoint(hub.local_path(spec.source), variant_of(spec))
        return Segmenter(_SegmentAnythingBackend(sam.to(dtype=dtype), device), source=av.location)
    from transformers import SamModel, SamProcessor

    hub.quiet_transformers()
    where = hub.pretrained_location(spec)
    kwargs = hub.hub_kwargs(spec)
    processor = SamProcessor.from_pretrained(where, **kwargs)
    model = SamModel.from_pretrained(where, dtype=dtype, **kwargs)
    return Segmenter(_HFBackend(model.to(device), processor, device), source=av.location)


def tiny_random(spec: ModelSpec, runtime: Runtime) -> Segmenter:
    """Tiny random SAM of the backend the spec names (segment-anything for .pth files, else transformers)."""
    import torch

    device = runtime.torch_device
    if _is_checkpoint_file(spec):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_TINY_SEED)
            sam = build_sa_sam(TINY_SA_ARCH)
        return Segmenter(_SegmentAnythingBackend(sam, device), source="tiny-random")
    model, processor = build_tiny_hf()
    return Segmenter(_HFBackend(model.to(device), processor, device), source="tiny-random")


register_family("sam", Family(load=load, availability=availability, tiny_random=tiny_random))
