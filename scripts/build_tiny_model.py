#!/usr/bin/env python3
"""Build a tiny random-weight Llama model plus a byte-level BPE tokenizer, fully offline.

The vLLM CPU server needs a real model directory to serve; this one is small enough to run
fast on a 2-core machine and is rebuilt bit-for-bit from the same arguments. Run it with the
server's interpreter (it needs torch, transformers, tokenizers, safetensors):

    .vllm/venv/bin/python scripts/build_tiny_model.py --out .vllm/model
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Serial tokenizer training: reproducible and quiet; never reach for the network.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

BUILDER_VERSION = 1
STAMP_NAME = ".harness-tiny-model.json"
SERVED_NAME = "tiny-llama"
CORPUS_CAP_BYTES = 4 * 1024 * 1024

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
SPECIAL_TOKENS = [
    BOS,
    EOS,
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|pad|>",
]
EOT = "<|eot_id|>"
PAD = "<|pad|>"

# Llama-3-style template; content may be None (assistant tool-call turns), so default to ''.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] or '' }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

MODEL_SHAPE: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line: output folder, seed and tokenizer vocabulary size."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=Path(".vllm/model"), help="model folder")
    p.add_argument("--seed", type=int, default=0, help="seed for the random weights")
    p.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary size")
    p.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    return p.parse_args(argv)


def corpus_files() -> list[Path]:
    """List the running Python's stdlib .py files in a fixed order (the training text)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib).parts
        if rel[0] in ("site-packages", "dist-packages") or "test" in rel[0]:
            continue
        files.append(path)
    return files


def corpus_lines(files: list[Path], cap_bytes: int, digest: Any) -> Iterator[str]:
    """Yield the corpus line by line, at most cap_bytes of it, hashing what is used."""
    used = 0
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if used + len(data) > cap_bytes:
            break
        used += len(data)
        digest.update(data)
        text = data.decode("utf-8", errors="replace")
        yield from text.splitlines(keepends=True)


def stamp_for(args: argparse.Namespace) -> dict[str, Any]:
    """Describe every input that decides the build, so a rebuild happens when one changes."""
    import tokenizers
    import torch
    import transformers

    return {
        "builder_version": BUILDER_VERSION,
        "seed": args.seed,
        "vocab_size": args.vocab_size,
        "model_shape": MODEL_SHAPE,
        "special_tokens": SPECIAL_TOKENS,
        "chat_template": CHAT_TEMPLATE,
        "corpus_cap_bytes": CORPUS_CAP_BYTES,
        "python": sys.version.split()[0],
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
        },
    }


def build_tokenizer(out: Path, vocab_size: int) -> tuple[Any, str]:
    """Train the byte-level BPE tokenizer and save it in transformers' format; return it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    digest = hashlib.sha256()
    tok.train_from_iterator(corpus_lines(corpus_files(), CORPUS_CAP_BYTES, digest), trainer)
    bos_id = tok.token_to_id(BOS)
    # Like Llama 3: encoding text with special tokens puts BOS in front; token-id prompts don't.
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A",
                pair=f"{BOS} $A {BOS} $B",
                special_tokens=[(BOS, bos_id)],
            ),
        ]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        model_max_length=MODEL_SHAPE["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(str(out))
    # Older transformers write the template to chat_template.jinja only; keep it in the config too.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    # The generic class name loads in transformers 4.x and 5.x alike.
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    # transformers 5 no longer writes this file; older loaders and other tools still read it.
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return tok, digest.hexdigest()


def build_model(out: Path, seed: int, tok: Any) -> int:
    """Create the random-weight Llama, save it as bf16 safetensors; return its parameter count."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    vocab = tok.get_vocab_size(with_added_tokens=True)
    bos_id = tok.token_to_id(BOS)
    eos_ids = [tok.token_to_id(EOS), tok.token_to_id(EOT)]
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_act="silu",
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        bos_token_id=bos_id,
        eos_token_id=eos_ids,
        pad_token_id=tok.token_to_id(PAD),
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        **MODEL_SHAPE,
    )
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(str(out))
    GenerationConfig(
        bos_token_id=bos_id, eos_token_id=eos_ids, pad_token_id=config.pad_token_id
    ).save_pretrained(str(out))
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    """Build the model folder unless an identical build is already there."""
    args = parse_args(argv)
    out: Path = args.out
    stamp = stamp_for(args)
    stamp_path = out / STAMP_NAME
    if not args.force and (out / "config.json").exists() and stamp_path.exists():
        try:
            old = json.loads(stamp_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if isinstance(old, dict) and old.get("inputs") == stamp:
            print(f"tiny model already built in {out} (seed {args.seed}); nothing to do")
            return 0
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    stamp_path.unlink(missing_ok=True)
    tok, corpus_sha = build_tokenizer(out, args.vocab_size)
    n_params = build_model(out, args.seed, tok)
    stamp_path.write_text(
        json.dumps({"inputs": stamp, "corpus_sha256": corpus_sha}, indent=2, sort_keys=True) + "\n"
    )
    vocab = tok.get_vocab_size(with_added_tokens=True)
    print(
        f"built tiny Llama in {out}: vocab {vocab}, {MODEL_SHAPE['num_hidden_layers']} layers, "
        f"hidden {MODEL_SHAPE['hidden_size']}, {n_params / 1e6:.2f} M params, bf16, "
        f"max_position_embeddings {MODEL_SHAPE['max_position_embeddings']}, seed {args.seed}, "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
