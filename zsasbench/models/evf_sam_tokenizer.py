"""EVF-SAM's text tokenizer: XLM-R id convention over BEiT-3's sentencepiece model.

The checkpoint ships `sentencepiece.bpe.model` (BEiT-3's 64k sentencepiece model) with a
tokenizer_config.json naming the slow `XLMRobertaTokenizer`, which upstream loads with `use_fast=False`.
That tokenizer maps sentencepiece pieces to ids the fairseq way: <s>=0, <pad>=1, </s>=2, <unk>=3, every
other piece k gets k + 1, and wraps a text as <s> ... </s>. This class does the same with the
`sentencepiece` library directly, so any model type in the file (unigram or BPE) tokenizes as upstream.
(transformers 5 dropped the slow tokenizers; its converted one needs the same library anyway.)
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError, MissingWeightsError

SPM_NAME = "sentencepiece.bpe.model"
BOS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
_SPECIAL = {"<s>": BOS_ID, "<pad>": PAD_ID, "</s>": EOS_ID, "<unk>": UNK_ID}
_FAIRSEQ_OFFSET = 1

# tokenizer_config.json as the official checkpoint has it (so a saved folder loads upstream too)
_TOKENIZER_CONFIG = {
    "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
    "pad_token": "<pad>", "mask_token": "<mask>", "padding_side": "right", "sp_model_kwargs": {},
    "tokenizer_class": "XLMRobertaTokenizer", "use_fast": False,
}


class EvfTokenizer:
    def __init__(self, model_proto: bytes, source: str = "<memory>"):
        import sentencepiece as spm

        self.source = source
        self.model_proto = bytes(model_proto)
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        except Exception as exc:  # noqa: BLE001 - a corrupt file: say which
            raise DataError(f"{source}: not a readable sentencepiece model ({exc})") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> "EvfTokenizer":
        path = Path(path)
        if not path.is_file():
            raise MissingWeightsError(f"EVF-SAM tokenizer file {path} does not exist (upstream ships {SPM_NAME} "
                                      "beside the weights)")
        return cls(path.read_bytes(), source=str(path))

    def __len__(self) -> int:
        return self.sp.get_piece_size() + _FAIRSEQ_OFFSET + 1  # + <mask>

    @property
    def mask_id(self) -> int:
        return self.sp.get_piece_size() + _FAIRSEQ_OFFSET

    def piece_to_id(self, piece: str) -> int:
        if piece in _SPECIAL:
            return _SPECIAL[piece]
        if piece == "<mask>":
            return self.mask_id
        spm_id = self.sp.piece_to_id(piece)
        return spm_id + _FAIRSEQ_OFFSET if spm_id else UNK_ID  # spm id 0 is <unk>

    def tokenize(self, text: str) -> list[str]:
        return list(self.sp.encode(text, out_type=str))

    def encode(self, text: str) -> list[int]:
        """<s> pieces </s> as ids."""
        return [BOS_ID] + [self.piece_to_id(p) for p in self.tokenize(text)] + [EOS_ID]

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SPM_NAME).write_bytes(self.model_proto)
        (folder / "tokenizer_config.json").write_text(json.dumps(_TOKENIZER_CONFIG, indent=2))
        special = {k: v for k, v in _TOKENIZER_CONFIG.items() if k.endswith("_token")}
        (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


def tiny_spm_proto(words=("abnormal", "defect", "anomaly", "damage", "scratch", "crack", "hole", "stain",
                          "break", "object")) -> bytes:
    """A small unigram sentencepiece model (the layout of a real one: <unk>, <s>, </s>, then pieces),
    for the tiny-random profile and tests; unknown words fall back to single characters."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    pieces = [("<unk>", 0.0, pb.ModelProto.SentencePiece.UNKNOWN),
              ("<s>", 0.0, pb.ModelProto.SentencePiece.CONTROL),
              ("</s>", 0.0, pb.ModelProto.SentencePiece.CONTROL)]
    pieces += [(f"\u2581{w}", -2.0 - 0.01 * i, pb.ModelProto.SentencePiece.NORMAL) for i, w in enumerate(words)]
    pieces += [("\u2581", -3.0, pb.ModelProto.SentencePiece.NORMAL)]
    pieces += [(c, -5.0, pb.ModelProto.SentencePiece.NORMAL) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    for text, score, kind in pieces:
        p = proto.pieces.add()
        p.piece, p.score, p.type = text, score, kind
    ts = proto.trainer_spec
    ts.model_type = pb.TrainerSpec.UNIGRAM
    ts.vocab_size = len(pieces)
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 0, 1, 2, -1
    ns = proto.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = True
    ns.remove_extra_whitespaces = True
    ns.escape_whitespaces = True
    return proto.SerializeToString()
