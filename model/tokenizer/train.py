"""Train a new byte-level BPE vocabulary the way GPT-2's was made, and save it in GPT-2's layout.

Training BPE = start from the 256 single bytes and repeatedly join the most frequent
adjacent pair of tokens in the corpus into a new token; each join is one merge rule.
Hugging Face `tokenizers` does the counting (fast, in Rust). We then renumber its result
into GPT-2's conventions, so a trained tokenizer loads and behaves exactly like GPT-2's:

* ids 0..255: the single bytes, in the order of `bytes_to_unicode` (GPT-2's order);
* ids 256..: one per merge, in the order the merges were learnt;
* last id: "<|endoftext|>".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from model.tokenizer.byte_map import END_OF_TEXT, bytes_to_unicode
from model.tokenizer.gpt2_bpe import BPEFiles, Tokenizer, load_tokenizer

MIN_VOCAB_SIZE = 257  # the 256 single bytes + "<|endoftext|>"


def train_bpe(
    texts: Iterable[str], vocab_size: int, out_dir: str | Path, *, show_progress: bool = False
) -> Tokenizer:
    """Learn a vocabulary of exactly `vocab_size` tokens from `texts`; save it to `out_dir`.

    `vocab_size` counts the 256 single bytes and "<|endoftext|>", so it learns
    `vocab_size - 257` merges. The folder gets encoder.json + vocab.bpe (OpenAI layout);
    the returned tokenizer is loaded back from those files.
    """
    if not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size must be an integer >= {MIN_VOCAB_SIZE} (256 bytes + {END_OF_TEXT}), "
            f"got {vocab_size!r}"
        )
    out_dir = Path(out_dir)
    hf_merges = _train_with_hf(texts, vocab_size, show_progress)
    merges = _first_merge_per_token(hf_merges)[: vocab_size - MIN_VOCAB_SIZE]
    if len(merges) < vocab_size - MIN_VOCAB_SIZE:
        raise ValueError(
            f"the training texts only allow {len(merges)} merges (vocab_size "
            f"{len(merges) + MIN_VOCAB_SIZE}); vocab_size={vocab_size} needs "
            f"{vocab_size - MIN_VOCAB_SIZE}: give more text or a smaller vocab_size"
        )
    Tokenizer(out_dir.name, _gpt2_numbering(merges), where=str(out_dir)).save(out_dir)
    return load_tokenizer(out_dir)


def _train_with_hf(
    texts: Iterable[str], vocab_size: int, show_progress: bool
) -> list[tuple[str, str]]:
    """Run Hugging Face's BPE trainer with GPT-2's byte-level settings; return its merges."""
    # Imported here so that loading a tokenizer does not pay for importing `tokenizers`.
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    # Same "words" as GPT-2 (its regex), same byte stand-ins, no space added in front.
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,  # HF counts the special token and the alphabet too, as we do
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
        show_progress=show_progress,
    )
    hf.train_from_iterator(_split_at_end_of_text(texts), trainer=trainer)

    # The trained merges are only exposed through the tokenizer's JSON serialisation.
    merges = json.loads(hf.to_str())["model"]["merges"]
    # Recent `tokenizers` versions store a merge as ["a", "b"], older ones as "a b".
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]


def _split_at_end_of_text(texts: Iterable[str]) -> Iterator[str]:
    """Cut texts at "<|endoftext|>": a document boundary, never learnt across or inside."""
    for text in texts:
        yield from text.split(END_OF_TEXT)


def _first_merge_per_token(merges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop merges that re-create a token an earlier merge already made.

    HF's trainer can learn both "a bc" and, later, "ab c": two ways to build "abc". GPT-2's
    convention gives each token the id of the merge that made it, so a token can only
    have one merge; the first one is the one with the right rank. (tiktoken joins
    "ab"+"c" anyway, because it ranks by the joined bytes.)
    """
    seen = set(bytes_to_unicode().values()) | {END_OF_TEXT}
    kept = []
    for left, right in merges:
        if left + right not in seen:
            seen.add(left + right)
            kept.append((left, right))
    return kept


def _gpt2_numbering(merges: list[tuple[str, str]]) -> BPEFiles:
    """Bytes first (GPT-2's order), then one id per merge, then "<|endoftext|>"."""
    vocab = {char: i for i, char in enumerate(bytes_to_unicode().values())}
    for left, right in merges:
        vocab[left + right] = len(vocab)
    vocab[END_OF_TEXT] = len(vocab)
    return BPEFiles(vocab=vocab, merges=merges)
