"""The served model's shape: exact parameter counts from safetensors headers, widths from config."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.model_shape import model_shape

REPO = Path(__file__).resolve().parents[1]


def _safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    for name, shape in shapes.items():
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [0, 0]}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def test_counts_every_tensor_and_the_embeddings_apart(tmp_path: Path) -> None:
    config = {"hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1}
    (tmp_path / "config.json").write_text(json.dumps(config))
    _safetensors(
        tmp_path / "model-1.safetensors",
        {"model.embed_tokens.weight": [10, 8], "model.layers.0.q.weight": [8, 8]},
    )
    _safetensors(tmp_path / "model-2.safetensors", {"lm_head.weight": [10, 8]})
    shape = model_shape(tmp_path, "m")
    assert shape["n_params"] == 80 + 64 + 80
    assert shape["n_params_non_embedding"] == 64 + 80
    assert (shape["n_layers"], shape["d_model"], shape["d_attn"]) == (1, 8, 8)  # 2 heads × 4


def test_missing_folder_gives_unknowns_not_zeros() -> None:
    shape = model_shape(None, "remote-model")
    assert shape["name"] == "remote-model"
    assert shape["n_params"] is None and shape["n_layers"] is None


def test_truncated_safetensors_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "bad.safetensors").write_bytes(b"\x01")
    with pytest.raises(ConfigError, match=r"bad\.safetensors"):
        model_shape(tmp_path)


def test_tiny_model_matches_its_architecture_arithmetic() -> None:
    """The generated test model, counted from its config by hand: embeddings, per layer
    q/k/v/o (grouped KV heads), the gated MLP and two norms, the final norm and an untied head."""
    folder = REPO / ".vllm" / "model"
    if not (folder / "config.json").is_file():
        pytest.skip("tiny model not built (make setup-server)")
    c = json.loads((folder / "config.json").read_text())
    d, ff, vocab = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    head = c["head_dim"]
    q = d * c["num_attention_heads"] * head
    kv = 2 * d * c["num_key_value_heads"] * head
    layer = q + kv + q + 3 * d * ff + 2 * d
    tied = c.get("tie_word_embeddings", False)
    expected = vocab * d + c["num_hidden_layers"] * layer + d + (0 if tied else vocab * d)
    shape = model_shape(folder)
    assert shape["n_params"] == expected
    assert shape["n_params_non_embedding"] == expected - vocab * d
