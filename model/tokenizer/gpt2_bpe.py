"""GPT-2's byte-level BPE tokenizer: read its files, check them, encode fast with tiktoken.

A GPT-2 tokenizer is two files in a folder, in one of two layouts:

* OpenAI's, as released with GPT-2: `encoder.json` (token text -> id) + `vocab.bpe`;
* Hugging Face's: `vocab.json` (same content) + `merges.txt` (same content).

The merges file lists the BPE merge rules, best first ("Ġ t" means: join "Ġ" and "t").
`reference_bpe.py` applies those rules literally, which is easy to follow but slow.
tiktoken (Rust) is fast because it uses a shortcut: instead of the merge list it ranks
every *token* by its id and repeatedly joins the adjacent pair whose joined bytes have
the lowest rank. That gives the same result only if a token's id equals the position of
the merge that created it (after the 256 single bytes). GPT-2's files are built that way,
and `_mergeable_ranks` checks it for every folder we load, so a mismatched or corrupt
pair of files fails loudly instead of tokenizing silently wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import regex
import tiktoken

from model.atomic_files import write_file_atomically
from model.errors import Gpt2labError
from model.hub import resolve_local_or_hub
from model.tokenizer.byte_map import (
    END_OF_TEXT,
    GPT2_SPLIT_PATTERN,
    bytes_to_unicode,
    token_text_to_bytes,
)

# (vocabulary file, merges file) for each layout we accept, in order of preference.
OPENAI_LAYOUT = ("encoder.json", "vocab.bpe")
HF_LAYOUT = ("vocab.json", "merges.txt")
_EXPECTED_FILES = (
    "encoder.json + vocab.bpe (OpenAI layout) or vocab.json + merges.txt (Hugging Face layout)"
)

_MERGES_HEADER = "#version: 0.2"

_split_words = regex.compile(GPT2_SPLIT_PATTERN).findall


class TokenizerError(Gpt2labError):
    """A tokenizer could not be loaded or used; the message is one line naming what and where."""


@dataclass(frozen=True)
class BPEFiles:
    """The content of a tokenizer folder, whatever its layout.

    vocab:  token text (in byte_map's printable form) -> id, special tokens included.
    merges: the merge rules in rank order, as pairs of token texts.
    """

    vocab: dict[str, int]
    merges: list[tuple[str, str]]


# ---------------------------------------------------------------------------------------
# Finding and reading the files
# ---------------------------------------------------------------------------------------


def read_bpe_folder(folder: str | Path) -> BPEFiles:
    """Read the vocabulary and merges from a local folder in either layout."""
    folder = Path(folder)
    for vocab_name, merges_name in (OPENAI_LAYOUT, HF_LAYOUT):
        vocab_file, merges_file = folder / vocab_name, folder / merges_name
        if vocab_file.is_file() and merges_file.is_file():
            return BPEFiles(vocab=_read_vocab(vocab_file), merges=_read_merges(merges_file))
    raise TokenizerError(f"no tokenizer files in {folder}: expected {_EXPECTED_FILES}")


def _read_vocab(path: Path) -> dict[str, int]:
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = f"{err.msg} at line {err.lineno}" if isinstance(err, json.JSONDecodeError) else err
        raise TokenizerError(f"{path}: not a valid JSON vocabulary ({reason})") from None
    if not isinstance(vocab, dict) or not all(
        isinstance(token, str) and type(i) is int for token, i in vocab.items()
    ):
        raise TokenizerError(f"{path}: expected a JSON object mapping token text to integer id")
    return vocab


def _read_merges(path: Path) -> list[tuple[str, str]]:
    try:
        # split("\n"), not splitlines(): the latter also splits on rarer line breaks.
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise TokenizerError(f"{path}: not UTF-8 text ({err})") from None
    merges = []
    for line_no, raw_line in enumerate(lines, start=1):
        line = raw_line.rstrip("\r")
        if not line or (line_no == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerError(
                f"{path}, line {line_no}: expected two tokens separated by one space, "
                f"got {line[:60]!r}"
            )
        merges.append((parts[0], parts[1]))
    return merges


# ---------------------------------------------------------------------------------------
# Checking that the files fit tiktoken's shortcut
# ---------------------------------------------------------------------------------------


def _mergeable_ranks(files: BPEFiles, where: str) -> tuple[dict[bytes, int], dict[str, int]]:
    """Split the vocabulary into tiktoken's mergeable ranks and the special tokens.

    Checks the assumption tiktoken relies on: the 256 single bytes take ids 0..255, and the
    i-th merge (counting from 0) creates the token with id 256 + i. Everything else in the
    vocabulary (for GPT-2 only "<|endoftext|>") is a special token, with the last ids.
    """
    vocab, merges = files.vocab, files.merges

    def fail(problem: str) -> TokenizerError:
        return TokenizerError(f"tokenizer files in {where} do not fit together: {problem}")

    id_counts = Counter(vocab.values())
    if len(id_counts) != len(vocab):
        duplicate = next(i for i, count in id_counts.items() if count > 1)
        raise fail(f"id {duplicate} is used by more than one token")

    mergeable: dict[str, int] = {}
    for byte, char in bytes_to_unicode().items():
        token_id = vocab.get(char)
        if token_id is None or not 0 <= token_id < 256:
            raise fail(f"the single byte 0x{byte:02x} ({char!r}) needs an id in 0..255")
        mergeable[char] = token_id

    for rank, (left, right) in enumerate(merges, start=256):
        for part in (left, right):
            # Both halves must be tokens that exist before this merge: a byte or an earlier merge.
            if mergeable.get(part, rank) >= rank:
                raise fail(f"merge {left!r} {right!r} (rank {rank}) uses unknown token {part!r}")
        token = left + right
        if vocab.get(token) != rank:
            raise fail(
                f"merge {left!r} {right!r} (rank {rank}) makes {token!r}, which has id "
                f"{vocab.get(token)} in the vocabulary instead of {rank}"
            )
        mergeable[token] = rank

    special = {token: i for token, i in vocab.items() if token not in mergeable}
    # A special token must be something BPE can never produce: text that GPT-2's split
    # pattern cuts into several words ("<|", "endoftext", "|>"). A one-word entry that no
    # merge makes means the merges file is cut short or belongs to another vocabulary.
    for token, token_id in sorted(special.items(), key=lambda item: item[1]):
        if _is_one_word(token):
            raise fail(
                f"{token!r} (id {token_id}) is made by no merge (is the merges file cut short "
                "or from another vocabulary?)"
            )
    if END_OF_TEXT not in special:
        raise fail(f"the vocabulary has no {END_OF_TEXT!r} token")
    if max(vocab.values()) != len(vocab) - 1:
        raise fail(f"ids must run from 0 to {len(vocab) - 1} without gaps")

    ranks = {token_text_to_bytes(token): i for token, i in mergeable.items()}
    return ranks, special


def _is_one_word(token: str) -> bool:
    """Could BPE build this vocabulary entry, i.e. is it a single word of GPT-2's pattern?"""
    try:
        text = token_text_to_bytes(token).decode("utf-8", errors="replace")
    except KeyError:  # a character that is no byte's stand-in: never produced by BPE
        return False
    return len(_split_words(text)) == 1


def _fingerprint(files: BPEFiles) -> str:
    """sha256 of the vocabulary and merges in a canonical form (independent of the layout)."""
    by_id = sorted(files.vocab.items(), key=lambda item: item[1])
    canonical = json.dumps(
        {"vocab": by_id, "merges": files.merges}, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------


class Tokenizer:
    """GPT-2-style byte-level BPE, encoding with tiktoken.

    Build one with `load_tokenizer(folder_or_hub_id)` (or `train_bpe`).
    """

    def __init__(self, name: str, files: BPEFiles, *, where: str | None = None) -> None:
        ranks, special = _mergeable_ranks(files, where or name)
        self.name = name
        self.eot_token: int = special[END_OF_TEXT]
        self.n_vocab: int = len(files.vocab)
        self.fingerprint: str = _fingerprint(files)
        self._files = files
        self._encoding = tiktoken.Encoding(
            name=name,
            pat_str=GPT2_SPLIT_PATTERN,
            mergeable_ranks=ranks,
            special_tokens=special,
            explicit_n_vocab=self.n_vocab,
        )

    def __repr__(self) -> str:
        return f"Tokenizer(name={self.name!r}, n_vocab={self.n_vocab})"

    @property
    def encoding(self) -> tiktoken.Encoding:
        """The underlying tiktoken encoding (for code that wants tiktoken's own API)."""
        return self._encoding

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Text -> token ids.

        By default "<|endoftext|>" inside `text` is just text (several ordinary tokens):
        text scraped from the web must not be able to inject document boundaries. With
        `allow_special=True` it becomes the single `eot_token`.
        """
        if allow_special:
            return self._encoding.encode(text, allowed_special="all", disallowed_special=())
        return self._encoding.encode_ordinary(text)

    def encode_to_array(self, text: str) -> np.ndarray:
        """Text -> token ids as a numpy uint32 array, "<|endoftext|>" treated as plain text
        (as `encode`). Made straight from tiktoken's buffer, without a Python list: for
        bulk encoding that saves most of the time outside BPE itself. tiktoken lets go of
        Python's global lock while it encodes, so threads calling this run in parallel.
        """
        return self._encoding.encode_to_numpy(text, disallowed_special=())

    def encode_batch(
        self, texts: list[str], *, allow_special: bool = False, num_threads: int = 0
    ) -> list[list[int]]:
        """Encode many texts on several threads (0 = one per CPU core)."""
        threads = num_threads or os.cpu_count() or 1
        if allow_special:
            return self._encoding.encode_batch(
                texts, num_threads=threads, allowed_special="all", disallowed_special=()
            )
        return self._encoding.encode_ordinary_batch(texts, num_threads=threads)

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text. A cut through a multi-byte character shows as U+FFFD."""
        try:
            return self._encoding.decode(list(ids), errors="replace")
        except (KeyError, OverflowError):
            raise self._bad_id_error(ids) from None

    def token_bytes(self, ids: Sequence[int]) -> list[bytes]:
        """The raw bytes of each token: what BPE pieces look like before joining them."""
        try:
            return [self._encoding.decode_single_token_bytes(i) for i in ids]
        except (KeyError, OverflowError):
            raise self._bad_id_error(ids) from None

    def merges(self, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        """The merge rules in the order they were learnt, as raw bytes: (b" t", b"he")
        made " the". The first ones are what BPE found most frequent in its corpus."""
        return [
            (token_text_to_bytes(left), token_text_to_bytes(right))
            for left, right in self._files.merges[:limit]
        ]

    def _bad_id_error(self, ids: Sequence[int]) -> TokenizerError:
        bad = next((i for i in ids if not 0 <= i < self.n_vocab), "?")
        return TokenizerError(
            f"token id {bad} is outside the vocabulary of {self.name} (0..{self.n_vocab - 1})"
        )

    def save(self, folder: str | Path, *, layout: str = "openai") -> None:
        """Write the tokenizer's two files: OpenAI's layout (encoder.json + vocab.bpe) or,
        with layout="huggingface", the same contents as vocab.json + merges.txt.

        Each file is written to a temporary file first and then renamed over the target,
        so a reader never sees a half-written file. The output is byte-identical to
        OpenAI's files for GPT-2 itself.
        """
        layouts = {"openai": OPENAI_LAYOUT, "huggingface": HF_LAYOUT}
        if layout not in layouts:
            raise ValueError(f"layout must be 'openai' or 'huggingface', got {layout!r}")
        vocab_name, merges_name = layouts[layout]
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        vocab_text = json.dumps(self._files.vocab)
        merges_text = _MERGES_HEADER + "\n" + "".join(f"{a} {b}\n" for a, b in self._files.merges)
        write_file_atomically(folder / vocab_name, vocab_text)
        write_file_atomically(folder / merges_name, merges_text)


def resolve_tokenizer_folder(path_or_id: str | Path) -> tuple[Path, str]:
    """Where the tokenizer files are, and a name for the tokenizer.

    An existing folder is used as is. Anything else that looks like a hub id ("gpt2",
    "openai-community/gpt2") is fetched from the Hugging Face hub (or its local cache).
    """
    return resolve_local_or_hub(
        path_or_id,
        what="tokenizer",
        expected=_EXPECTED_FILES,
        files=[(name,) for name in HF_LAYOUT],
        error=TokenizerError,
    )


def load_tokenizer(path_or_id: str | Path) -> Tokenizer:
    """Load a GPT-2-style tokenizer from a local folder (either layout) or a hub id."""
    folder, name = resolve_tokenizer_folder(path_or_id)
    return Tokenizer(name, read_bpe_folder(folder), where=str(folder))
