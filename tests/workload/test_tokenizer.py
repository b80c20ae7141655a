"""The token space: ordinary ids only, counting and decoding text, clear load errors."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from ports import dead_url

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


class _Listener:
    """A loopback TCP port that counts the connections made to it and answers none."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _hub_load(
    hf_home: Path, name: str, endpoint: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """load_token_space(name) in a child whose Hugging Face cache is `hf_home` and whose hub
    endpoint is `endpoint` (the hub client reads both when imported)."""
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
            "HF_ENDPOINT": endpoint,
            "HF_HUB_OFFLINE": "0",
            **env,
        },
    )


@needs_model
def test_a_hub_name_in_the_local_cache_loads_without_the_network(tmp_path: Path) -> None:
    """A GPU node without internet whose cache holds the tokenizer: it loads from the cache
    and never connects to the hub (here a port that counts connections)."""
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(MODEL_DIR / "tokenizer.json", snapshot / "tokenizer.json")
    refs = tmp_path / "hub" / "models--org--tiny" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    hub = _Listener()
    try:
        done = _hub_load(tmp_path, "org/tiny", hub.url)
    finally:
        hub.close()
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "4096"
    assert hub.connections == 0


@pytest.mark.parametrize(
    ("name", "offline", "needle"),
    [
        ("org/absent", "1", "not in the local Hugging Face cache, and HF_HUB_OFFLINE is set"),
        ("/models/none", "0", "'/models/none': no such file or directory"),
        ("a/b/c", "0", "neither a local path nor a Hugging Face Hub id"),
    ],
)
def test_a_tokenizer_neither_local_nor_on_the_hub_is_a_config_error(
    tmp_path: Path, name: str, offline: str, needle: str
) -> None:
    # A refused port (none of these cases should reach it: the hub client retries for
    # seconds there).
    done = _hub_load(tmp_path, name, dead_url(), HF_HUB_OFFLINE=offline)
    assert done.returncode == 1
    assert f"ConfigError: cannot load tokenizer {name!r}" in done.stderr, done.stderr[-2000:]
    assert needle in done.stderr
