"""A tokenizer named by its Hugging Face Hub id: the local cache's copy where there is one
(no round trip, so an air-gapped GPU node whose cache holds it starts at once, rather than
after the hub client's retries), else downloaded into that cache."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import LocalEntryNotFoundError

from harness.errors import ConfigError

TOKENIZER_FILE = "tokenizer.json"


def hub_tokenizer_file(repo_id: str) -> Path:
    """The path of `repo_id`'s tokenizer.json: cached, else fetched; ConfigError if neither."""
    try:
        return Path(hf_hub_download(repo_id, TOKENIZER_FILE, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    except ValueError as err:  # not a repo id at all (e.g. a path that does not exist)
        raise ConfigError(f"cannot load tokenizer {repo_id!r}: {err}") from None
    try:
        return Path(hf_hub_download(repo_id, TOKENIZER_FILE))
    except Exception as err:  # the hub client's own errors, its HTTP library's and OSError
        raise ConfigError(
            f"cannot load tokenizer {repo_id!r}: not in the local Hugging Face cache, and "
            f"fetching it failed ({type(err).__name__}: {err})"
        ) from None
