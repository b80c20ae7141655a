"""Token-exact prompt building.

A prompt is a list of token ids of exactly the trace's input length. Equal `hash_ids` give
identical blocks (of the step's `hash_block_tokens`, 512 for Mooncake); an agent step's
prompt is the previous prompt, plus the previous output (or the prefix of them the step
keeps), plus fresh tokens, so the server's prefix cache sees the reuse.
Distinct sessions and distinct hash ids never share a prefix by accident: the first tokens
of every session and every block spell out the run's salt and a unique (namespace, ordinal)
number. The salt differs per run, so a second run on the same server does not find the
first run's prompts in the prefix cache (pass the same salt to reproduce prompts exactly).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from harness.errors import ConfigError
from harness.workload.limits import MAX_HASH_ID, MAX_SEED
from harness.workload.model import DEFAULT_BLOCK_TOKENS, Step, kept_tokens
from harness.workload.tokenizer import TokenSpace

HASH_BLOCK_TOKENS = DEFAULT_BLOCK_TOKENS
_NS_BLOCK = 0
_NS_SESSION = 1
_TAG_TOKENS = 3
_SALT_TOKENS = 2


def prompt_problem(step: Step) -> str | None:
    """Why `step`'s prompt cannot be built (a block id that is no non-negative integer in
    range, a negative length), or None when it can."""
    if step.new_input_tokens < 0 or step.output_tokens < 0:
        return "token counts must be ≥ 0"
    if step.kept_prefix_tokens is not None and step.kept_prefix_tokens < 0:
        return "kept_prefix_tokens must be ≥ 0"
    if step.hash_block_tokens < 1:
        return "hash_block_tokens must be ≥ 1"
    for h in step.hash_ids or ():
        if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= MAX_HASH_ID:
            return f"hash id {h!r} is not an integer from 0 to {MAX_HASH_ID}"
    return None


class PromptBuilder:
    """Draws reproducible prompt tokens for a run from one token space and one seed."""

    def __init__(
        self, space: TokenSpace, seed: int = 0, salt: int = 0, block_cache: int = 4096
    ) -> None:
        for name, value in (("seed", seed), ("prompt salt", salt)):
            if not 0 <= value <= MAX_SEED:
                raise ConfigError(
                    f"the {name} must be an integer from 0 to {MAX_SEED}, got {value}"
                )
        self._allowed = space.allowed_ids
        self._n = int(space.allowed_ids.size)
        self._seed = seed
        self.salt = salt
        self._salt_tokens = self._digits(salt, _SALT_TOKENS)
        self._blocks: OrderedDict[tuple[int, int], list[int]] = OrderedDict()
        self._block_cache = block_cache

    def _digits(self, value: int, count: int) -> list[int]:
        """`value` written in base (number of allowed tokens), `count` digits."""
        digits = []
        for _ in range(count):
            digits.append(int(self._allowed[value % self._n]))
            value //= self._n
        return digits

    def _tag(self, namespace: int, ordinal: int) -> list[int]:
        """Unique leading tokens for (salt, namespace, ordinal)."""
        return self._salt_tokens + self._digits(ordinal * 2 + namespace, _TAG_TOKENS)

    def _random(self, key: tuple[int, ...], count: int) -> list[int]:
        rng = np.random.default_rng([self._seed, self.salt, *key])
        return [int(t) for t in self._allowed[rng.integers(0, self._n, size=count)]]

    def block(self, hash_id: int, size: int = HASH_BLOCK_TOKENS) -> list[int]:
        """The `size` tokens of prefix block `hash_id` (same id and size, same tokens; a
        block shorter than the tag is the tag's first tokens)."""
        key = (hash_id, size)
        cached = self._blocks.get(key)
        if cached is not None:
            self._blocks.move_to_end(key)
            return cached
        tokens = self._tag(_NS_BLOCK, hash_id)[:size]
        seed_key = (_NS_BLOCK, hash_id) if size == HASH_BLOCK_TOKENS else (_NS_BLOCK, hash_id, size)
        tokens += self._random(seed_key, size - len(tokens))
        self._blocks[key] = tokens
        if len(self._blocks) > self._block_cache:
            self._blocks.popitem(last=False)
        return tokens

    def session(self, ordinal: int) -> SessionPrompts:
        """Prompt state for the `ordinal`-th session of the run (ordinals are unique per run)."""
        return SessionPrompts(self, ordinal)


class SessionPrompts:
    """Builds the successive prompts of one session (the agent loop)."""

    def __init__(self, builder: PromptBuilder, ordinal: int) -> None:
        self._b = builder
        self._ordinal = ordinal
        self._context: list[int] = []
        self._draws = 0

    def _fresh(self, count: int) -> list[int]:
        if count <= 0:
            return []
        tokens: list[int] = []
        if self._draws == 0:
            tokens = self._b._tag(_NS_SESSION, self._ordinal)[:count]
        self._draws += 1
        rest = count - len(tokens)
        return tokens + self._b._random((_NS_SESSION, self._ordinal, self._draws), rest)

    def expected_next(self, step: Step) -> int:
        """Length the next prompt will have (the context it keeps plus its new input),
        before any clipping."""
        return kept_tokens(step, len(self._context)) + step.new_input_tokens

    def next_prompt(self, step: Step, length: int | None = None) -> list[int]:
        """The prompt for `step`: the context so far (or the prefix of it the step keeps)
        plus its new input tokens.

        `length` overrides the full prompt length (clipping); hash_ids steps are built from
        their blocks and then made exactly that length.
        """
        if step.hash_ids is not None:
            target = self.expected_next(step)
            prompt: list[int] = []
            for h in step.hash_ids:
                prompt.extend(self._b.block(h, step.hash_block_tokens))
                if len(prompt) >= target:
                    break
            if len(prompt) < target:
                prompt.extend(self._fresh(target - len(prompt)))
            prompt = prompt[:target]
        else:
            kept = kept_tokens(step, len(self._context))
            prompt = self._context[:kept] + self._fresh(step.new_input_tokens)
        if length is not None and length != len(prompt):
            prompt = (
                prompt[:length]
                if length < len(prompt)
                else prompt + self._fresh(length - len(prompt))
            )
        self._context = prompt
        return prompt

    def add_output(self, output_ids: list[int] | None, expected: int) -> None:
        """Append the step's output to the context: the real generated ids when known,
        else `expected` fresh tokens so the next prompt keeps its traced length."""
        if output_ids is not None and len(output_ids) == expected:
            self._context = self._context + list(output_ids)
        else:
            self._context = self._context + self._fresh(expected)


CHAT_LEAD = "Context:"
"""Fixed opening of chat content, so templates that trim content never touch the first word."""


def chat_content(space: TokenSpace, ids: list[int]) -> str:
    """Chat message text for prompt ids drawn from `space.stable_words()`: one token per id
    after the fixed lead."""
    return CHAT_LEAD + space.decode(ids)
