"""The token space: ordinary ids only, counting and decoding text, clear load errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.workload.tokenizer import TokenSpace, load_token_space, synthetic_token_space

MODEL_DIR = Path(__file__).resolve().parents[2] / ".vllm" / "model"
needs_model = pytest.mark.skipif(
    not (MODEL_DIR / "tokenizer.json").is_file(), reason="no tiny model built"
)


@pytest.fixture(scope="module")
def space() -> TokenSpace:
    return load_token_space(str(MODEL_DIR))


@needs_model
def test_special_tokens_are_excluded(space: TokenSpace) -> None:
    assert space.vocab_size == 4096
    ids = set(space.allowed_ids.tolist())
    assert not ids & {0, 1, 2, 3, 4, 5}
    assert ids == set(range(6, 4096))
    assert space.allowed_ids.dtype == np.int64


@needs_model
def test_dir_and_tokenizer_json_load_the_same_space(space: TokenSpace) -> None:
    direct = load_token_space(str(MODEL_DIR / "tokenizer.json"))
    assert np.array_equal(direct.allowed_ids, space.allowed_ids)
    assert direct.vocab_size == space.vocab_size


@needs_model
def test_count_and_decode(space: TokenSpace) -> None:
    text = "hello world, this is a test of the tokenizer"
    n = space.count(text)
    assert 0 < n <= len(text)
    assert space.count("") == 0
    assert space.count(text + text) >= n  # more text never counts fewer tokens
    ids = space._tokenizer.encode(text, add_special_tokens=False).ids  # type: ignore[attr-defined]
    assert len(ids) == n
    assert space.decode(ids) == text
    assert "<|begin_of_text|>" in space.decode([0, *ids])  # specials are not hidden


def test_bad_paths_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load tokenizer"):
        load_token_space(str(tmp_path / "no" / "such" / "dir"))
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot load tokenizer"):
        load_token_space(str(bad))
    with pytest.raises(ConfigError, match="cannot load tokenizer"):
        load_token_space(str(tmp_path))  # a dir holding that broken tokenizer.json


def test_synthetic_space_has_no_tokenizer() -> None:
    space = synthetic_token_space(64)
    assert space.allowed_ids.tolist() == list(range(64))
    assert space.vocab_size == 64
    with pytest.raises(ConfigError, match="no tokenizer"):
        space.count("text")
    with pytest.raises(ConfigError, match="no tokenizer"):
        space.decode([1, 2])


def test_stable_words_encode_one_token_each() -> None:
    """Text made of stable-word ids re-encodes to exactly those ids."""
    model = Path(__file__).resolve().parents[2] / ".vllm" / "model"
    if not (model / "tokenizer.json").exists():
        pytest.skip("tiny model not built")
    words = load_token_space(str(model)).stable_words()
    ids = [int(i) for i in words.allowed_ids[:200]]
    assert words.count(words.decode(ids)) == len(ids)
    assert words.allowed_ids.size >= 16


def _hub_load(hf_home: Path, name: str, **env: str) -> subprocess.CompletedProcess[str]:
    """load_token_space(name) in a child whose Hugging Face cache is `hf_home` and whose hub
    endpoint is a port nothing listens on (the hub client reads both when imported)."""
    code = (
        "from harness.workload.tokenizer import load_token_space; "
        f"print(load_token_space({name!r}).vocab_size)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "HF_HOME": str(hf_home),
            "HF_ENDPOINT": "http://127.0.0.1:9",
            "HF_HUB_OFFLINE": "0",
            **env,
        },
    )


@needs_model
def test_a_hub_name_in_the_local_cache_loads_without_the_network(tmp_path: Path) -> None:
    """A GPU node without internet whose cache holds the tokenizer: it loads from the cache,
    no round trip (the hub endpoint here refuses every connection)."""
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(MODEL_DIR / "tokenizer.json", snapshot / "tokenizer.json")
    refs = tmp_path / "hub" / "models--org--tiny" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    done = _hub_load(tmp_path, "org/tiny")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "4096"
    assert "Retrying" not in done.stderr


def test_a_hub_name_neither_cached_nor_fetched_is_a_config_error(tmp_path: Path) -> None:
    done = _hub_load(tmp_path, "org/absent", HF_HUB_OFFLINE="1")
    assert done.returncode == 1
    assert "ConfigError: cannot load tokenizer 'org/absent': not in the local Hugging Face " in (
        done.stderr
    )
    assert "fetching it failed" in done.stderr
