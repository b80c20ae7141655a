"""Token-exact prompt building: lengths, shared prefixes, session tags, the agent loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.workload.model import Step
from harness.workload.prompts import HASH_BLOCK_TOKENS, PromptBuilder
from harness.workload.tokenizer import load_token_space, synthetic_token_space

MODEL_DIR = Path(__file__).resolve().parents[2] / ".vllm" / "model"
VOCAB = 1000
# Sessions and blocks start with a short unique tag (run salt + ordinal), so any two of them
# diverge within their first few tokens: far inside one 16-token KV-cache block.
LEAD = 8


def _builder(seed: int = 0, block_cache: int = 4096) -> PromptBuilder:
    return PromptBuilder(synthetic_token_space(VOCAB), seed=seed, block_cache=block_cache)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@pytest.mark.parametrize("n", [1, 2, 3, 4, 17, 511, 512, 513, 3000])
def test_plain_prompt_has_exact_length(n: int) -> None:
    prompt = _builder().session(0).next_prompt(Step(new_input_tokens=n, output_tokens=5))
    assert len(prompt) == n
    assert all(isinstance(t, int) and 0 <= t < VOCAB for t in prompt)


@pytest.mark.parametrize("n", [1, 100, 511, 512, 513, 1024, 1500])
def test_hash_id_prompt_has_exact_length(n: int) -> None:
    step = Step(new_input_tokens=n, output_tokens=5, hash_ids=(1, 2, 3))
    assert len(_builder().session(0).next_prompt(step)) == n


def test_block_is_512_tokens_and_same_id_same_tokens() -> None:
    b = _builder()
    first = b.block(42)
    assert len(first) == HASH_BLOCK_TOKENS
    assert b.block(42) == first
    assert _builder().block(42) == first  # another builder, same seed
    assert b.block(43) != first
    assert _common_prefix(b.block(43), first) < LEAD  # distinct tags up front


def test_shared_hash_prefix_shares_exactly_those_blocks() -> None:
    b = _builder()
    p1 = b.session(0).next_prompt(Step(1500, 1, hash_ids=(10, 11, 12)))
    p2 = b.session(1).next_prompt(Step(1500, 1, hash_ids=(10, 11, 99)))
    p3 = b.session(2).next_prompt(Step(1500, 1, hash_ids=(10, 11, 12)))
    p4 = b.session(3).next_prompt(Step(1500, 1, hash_ids=(77, 11, 12)))
    assert 2 * HASH_BLOCK_TOKENS <= _common_prefix(p1, p2) < 2 * HASH_BLOCK_TOKENS + LEAD
    assert p1 == p3  # identical hash ids, identical prompt (even in another session)
    assert _common_prefix(p1, p4) < LEAD
    # block 11 is the same tokens wherever it appears
    assert p4[512:1024] == p1[512:1024] == b.block(11)


def test_hash_ids_shorter_than_prompt_are_filled_with_fresh_tokens() -> None:
    b = _builder()
    p1 = b.session(0).next_prompt(Step(700, 1, hash_ids=(5,)))
    p2 = b.session(1).next_prompt(Step(700, 1, hash_ids=(5,)))
    assert len(p1) == len(p2) == 700
    assert p1[:512] == p2[:512] == b.block(5)
    assert p1[512:] != p2[512:]  # the fill is per session, not shared


def test_different_sessions_never_share_the_first_tokens() -> None:
    b = _builder()
    step = Step(new_input_tokens=600, output_tokens=5)
    prompts = [b.session(i).next_prompt(step) for i in range(300)]
    tags = {tuple(p[:LEAD]) for p in prompts}
    assert len(tags) == len(prompts)
    assert all(_common_prefix(prompts[0], p) < LEAD for p in prompts[1:])
    # session tags differ from block tags too
    block_tags = {tuple(b.block(h)[:LEAD]) for h in range(300)}
    assert not tags & block_tags


def test_same_ordinal_same_prompt_in_a_fresh_builder() -> None:
    step = Step(new_input_tokens=200, output_tokens=5)
    assert _builder().session(3).next_prompt(step) == _builder().session(3).next_prompt(step)


def test_agent_loop_appends_real_output_ids() -> None:
    sp = _builder().session(0)
    s1 = Step(new_input_tokens=100, output_tokens=4)
    s2 = Step(new_input_tokens=50, output_tokens=4)
    p1 = sp.next_prompt(s1)
    out = [7, 8, 9, 10]
    sp.add_output(out, expected=4)
    assert sp.expected_next(s2) == 100 + 4 + 50
    p2 = sp.next_prompt(s2)
    assert len(p2) == 154
    assert p2[:100] == p1
    assert p2[100:104] == out
    assert p2[104:] != p1[:50]  # fresh tokens, not a repeat of the start


@pytest.mark.parametrize("ids", [None, [7, 8, 9]])
def test_agent_loop_without_usable_ids_keeps_the_expected_length(ids: list[int] | None) -> None:
    sp = _builder().session(0)
    p1 = sp.next_prompt(Step(new_input_tokens=100, output_tokens=4))
    sp.add_output(ids, expected=4)
    p2 = sp.next_prompt(Step(new_input_tokens=50, output_tokens=4))
    assert len(p2) == 154
    assert p2[:100] == p1
    assert p2[100:103] != [7, 8, 9]  # a wrong-length output is not used


def test_three_step_session_prefixes_grow() -> None:
    sp = _builder().session(5)
    prompts = []
    for new, out in [(30, 10), (20, 5), (40, 1)]:
        step = Step(new_input_tokens=new, output_tokens=out)
        prompts.append(sp.next_prompt(step))
        sp.add_output(list(range(100, 100 + out)), expected=out)
    assert [len(p) for p in prompts] == [30, 30 + 10 + 20, 60 + 5 + 40]
    assert prompts[1][:30] == prompts[0]
    assert prompts[2][:60] == prompts[1]
    assert prompts[2][60:65] == list(range(100, 105))


def test_clipping_shortens_and_extends_to_the_given_length() -> None:
    sp = _builder().session(0)
    full = _builder().session(0).next_prompt(Step(300, 4))
    clipped = sp.next_prompt(Step(300, 4), length=120)
    assert clipped == full[:120]
    sp.add_output([1, 2, 3, 4], expected=4)
    # context is now 124 tokens; the next prompt is clipped relative to that
    p2 = sp.next_prompt(Step(100, 4), length=200)
    assert len(p2) == 200 and p2[:120] == clipped and p2[120:124] == [1, 2, 3, 4]
    longer = _builder().session(1).next_prompt(Step(10, 1), length=40)
    assert len(longer) == 40


def test_clipping_a_hash_id_prompt() -> None:
    b = _builder()
    p = b.session(0).next_prompt(Step(1500, 1, hash_ids=(1, 2, 3)), length=600)
    assert len(p) == 600
    assert p[:512] == b.block(1) and p[512:] == b.block(2)[:88]


def test_same_seed_reproduces_other_seed_differs() -> None:
    def run(seed: int) -> list[list[int]]:
        b = _builder(seed=seed)
        out = []
        for i in range(3):
            sp = b.session(i)
            out.append(sp.next_prompt(Step(200, 3)))
            sp.add_output(None, expected=3)
            out.append(sp.next_prompt(Step(50, 3)))
        out.append(b.block(9))
        return out

    a, again, other = run(1), run(1), run(2)
    assert a == again
    assert all(x != y for x, y in zip(a, other, strict=True))


def test_salt_separates_runs_and_reproduces_with_the_same_salt() -> None:
    space = synthetic_token_space(VOCAB)
    step = Step(new_input_tokens=600, output_tokens=1)

    def first_prompt(salt: int) -> list[int]:
        return PromptBuilder(space, seed=0, salt=salt).session(0).next_prompt(step)

    assert first_prompt(5) == first_prompt(5)
    assert _common_prefix(first_prompt(5), first_prompt(6)) < LEAD
    blocks = [PromptBuilder(space, seed=0, salt=salt).block(1) for salt in (5, 6)]
    assert _common_prefix(*blocks) < LEAD


def test_block_cache_eviction_does_not_change_content() -> None:
    reference = _builder(block_cache=1000)
    tiny = _builder(block_cache=2)
    first = tiny.block(0)
    for h in range(1, 10):  # evicts block 0 from the tiny cache
        tiny.block(h)
    assert 0 not in tiny._blocks
    assert len(tiny._blocks) == 2
    assert tiny.block(0) == first == reference.block(0)
    assert [tiny.block(h) for h in range(10)] == [reference.block(h) for h in range(10)]


@pytest.mark.skipif(not (MODEL_DIR / "tokenizer.json").is_file(), reason="no tiny model built")
def test_prompts_from_the_real_tokenizer_avoid_special_tokens() -> None:
    space = load_token_space(str(MODEL_DIR))
    special = set(range(6))  # the tiny model's added tokens
    b = PromptBuilder(space, seed=0)
    sp = b.session(0)
    p1 = sp.next_prompt(Step(new_input_tokens=2000, output_tokens=8))
    sp.add_output(None, expected=8)
    p2 = sp.next_prompt(Step(new_input_tokens=100, output_tokens=8, hash_ids=(1, 2, 3, 4, 5)))
    assert len(p1) == 2000 and len(p2) == 2108
    for p in (p1, p2, b.block(1)):
        assert not special & set(p)
        assert all(0 <= t < space.vocab_size for t in p)
    tags = {tuple(b.session(i).next_prompt(Step(10, 1))[:LEAD]) for i in range(200)}
    assert len(tags) == 200


def test_negative_salt_and_seed_are_config_errors() -> None:
    # numpy's SeedSequence raised a bare ValueError on these
    space = synthetic_token_space(VOCAB)
    with pytest.raises(ConfigError, match="prompt salt must be an integer from 0"):
        PromptBuilder(space, salt=-1)
    with pytest.raises(ConfigError, match="seed must be an integer from 0"):
        PromptBuilder(space, seed=-5)


def test_block_size_follows_the_step() -> None:
    b = _builder()
    assert len(b.block(5, 64)) == 64 and len(b.block(5, 16)) == 16
    assert b.block(5, 64) == _builder().block(5, 64)
    p1 = b.session(0).next_prompt(Step(200, 1, hash_ids=(1, 2, 3, 4), hash_block_tokens=64))
    p2 = b.session(1).next_prompt(Step(200, 1, hash_ids=(1, 2, 9, 4), hash_block_tokens=64))
    assert len(p1) == 200
    assert 128 <= _common_prefix(p1, p2) < 128 + LEAD
    assert p1[:64] == b.block(1, 64)


def test_kept_prefix_prompt_is_a_prefix_of_the_context() -> None:
    s = _builder().session(0)
    first = s.next_prompt(Step(100, 10))
    s.add_output(None, 10)
    kept = Step(30, 5, kept_prefix_tokens=60)
    assert s.expected_next(kept) == 90
    second = s.next_prompt(kept)
    assert len(second) == 90 and second[:60] == first[:60]
    assert _common_prefix(second[60:], first[60:]) < LEAD
    s.add_output(None, 5)
    third = s.next_prompt(Step(40, 1, kept_prefix_tokens=0))
    assert len(third) == 40 and _common_prefix(third, second) == 0
