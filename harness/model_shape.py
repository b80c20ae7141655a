"""A served model's shape for FLOPs arithmetic: parameter count read exactly from its safetensors
headers, layers and attention width from its config.json. Unknown parts are None, not guessed."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

EMBEDDING_MARKERS = ("embed_tokens", "wte", "word_embeddings")
"""Tensor-name parts of input embeddings (Kaplan's N leaves them out)."""


def _safetensors_params(path: Path) -> tuple[int, int]:
    """Elements of every tensor in one safetensors file, and of its input embeddings, from
    its JSON header alone."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ConfigError(f"{path}: not a safetensors file (no header length)")
        (size,) = struct.unpack("<Q", raw)
        if size > 100_000_000:
            raise ConfigError(f"{path}: implausible safetensors header of {size} bytes")
        try:
            header = json.loads(fh.read(size))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: unreadable safetensors header: {err}") from None
    total = embedding = 0
    for name, entry in header.items():
        if name == "__metadata__" or not isinstance(entry, dict) or "shape" not in entry:
            continue
        n = math.prod(entry["shape"])
        total += n
        if any(marker in name for marker in EMBEDDING_MARKERS):
            embedding += n
    return total, embedding


def model_shape(model_dir: Path | None, name: str | None = None) -> dict[str, Any]:
    """`name`, `n_params` (every weight), `n_params_non_embedding` (without the input
    embeddings, Kaplan's N), `n_layers`, `d_model`, `d_attn` (heads × head dim) and
    `max_context_tok` of a model folder; None where the folder or a field is missing."""
    shape: dict[str, Any] = {
        "name": name,
        "n_params": None,
        "n_params_non_embedding": None,
        "n_layers": None,
        "d_model": None,
        "d_attn": None,
        "max_context_tok": None,
        "source": None,
    }
    if model_dir is None or not (model_dir / "config.json").is_file():
        return shape
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{model_dir / 'config.json'}: unreadable: {err}") from None
    d_model = config.get("hidden_size")
    heads = config.get("num_attention_heads")
    head_dim = config.get("head_dim") or (d_model // heads if d_model and heads else None)
    shape["n_layers"] = config.get("num_hidden_layers")
    shape["d_model"] = d_model
    shape["d_attn"] = heads * head_dim if heads and head_dim else None
    shape["max_context_tok"] = config.get("max_position_embeddings")
    files = sorted(model_dir.glob("*.safetensors"))
    if files:
        counts = [_safetensors_params(f) for f in files]
        shape["n_params"] = sum(total for total, _ in counts)
        shape["n_params_non_embedding"] = sum(total - emb for total, emb in counts)
        shape["source"] = "safetensors headers and config.json"
    else:
        shape["source"] = "config.json (no safetensors: parameter count unknown)"
    return shape
