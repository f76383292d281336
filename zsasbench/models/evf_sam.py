"""EVF-SAM family ("evf-sam"): text-prompted Segment Anything with early vision-language fusion.

EVF-SAM (Zhang et al., 2024, https://github.com/hustvl/EVF-SAM) encodes the image (224x224) and the text
prompt jointly with a BEiT-3 multiway encoder, projects the vision CLS token of the fused sequence with a
2-layer MLP (`text_hidden_fcs`) to SAM's prompt width, and gives it to SAM's mask decoder as the only
sparse prompt (dense prompt = SAM's `no_mask_embed`). The "ori" checkpoint `YxZhang/evf-sam` is
BEiT-3-L + SAM ViT-H (1.32 B parameters).

The module tree matches upstream's `EvfSamModel` (visual_model.*, mm_extractor.beit3.*,
text_hidden_fcs.*), so an official checkpoint loads key for key with no mapping. SAM's image encoder,
prompt encoder and mask decoder are Meta's `segment-anything` modules (EVF's copy of them only adds the
`text_embeds` argument, done here in `EvfSam.decode`); BEiT-3 is `beit3.BEiT3` (see its docstring for
why not torchscale).

Spec sources:
  - a hub id (default `YxZhang/evf-sam` at a pinned revision): config.json, pytorch_model.bin (or
    safetensors, sharded or not) and the XLM-R sentencepiece tokenizer, from the local HF cache when
    offline;
  - a local folder with the same files;
  - a checkpoint file (.bin/.pt/.pth/.safetensors state dict); config.json and tokenizer files are taken
    from the same folder (the ViT-H + BEiT-3-L architecture when no config.json is there).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError, MissingWeightsError, UserError
from .base import Availability, Family, ModelSpec, Runtime, offline, register_family
from .beit3 import BEIT3_BASE, BEIT3_LARGE, Beit3Config
from .evf_sam_tokenizer import SPM_NAME, EvfTokenizer, tiny_spm_proto

FAMILY = "evf-sam"
EVF_SAM_REPO = "YxZhang/evf-sam"
EVF_SAM_REVISION = "f88263c8c7acf4f5eff2ab301e6ba07618180fab"  # main on 2024-07-31 (weights of 2024-07-05)
EVF_SAM = ModelSpec(FAMILY, EVF_SAM_REPO, revision=EVF_SAM_REVISION,
                    role="text-prompted segmenter: BEiT-3-L fusion and SAM ViT-H")

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
BEIT3_MEAN = 0.5
BEIT3_STD = 0.5

CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")


# --- architecture -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamArch:
    """SAM architecture (defaults: ViT-H as `build_sam_vit_h`)."""

    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 1280
    depth: int = 32
    heads: int = 16
    global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_head_hidden_dim: int = 256

    @property
    def embedding_size(self) -> int:
        return self.img_size // self.patch_size


SAM_VIT_H_ARCH = SamArch()


@dataclass(frozen=True)
class EvfArch:
    """What upstream's EvfConfig(hidden_size, out_dim, sam_scale, mm_extractor_scale) builds."""

    sam: SamArch = SAM_VIT_H_ARCH
    beit3: Beit3Config = BEIT3_LARGE
    hidden_size: int = 1024
    out_dim: int = 256

    def __post_init__(self):
        if self.hidden_size != self.beit3.embed_dim:
            raise UserError(f"EVF-SAM config: hidden_size {self.hidden_size} must equal the BEiT-3 width "
                            f"{self.beit3.embed_dim}")
        if self.out_dim != self.sam.prompt_embed_dim:
            raise UserError(f"EVF-SAM config: out_dim {self.out_dim} must equal SAM's prompt width "
                            f"{self.sam.prompt_embed_dim}")

    @classmethod
    def from_config(cls, cfg: dict, where: str = "config.json") -> "EvfArch":
        """From an upstream config.json; `sam_arch` / `beit3_arch` (our extension) give custom sizes."""
        if "sam_arch" in cfg:
            arch = dict(cfg["sam_arch"])
            arch["global_attn_indexes"] = tuple(arch.get("global_attn_indexes", ()))
            sam = SamArch(**arch)
        elif cfg.get("sam_scale", "huge") == "huge":
            sam = SAM_VIT_H_ARCH
        else:
            raise DataError(f"{where}: sam_scale {cfg.get('sam_scale')!r} is not supported; EVF-SAM's 'ori' model "
                            "uses 'huge' (give `sam_arch` for a custom size)")
        if "beit3_arch" in cfg:
            beit3 = Beit3Config(**cfg["beit3_arch"])
        else:
            scale = cfg.get("mm_extractor_scale", "large")
            if scale not in ("base", "large"):
                raise DataError(f"{where}: mm_extractor_scale {scale!r} must be 'base' or 'large'")
            beit3 = BEIT3_LARGE if scale == "large" else BEIT3_BASE
        try:
            return cls(sam=sam, beit3=beit3, hidden_size=int(cfg.get("hidden_size", beit3.embed_dim)),
                       out_dim=int(cfg.get("out_dim", sam.prompt_embed_dim)))
        except UserError as exc:
            raise DataError(f"{where}: {exc}") from exc

    def to_config(self) -> dict:
        cfg = {"architectures": ["EvfSamModel"], "model_type": "evf", "hidden_size": self.hidden_size,
               "out_dim": self.out_dim, "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2}
        cfg["sam_scale"] = "huge" if self.sam == SAM_VIT_H_ARCH else "custom"
        cfg["mm_extractor_scale"] = ("large" if self.beit3 == BEIT3_LARGE else
                                     "base" if self.beit3 == BEIT3_BASE else "custom")
        if cfg["sam_scale"] == "custom":
            cfg["sam_arch"] = {**asdict(self.sam), "global_attn_indexes": list(self.sam.global_attn_indexes)}
        if cfg["mm_extractor_scale"] == "custom":
            cfg["beit3_arch"] = self.beit3.to_dict()
        return cfg


EVF_SAM_ARCH = EvfArch()

# Tiny random profile: the same architecture at toy sizes (built in well under a second).
TINY_ARCH = EvfArch(
    sam=SamArch(img_size=64, patch_size=16, embed_dim=32, depth=2, heads=2, global_attn_indexes=(1,),
                window_size=2, prompt_embed_dim=32, decoder_depth=2, decoder_mlp_dim=64, decoder_heads=4,
                iou_head_hidden_dim=32),
    beit3=Beit3Config(embed_dim=32, layers=2, heads=4, ffn_dim=64, img_size=32, patch_size=8, vocab_size=64,
                      max_source_positions=34),
    hidden_size=32, out_dim=32)


# --- the network ------------------------------------------------------------------------------------
def build_network(arch: EvfArch):
    """The EVF-SAM module tree with upstream's state-dict key names (weights uninitialised by design:
    callers either load a state dict or initialise it)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
    from torch import nn

    from .beit3 import BEiT3

    s = arch.sam
    visual = Sam(
        image_encoder=ImageEncoderViT(
            depth=s.depth, embed_dim=s.embed_dim, img_size=s.img_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=s.heads, patch_size=s.patch_size,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=list(s.global_attn_indexes),
            window_size=s.window_size, out_chans=s.prompt_embed_dim),
        prompt_encoder=PromptEncoder(
            embed_dim=s.prompt_embed_dim, image_embedding_size=(s.embedding_size, s.embedding_size),
            input_image_size=(s.img_size, s.img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=s.decoder_depth, embedding_dim=s.prompt_embed_dim,
                                          mlp_dim=s.decoder_mlp_dim, num_heads=s.decoder_heads),
            transformer_dim=s.prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=s.iou_head_hidden_dim),
        pixel_mean=list(SAM_PIXEL_MEAN), pixel_std=list(SAM_PIXEL_STD))

    class MMExtractor(nn.Module):  # upstream's BEiT3Wrapper holds the encoder as `.beit3`
        def __init__(self):
            super().__init__()
            self.beit3 = BEiT3(arch.beit3)

    class EvfSamNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.visual_model = visual
            self.mm_extractor = MMExtractor()
            self.text_hidden_fcs = nn.ModuleList([nn.Sequential(
                nn.Linear(arch.hidden_size, arch.hidden_size), nn.ReLU(), nn.Linear(arch.hidden_size, arch.out_dim))])

    return EvfSamNet()


def network_from_state_dict(arch: EvfArch, state_dict: dict, *, source: str, device: str = "cpu",
                            dtype: str = "float32"):
    """Build the network and load an upstream-keyed state dict into it, strictly.

    The one loading path for every source (hub checkpoint, local file, parity fixture): the module tree is
    built on the meta device (no random init of 1.3 B values), the checkpoint tensors are assigned
    (converted to `dtype`), and then nothing may be left uninitialised: every key must be consumed and
    every expected key present, or a DataError names the file and the keys.
    """
    import torch

    torch_dtype = _torch_dtype(dtype)
    with torch.device("meta"):
        net = build_network(arch)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise DataError(f"{source}: checkpoint keys do not match the EVF-SAM architecture "
                        f"({len(missing)} missing, e.g. {missing[:5]}; {len(unexpected)} unexpected, "
                        f"e.g. {unexpected[:5]})")
    bad = [f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
           if tuple(state_dict[k].shape) != tuple(v.shape)]
    if bad:
        raise DataError(f"{source}: {len(bad)} tensors have the wrong shape for this config, e.g. {bad[:3]}")
    converted = {k: (t.to(torch_dtype) if t.is_floating_point() else t) for k, t in state_dict.items()}
    net.load_state_dict(converted, strict=True, assign=True)
    _float32_islands(net)
    # Non-persistent buffers are not in checkpoints: set them from their constants.
    vm = net.visual_model
    vm.register_buffer("pixel_mean", torch.tensor(SAM_PIXEL_MEAN).view(-1, 1, 1), False)
    vm.register_buffer("pixel_std", torch.tensor(SAM_PIXEL_STD).view(-1, 1, 1), False)
    left = [n for n, t in list(net.named_parameters()) + list(net.named_buffers()) if t.is_meta]
    if left:
        raise DataError(f"{source}: tensors left uninitialised after loading: {left[:5]}")
    return net.to(device).eval()


def _float32_islands(net) -> None:
    """Parts kept in float32 under a half-precision runtime: SAM's neck (its LayerNorm2d overflows in
    float16) and the random-Fourier PE (segment-anything builds its grid in float32). EVF's copy of SAM
    does the same with autocast and casts. No effect in float32."""
    net.visual_model.image_encoder.neck.float()
    net.visual_model.prompt_encoder.pe_layer.float()


def _torch_dtype(name: str):
    import torch

    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise UserError(f"unknown dtype {name!r}; valid: {', '.join(table)}")
    return table[name]


# --- preprocessing (as upstream inference.py) -------------------------------------------------------
def _check_image(image: np.ndarray) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise UserError(f"EVF-SAM: images must be HxWx3 uint8 RGB arrays, got {desc}")


def beit3_pixels(image: np.ndarray, size: int):
    """(3, size, size) float32: /255, bicubic resize to a square (torch interpolate, no antialias, no
    clamping: what torchvision's Resize(antialias=None) does on a tensor), normalised to [-1, 1]."""
    import torch
    import torch.nn.functional as F

    _check_image(image)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255.0)  # a writable copy
    x = F.interpolate(x[None], size=(size, size), mode="bicubic", align_corners=False, antialias=False)[0]
    return (x - BEIT3_MEAN) / BEIT3_STD


def sam_resize_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    scale = long_side / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def sam_pixels(image: np.ndarray, size: int):
    """((3, size, size) float32, (h, w)): PIL bilinear resize of the uint8 image to longest side `size`
    (SAM's ResizeLongestSide), SAM normalisation, zero padding bottom/right after normalising."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    _check_image(image)
    h, w = sam_resize_shape(image.shape[0], image.shape[1], size)
    resized = np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))  # a writable copy
    x = torch.from_numpy(resized).permute(2, 0, 1).float()
    x = (x - torch.tensor(SAM_PIXEL_MEAN).view(-1, 1, 1)) / torch.tensor(SAM_PIXEL_STD).view(-1, 1, 1)
    return F.pad(x, (0, size - w, 0, size - h)), (h, w)


# --- the wrapper ------------------------------------------------------------------------------------
@dataclass
class EvfResult:
    """One image with P prompts. `logits`: (P, H, W) float32 numpy, final mask logits at the image size;
    the rest are torch tensors for inspection (intermediates are kept only when asked)."""

    logits: np.ndarray
    low_res_logits: object  # (P, 1, s, s)
    iou_predictions: object  # (P, 1)
    text_embeds: object  # (P, 1, out_dim)
    resize_shape: tuple[int, int]
    intermediates: dict = field(default_factory=dict)


class EvfSam:
    """EVF-SAM in eval mode with its tokenizer. `segment(image, prompts)` gives per-prompt mask logits."""

    def __init__(self, net, tokenizer, arch: EvfArch, *, source: str, device: str, dtype: str,
                 weights_are_real: bool):
        self.net = net.eval()
        self.tokenizer = tokenizer
        self.arch = arch
        self.source = source
        self.device = device
        self.dtype = dtype
        self.weights_are_real = weights_are_real

    # text
    def tokenize(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids per prompt, with <s> ... </s> as upstream's XLM-R tokenizer adds them."""
        if isinstance(prompts, str):
            raise TypeError("tokenize expects a list of prompts, not one string")
        out = []
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise UserError(f"EVF-SAM: prompts must be non-empty strings, got {p!r}")
            out.append(self.tokenizer.encode(p))
        return out

    def _ids_tensor(self, ids: Sequence[Sequence[int]]):
        import torch

        if not ids or any(len(i) == 0 for i in ids):
            raise UserError("EVF-SAM: need at least one prompt with at least one token")
        n = max(len(i) for i in ids)
        pad_id = 1  # <pad>; masked out anyway
        tensor = torch.full((len(ids), n), pad_id, dtype=torch.long)
        mask = torch.ones((len(ids), n), dtype=torch.bool)
        for r, row in enumerate(ids):
            tensor[r, :len(row)] = torch.tensor(list(row), dtype=torch.long)
            mask[r, :len(row)] = False
        return tensor.to(self.device), mask.to(self.device)

    # stages
    def image_embeddings(self, image: np.ndarray):
        import torch

        pixels, resize = sam_pixels(image, self.arch.sam.img_size)
        enc = self.net.visual_model.image_encoder
        with torch.inference_mode():
            x = enc.patch_embed(pixels[None].to(self.device, _torch_dtype(self.dtype)))
            if enc.pos_embed is not None:
                x = x + enc.pos_embed
            for blk in enc.blocks:
                x = blk(x)
            # ImageEncoderViT.forward, with the neck in float32 whatever the dtype (see _float32_islands).
            emb = enc.neck(x.permute(0, 3, 1, 2).float()).to(x.dtype)
        return emb, resize, pixels

    def text_embeds(self, image: np.ndarray, ids: Sequence[Sequence[int]], keep: dict | None = None):
        """(P, 1, out_dim): fused BEiT-3 CLS feature through `text_hidden_fcs[0]`, one row per prompt."""
        import torch

        pixels = beit3_pixels(image, self.arch.beit3.img_size)
        input_ids, pad = self._ids_tensor(ids)
        batch = pixels[None].expand(len(ids), -1, -1, -1).to(self.device, _torch_dtype(self.dtype))
        with torch.inference_mode():
            hidden = self.net.mm_extractor.beit3(batch, input_ids, pad if bool(pad.any()) else None)
            feat = self.net.text_hidden_fcs[0](hidden[:, :1])
        if keep is not None:
            keep.update(pixel_values_beit=pixels, beit3_encoder_out=hidden, input_ids=input_ids)
        return feat

    def decode(self, image_embeddings, text_embeds):
        """SAM mask decoder with `text_embeds` as the only sparse prompt (no points, boxes or mask), mask 0."""
        import torch

        vm = self.net.visual_model
        s = self.arch.sam.embedding_size
        with torch.inference_mode():
            sparse = text_embeds.to(image_embeddings.dtype)
            dense = vm.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(sparse.shape[0], -1, s, s)
            image_pe = vm.prompt_encoder.get_dense_pe().to(image_embeddings.dtype)
            low_res, iou = vm.mask_decoder(image_embeddings=image_embeddings, image_pe=image_pe,
                                           sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                           multimask_output=False)
        return low_res, iou

    def postprocess(self, low_res, resize_shape: tuple[int, int], original_shape: tuple[int, int]):
        import torch

        with torch.inference_mode():
            return self.net.visual_model.postprocess_masks(low_res.float(), resize_shape, original_shape)

    def segment(self, image: np.ndarray, prompts: Sequence[str] | None = None, *,
                input_ids: Sequence[Sequence[int]] | None = None, keep_intermediates: bool = False) -> EvfResult:
        """Mask logits for each prompt (or each row of given token ids) on one HxWx3 uint8 image."""
        import torch

        if (prompts is None) == (input_ids is None):
            raise UserError("EVF-SAM: give either prompts or input_ids")
        ids = self.tokenize(prompts) if input_ids is None else [list(map(int, r)) for r in input_ids]
        keep: dict | None = {} if keep_intermediates else None
        emb, resize, sam_in = self.image_embeddings(image)
        feat = self.text_embeds(image, ids, keep)
        low_res, iou = self.decode(emb, feat)
        logits = self.postprocess(low_res, resize, image.shape[:2])[:, 0]
        if keep is not None:
            with torch.inference_mode():
                keep.update(pixel_values_sam=sam_in, sam_image_embeddings=emb,
                            image_pe=self.net.visual_model.prompt_encoder.get_dense_pe())
        return EvfResult(logits=logits.float().cpu().numpy(), low_res_logits=low_res, iou_predictions=iou,
                         text_embeds=feat, resize_shape=resize, intermediates=keep or {})


# --- tokenizer --------------------------------------------------------------------------------------
def load_tokenizer(folder: Path) -> EvfTokenizer:
    """The checkpoint's tokenizer (BEiT-3 sentencepiece model, XLM-R ids) from a folder, offline."""
    return EvfTokenizer.from_file(folder / SPM_NAME)


def tiny_tokenizer() -> EvfTokenizer:
    return EvfTokenizer(tiny_spm_proto(), source="tiny-random")


# --- checkpoints ------------------------------------------------------------------------------------
def read_state_dict(path: Path) -> dict:
    """A state dict from a .safetensors / torch file, or from a sharded checkpoint's index.json."""
    import torch

    if path.name.endswith(".index.json"):
        index = json.loads(path.read_text())
        shards = sorted(set(index.get("weight_map", {}).values()))
        if not shards:
            raise DataError(f"{path}: no weight_map in the shard index")
        out = {}
        for shard in shards:
            out.update(read_state_dict(path.parent / shard))
        return out
    if not path.is_file():
        raise MissingWeightsError(f"EVF-SAM checkpoint file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: say which
        raise DataError(f"{path}: cannot read as a PyTorch state dict ({exc})") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise DataError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return sd


def _weights_in(folder: Path) -> Path | None:
    for name in INDEX_NAMES + WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def save_checkpoint(model: EvfSam, folder: str | Path, safetensors: bool = False) -> Path:
    """Write a folder in the hub layout (config.json, weights, tokenizer) that `load` reads back."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(json.dumps(model.arch.to_config(), indent=2))
    sd = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    if safetensors:
        from safetensors.torch import save_file

        save_file(sd, str(folder / "model.safetensors"))
    else:
        torch.save(sd, str(folder / "pytorch_model.bin"))
    model.tokenizer.save(folder)
    return folder


def load_folder(folder: Path, runtime: Runtime, weights: Path | None = None, source: str = "") -> EvfSam:
    source = source or str(folder)
    cfg_path = folder / CONFIG_NAME
    if cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{cfg_path}: not valid JSON ({exc})") from exc
        arch = EvfArch.from_config(cfg, where=str(cfg_path))
    elif weights is not None:
        arch = EVF_SAM_ARCH  # a bare checkpoint file: the published architecture
    else:
        raise MissingWeightsError(f"EVF-SAM folder {folder} has no {CONFIG_NAME}")
    weights = weights or _weights_in(folder)
    if weights is None:
        raise MissingWeightsError(f"EVF-SAM folder {folder} has no weights ({', '.join(WEIGHT_NAMES)})")
    tokenizer = load_tokenizer(folder)
    net = network_from_state_dict(arch, read_state_dict(weights), source=str(weights),
                                  device=runtime.torch_device, dtype=runtime.dtype)
    return EvfSam(net, tokenizer, arch, source=source, device=runtime.torch_device, dtype=runtime.dtype,
                  weights_are_real=True)


def _is_local(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists()


def _how_to_get(spec: ModelSpec) -> str:
    rev = f" --revision {spec.revision}" if spec.revision else ""
    return f"hf download {spec.source}{rev}"


def _hub_folder(spec: ModelSpec) -> Path | None:
    """The cached snapshot folder of a hub id when config and weights are in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    cfg = try_to_load_from_cache(spec.source, CONFIG_NAME, revision=spec.revision)
    if not isinstance(cfg, str):
        return None
    folder = Path(cfg).parent
    return folder if _weights_in(folder) is not None else None


def availability(spec: ModelSpec) -> Availability:
    if _is_local(spec.source):
        path = Path(spec.source).expanduser()
        if path.is_file():
            return Availability(True, str(path), path.stat().st_size)
        if path.is_dir() and _weights_in(path) is not None:
            size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
            return Availability(True, str(path), size)
        return Availability(False, str(path), None,
                            f"put an EVF-SAM checkpoint there, e.g. `{_how_to_get(EVF_SAM)} --local-dir {path}`")
    folder = _hub_folder(spec)
    if folder is not None:
        size = sum(p.resolve().stat().st_size for p in folder.iterdir() if p.is_file())
        return Availability(True, str(folder), size)
    return Availability(False, f"Hugging Face cache ({spec.source})", None, _how_to_get(spec))


def load(spec: ModelSpec, runtime: Runtime) -> EvfSam:
    if _is_local(spec.source):
        path = Path(spec.source).expanduser()
        if path.is_file():
            if not path.name.endswith(CHECKPOINT_SUFFIXES + (".index.json",)):
                raise UserError(f"EVF-SAM checkpoint {path}: expected a {', '.join(CHECKPOINT_SUFFIXES)} file")
            return load_folder(path.parent, runtime, weights=path, source=str(path))
        if path.is_dir():
            return load_folder(path, runtime)
        raise MissingWeightsError(f"EVF-SAM checkpoint {path} does not exist")
    folder = _hub_folder(spec)
    if folder is None:
        if offline():
            raise MissingWeightsError(f"EVF-SAM weights {spec.source} are not in the local Hugging Face cache "
                                      f"(offline). Get them with: {_how_to_get(spec)}")
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(spec.source, revision=spec.revision,
                                        allow_patterns=["*.json", "*.model", "*.bin", "*.safetensors"]))
    return load_folder(folder, runtime, source=spec.source)


def build_tiny(seed: int = 0, runtime: Runtime | None = None) -> EvfSam:
    """A random-weight EVF-SAM of the real architecture at toy sizes, deterministic from `seed`."""
    import torch

    runtime = runtime or Runtime(profile="tiny-random")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_network(TINY_ARCH)
        with torch.no_grad():  # SAM zero-inits these; random values exercise the positional paths
            enc = net.visual_model.image_encoder
            enc.pos_embed.normal_(0.0, 0.02)
            for blk in enc.blocks:
                blk.attn.rel_pos_h.normal_(0.0, 0.1)
                blk.attn.rel_pos_w.normal_(0.0, 0.1)
            net.mm_extractor.beit3.vision_embed.cls_token.normal_(0.0, 0.2)
    net = net.to(runtime.torch_device, _torch_dtype(runtime.dtype)).eval()
    _float32_islands(net)
    return EvfSam(net, tiny_tokenizer(), TINY_ARCH, source="tiny-random", device=runtime.torch_device,
                  dtype=runtime.dtype, weights_are_real=False)


def tiny_random(spec: ModelSpec, runtime: Runtime) -> EvfSam:
    return build_tiny(seed=0, runtime=runtime)


register_family(FAMILY, Family(load=load, availability=availability, tiny_random=tiny_random))

__all__ = ["EVF_SAM", "EVF_SAM_ARCH", "EvfArch", "EvfResult", "EvfSam", "SamArch", "TINY_ARCH", "beit3_pixels",
           "build_network", "build_tiny", "load", "network_from_state_dict", "read_state_dict", "sam_pixels",
           "save_checkpoint"]
