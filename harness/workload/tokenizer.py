"""The model's tokenizer, through HF `tokenizers` (the only importer of it): the token-ID
space prompts are drawn from, and token counts of text (ShareGPT, chat prompts)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from harness.errors import ConfigError

_WORD = re.compile(r" [A-Za-z]{2,}")


@dataclass(frozen=True)
class TokenSpace:
    """The ordinary (non-special) token ids a synthetic prompt may use, and the tokenizer."""

    name: str
    allowed_ids: NDArray[np.int64]
    vocab_size: int
    _tokenizer: object | None = None

    def count(self, text: str) -> int:
        """Number of tokens `text` encodes to, without special tokens."""
        if self._tokenizer is None:
            raise ConfigError(f"token space {self.name!r} has no tokenizer to count text with")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:  # `tokenizers` raises TypeError on these
                raise ConfigError(
                    f"text holds a lone surrogate ({err.object[err.start]!a}), not Unicode; "
                    "the tokenizer cannot count it"
                ) from None
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)  # type: ignore[attr-defined]

    def stable_words(self) -> TokenSpace:
        """The sub-space of tokens that are one space-led word and encode back to themselves,
        so text made of them has exactly one token per word (token-exact chat prompts)."""
        if self._tokenizer is None:
            raise ConfigError(f"token space {self.name!r} has no tokenizer for text prompts")
        tok = self._tokenizer
        keep = []
        for i in self.allowed_ids:
            text = tok.decode([int(i)])  # type: ignore[attr-defined]
            if _WORD.fullmatch(text) and tok.encode(text, add_special_tokens=False).ids == [i]:  # type: ignore[attr-defined]
                keep.append(int(i))
        if len(keep) < 16:
            raise ConfigError(
                f"tokenizer {self.name!r} has too few single-token words for token-exact chat "
                "prompts; use the completions API"
            )
        return replace(self, name=f"{self.name} (words)", allowed_ids=np.array(keep, np.int64))

    def decode(self, ids: list[int]) -> str:
        """Text of a list of token ids."""
        if self._tokenizer is None:
            raise ConfigError(f"token space {self.name!r} has no tokenizer to decode with")
        return str(self._tokenizer.decode(ids, skip_special_tokens=False))  # type: ignore[attr-defined]


def _tokenizer_file(name_or_path: str) -> Path | None:
    path = Path(name_or_path)
    if path.is_dir() and (path / "tokenizer.json").is_file():
        return path / "tokenizer.json"
    if path.is_file():
        return path
    return None


def load_token_space(name_or_path: str) -> TokenSpace:
    """Load a tokenizer from a local dir/file or, failing that, by hub name (the local
    Hugging Face cache's copy first)."""
    from tokenizers import Tokenizer

    from harness.workload.hub import hub_tokenizer_file

    file = _tokenizer_file(name_or_path) or hub_tokenizer_file(name_or_path)
    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as err:  # tokenizers raises plain Exception subclasses
        raise ConfigError(
            f"cannot load tokenizer {name_or_path!r}: {err}; pass --tokenizer with a local "
            "model directory or tokenizer.json"
        ) from None
    vocab_size = int(tok.get_vocab_size(with_added_tokens=True))
    special = {int(t) for t in tok.get_added_tokens_decoder()}
    allowed = np.array([i for i in range(vocab_size) if i not in special], dtype=np.int64)
    if allowed.size < 16:
        raise ConfigError(f"tokenizer {name_or_path!r} has too few ordinary tokens")
    return TokenSpace(name=name_or_path, allowed_ids=allowed, vocab_size=vocab_size, _tokenizer=tok)


def synthetic_token_space(vocab_size: int) -> TokenSpace:
    """A token space without a tokenizer (ids 0..vocab_size-1), for tests and dry runs."""
    return TokenSpace(
        name=f"synthetic-{vocab_size}",
        allowed_ids=np.arange(vocab_size, dtype=np.int64),
        vocab_size=vocab_size,
    )
