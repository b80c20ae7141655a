"""A tokenizer named by its Hugging Face Hub id: the local cache's copy where there is one
(no round trip, so an air-gapped GPU node whose cache holds it starts at once, rather than
after the hub client's retries), else downloaded into that cache."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

from harness.errors import ConfigError

TOKENIZER_FILE = "tokenizer.json"
"""The file a hub model's tokenizer is in."""
HINT = "pass --tokenizer with a local model directory or tokenizer.json"


def _offline() -> bool:
    """HF_HUB_OFFLINE as the hub client reads it, and as the environment says now (the client
    reads it once, when first imported)."""
    now = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.HF_HUB_OFFLINE) or now


def hub_tokenizer_file(repo_id: str) -> Path:
    """The path of `repo_id`'s tokenizer.json: cached, else fetched; ConfigError if neither."""
    if repo_id.startswith(("/", ".", "~")):
        raise ConfigError(f"cannot load tokenizer {repo_id!r}: no such file or directory")
    try:
        # The cache alone, not hf_hub_download(local_files_only=True), which may still call
        # the hub for its own bookkeeping.
        cached = try_to_load_from_cache(repo_id, TOKENIZER_FILE)
    except ValueError as err:  # not a hub id (the hub client's HFValidationError)
        raise ConfigError(
            f"cannot load tokenizer {repo_id!r}: neither a local path nor a Hugging Face Hub "
            f"id ({err}); {HINT}"
        ) from None
    if isinstance(cached, str):
        return Path(cached)
    if _offline():
        raise ConfigError(
            f"cannot load tokenizer {repo_id!r}: not in the local Hugging Face cache, and "
            f"HF_HUB_OFFLINE is set; {HINT}"
        )
    try:
        return Path(hf_hub_download(repo_id, TOKENIZER_FILE))
    except Exception as err:  # the hub client's own errors, its HTTP library's and OSError
        raise ConfigError(
            f"cannot load tokenizer {repo_id!r}: not in the local Hugging Face cache, and "
            f"fetching it failed ({type(err).__name__}: {err}); {HINT}"
        ) from None
