"""timm image backbones (family "timm"), e.g. SAA+'s ImageNet WideResNet-50 feature extractor.

`load(spec)` returns the timm module itself (eval mode, on the runtime device and dtype).

- `spec.source`: a timm model name, optionally with its pretrained tag (`wide_resnet50_2`, which timm
  resolves to its default tag `wide_resnet50_2.racm_in1k`, as SAA+'s `timm.create_model(...,
  pretrained=True)` does; or `wide_resnet50_2.tv_in1k` for torchvision's weights), a timm hub repository
  (`timm/wide_resnet50_2.racm_in1k`), or a local checkpoint file (.pth/.safetensors state dict).
- `spec.variant`: options separated by ";": `features_only:1,2,3` (timm features_only with those
  out_indices; `features_only` alone keeps every stage) and `arch=<timm name>` (the architecture of a
  local checkpoint file when its file name is not a timm model name).

The tiny-random profile builds the same timm ResNet class with the same stage widths, strides and
feature channels but one block per stage (WideResNet-50-2 has 3, 4, 6, 3): seconds instead of minutes on a
loaded CPU, and every shape a consumer sees is the real one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from . import hub
from .base import Availability, Family, ModelSpec, Runtime, register_family

WIDE_RESNET50 = ModelSpec("timm", "wide_resnet50_2", variant="features_only:1,2,3",
                          role="saliency backbone (ImageNet)")
_WEIGHT_FILES = ("model.safetensors|pytorch_model.bin",)
_TINY_SEED = 77


@dataclass(frozen=True)
class TimmOptions:
    arch: str | None = None
    features_only: bool = False
    out_indices: tuple[int, ...] | None = None

    def create_kwargs(self) -> dict:
        if not self.features_only:
            return {}
        kwargs: dict = {"features_only": True}
        if self.out_indices is not None:
            kwargs["out_indices"] = self.out_indices
        return kwargs


def parse_variant(variant: str | None) -> TimmOptions:
    arch, features_only, out_indices = None, False, None
    for part in filter(None, (p.strip() for p in (variant or "").split(";"))):
        if part.startswith("arch="):
            arch = part[len("arch="):].strip()
        elif part == "features_only":
            features_only = True
        elif part.startswith("features_only:"):
            features_only = True
            try:
                out_indices = tuple(int(x) for x in part[len("features_only:"):].split(","))
            except ValueError:
                raise UserError(f"timm variant {variant!r}: out_indices must be integers like "
                                f"'features_only:1,2,3'") from None
        else:
            raise UserError(f"timm variant {variant!r}: unknown option {part!r}; valid: "
                            f"'features_only[:i,j,...]', 'arch=<timm model name>'")
    return TimmOptions(arch, features_only, out_indices)


def _timm_name(spec: ModelSpec, options: TimmOptions) -> str:
    """The timm model name to create (architecture, plus pretrained tag for named sources)."""
    import timm

    if hub.is_local(spec.source):
        path = hub.local_path(spec.source)
        name = options.arch or path.name.split(".")[0]
        if not options.arch and name not in timm.list_models():
            raise UserError(f"cannot tell the timm architecture of {path}: name it with "
                            f"ModelSpec(variant='arch=<timm model name>;...')")
        return name
    if "/" in spec.source:
        return f"hf-hub:{spec.source}"
    if spec.source.split(".")[0] not in timm.list_models():
        raise UserError(f"unknown timm model {spec.source!r} (see timm.list_models())")
    return spec.source


def _pretrained_cfg(name: str):
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise UserError(f"timm has no pretrained weights for {name!r} (see timm.list_pretrained())")
    return cfg


def _torch_hub_file(url: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def availability(spec: ModelSpec) -> Availability:
    options = parse_variant(spec.variant)
    if hub.is_local(spec.source):
        return hub.local_availability(spec.source, f"put the {options.arch or 'timm'} checkpoint file at "
                                                   f"{hub.local_path(spec.source)}")
    if "/" in spec.source:
        return hub.hub_availability(spec.source, spec.revision, ("config.json",) + _WEIGHT_FILES)
    cfg = _pretrained_cfg(_timm_name(spec, options))
    if cfg.hf_hub_id:
        return hub.hub_availability(cfg.hf_hub_id, spec.revision, _WEIGHT_FILES)
    if cfg.url:
        file = _torch_hub_file(cfg.url)
        how = f"curl -L --create-dirs -o {file} {cfg.url}"
        return hub.local_availability(str(file), how)
    raise UserError(f"timm model {spec.source!r} has no downloadable weights")


def load(spec: ModelSpec, runtime: Runtime):
    import timm

    options = parse_variant(spec.variant)
    av = availability(spec)
    name = _timm_name(spec, options)
    hub.require_present(spec, av)
    # load exactly the file availability found (timm's own hub lookup reads the cache path fixed at import)
    weights_file = _weights_file(av) if av.present else None
    if weights_file is not None:
        arch = _hub_arch(Path(av.location)) if name.startswith("hf-hub:") else name
        model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": str(weights_file)},
                                  **options.create_kwargs())
    else:  # not cached but downloadable: timm downloads as usual
        model = timm.create_model(name, pretrained=True, **options.create_kwargs())
    return model.eval().to(runtime.torch_device, hub.torch_dtype(runtime.dtype))


def _hub_arch(snapshot: Path) -> str:
    """The architecture a timm hub repository names in its config.json."""
    import json

    try:
        return json.loads((snapshot / "config.json").read_text())["architecture"]
    except (OSError, ValueError, KeyError):
        raise UserError(f"timm hub snapshot {snapshot} has no config.json naming its 'architecture'") from None


def _weights_file(av: Availability) -> Path | None:
    path = Path(av.location)
    if path.is_file():
        return path
    for entry in _WEIGHT_FILES[0].split("|"):
        if (path / entry).is_file():
            return path / entry
    return None


def tiny_random(spec: ModelSpec, runtime: Runtime):
    import timm
    import torch

    options = parse_variant(spec.variant)
    arch = (_timm_name(spec, options).split("/")[-1]).split(".")[0]
    kwargs = options.create_kwargs()
    if arch.startswith(("resnet", "wide_resnet", "resnext")):
        kwargs["layers"] = (1, 1, 1, 1)  # same block type, widths and strides; one block per stage
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_TINY_SEED)
        model = timm.create_model(arch, pretrained=False, **kwargs)
    return model.eval().to(runtime.torch_device, hub.torch_dtype(runtime.dtype))


register_family("timm", Family(load=load, availability=availability, tiny_random=tiny_random))
