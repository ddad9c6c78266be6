"""Byte-pair encoding as GPT-2 does it, in plain Python: read this to learn how BPE works.

This is the algorithm of OpenAI's original GPT-2 `encoder.py`, written out step by step.
It gives the same ids as the fast `Tokenizer` (tests check that on a megabyte of mixed
text) but runs about a hundred times slower, so use it to learn and to check, not to
encode a corpus.

Encoding a text happens in three steps:

1. Split the text into "words" with GPT-2's regular expression ("Hello world!" ->
   "Hello", " world", "!"). Merges never cross these boundaries.
2. Turn each word into bytes (UTF-8), and each byte into its printable stand-in
   character (byte_map.py explains why): " world" -> "Ġ", "w", "o", "r", "l", "d".
3. Merge: the merges file is a ranked list of pairs learnt during training, most
   frequent first. Repeatedly find the adjacent pair with the best (lowest) rank and
   join it, until no adjacent pair is in the list. Each remaining piece is a token in
   the vocabulary, which gives its id: "Ġworld" -> 995.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import regex

from model.tokenizer.byte_map import (
    GPT2_SPLIT_PATTERN,
    bytes_to_unicode,
    unicode_to_bytes,
)
from model.tokenizer.gpt2_bpe import TokenizerError, read_bpe_folder


class ReferenceBPE:
    """A slow, readable GPT-2 BPE built from a local folder (OpenAI or Hugging Face layout)."""

    def __init__(self, folder: str | Path) -> None:
        if not Path(folder).is_dir():
            raise TokenizerError(f"no such tokenizer folder: {folder}")
        files = read_bpe_folder(folder)
        self.token_to_id: dict[str, int] = files.vocab
        self.id_to_token: dict[int, str] = {i: token for token, i in files.vocab.items()}
        # rank 0 = the first line of the merges file = the pair merged first in training.
        self.merge_rank: dict[tuple[str, str], int] = {
            pair: rank for rank, pair in enumerate(files.merges)
        }
        self.byte_to_char = bytes_to_unicode()
        self.char_to_byte = unicode_to_bytes()
        self.split_pattern = regex.compile(GPT2_SPLIT_PATTERN)
        # Natural text repeats the same words over and over, so remember each word's pieces.
        self.cache: dict[str, list[str]] = {}

    def encode(self, text: str) -> list[int]:
        """Text -> token ids. "<|endoftext|>" in the text is treated as ordinary text."""
        ids: list[int] = []
        for word in self.split_pattern.findall(text):  # step 1: split into words
            # step 2: bytes, then one printable character per byte
            chars = "".join(self.byte_to_char[b] for b in word.encode("utf-8"))
            # step 3: merge, then look up each piece's id
            ids.extend(self.token_to_id[piece] for piece in self.bpe(chars))
        return ids

    def bpe(self, word: str) -> list[str]:
        """Split one word (in stand-in characters) into tokens by applying the merges."""
        if word in self.cache:
            return self.cache[word]
        steps = list(self.merge_steps(word))
        # The pieces after the last merge; the single characters when none applies.
        pieces = steps[-1][1] if steps else list(word)
        self.cache[word] = pieces
        return pieces

    def merge_steps(self, word: str) -> Iterator[tuple[tuple[str, str], list[str]]]:
        """Each merge applied to one word (in stand-in characters), in order: the pair
        joined and the pieces after joining it. `bpe` keeps only the last pieces; a
        teaching view shows every step."""
        pieces = list(word)  # start from single characters, i.e. single bytes
        while len(pieces) > 1:
            # Of all neighbouring pairs, pick the one the merges file ranks best.
            pairs = zip(pieces, pieces[1:], strict=False)
            best = min(pairs, key=lambda pair: self.merge_rank.get(pair, math.inf))
            if best not in self.merge_rank:
                return  # no neighbouring pair can be merged: done

            # Join every occurrence of that pair, scanning left to right
            # (so "a a a" with the merge "a a" gives "aa a").
            merged: list[str] = []
            i = 0
            while i < len(pieces):
                if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == best:
                    merged.append(pieces[i] + pieces[i + 1])
                    i += 2
                else:
                    merged.append(pieces[i])
                    i += 1
            pieces = merged
            yield best, pieces

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text: the steps above backwards (no merging needed)."""
        chars = "".join(self.id_to_token[i] for i in ids)
        raw = bytes(self.char_to_byte[c] for c in chars)
        # A cut through a multi-byte character cannot be decoded: show U+FFFD instead.
        return raw.decode("utf-8", errors="replace")
