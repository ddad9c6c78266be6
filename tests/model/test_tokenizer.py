"""The GPT-2 tokenizer: fast (tiktoken), reference (pure Python) and Hugging Face agree.

The reference implementation follows OpenAI's original algorithm literally, so when the
three disagree, the reference is the one to believe.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
from tokenizers import ByteLevelBPETokenizer

from benchmarks.varied_text import varied_documents, varied_text
from model.tokenizer import ReferenceBPE, Tokenizer, TokenizerError, load_tokenizer
from model.tokenizer.byte_map import bytes_to_unicode

ONE_MB = 1_000_000

# Characters where regex engines (Python `regex`, Rust `fancy-regex`, Oniguruma) might
# disagree about letters, digits and whitespace, each in a few contexts.
# fmt: off
TRICKY = [
    "\x1c", "\x1f", "\x85", "\u2028", "\u2029", "\u200b", "\u180e", "\ufeff", "\u00ad",
    "\u2060", "e\u0301", "\u0301", "Ⅻ", "½", "²", "٣", "ǅ", "ᾼ", "𝔘", "ﬁ", "ⓐ", "\u061c",
    "\U0001fae8", "\U00011f00", "𒀀", "\u00a0", "\u3000", "\x0b", "\x0c", "\r",
]
# fmt: on


def _contexts(char: str) -> list[str]:
    return [f"a{char}b", f" {char}x", f"{char}{char} y", f"1{char}2", f"x {char}\n", f"'{char}s"]


def hf_layout_copy(openai_dir: Path, dest: Path) -> Path:
    """The same vocabulary in Hugging Face's layout: vocab.json + merges.txt."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(openai_dir / "encoder.json", dest / "vocab.json")
    shutil.copyfile(openai_dir / "vocab.bpe", dest / "merges.txt")
    return dest


def hf_bpe(folder: Path) -> ByteLevelBPETokenizer:
    """Hugging Face's byte-level BPE from the same files (its constructor wants dicts,
    `from_file` reads paths)."""
    if (folder / "encoder.json").exists():
        return ByteLevelBPETokenizer.from_file(
            str(folder / "encoder.json"), str(folder / "vocab.bpe")
        )
    return ByteLevelBPETokenizer.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"))


def assert_same_ids(
    docs: list[str], expected: list[list[int]], actual: list[list[int]], who: str
) -> None:
    """Like `expected == actual`, but a failure shows the first text where they part."""
    for doc, want, got in zip(docs, expected, actual, strict=True):
        if want != got:
            at = next(
                (i for i, (w, g) in enumerate(zip(want, got, strict=False)) if w != g),
                min(len(want), len(got)),
            )
            pytest.fail(
                f"{who} differs from the reference at token {at}: reference "
                f"{want[max(0, at - 3) : at + 3]}, {who} {got[max(0, at - 3) : at + 3]}; "
                f"text {doc!r:.300}"
            )


@pytest.fixture(scope="module")
def gpt2(gpt2_vocab_dir: Path) -> Tokenizer:
    return load_tokenizer(gpt2_vocab_dir)


@pytest.fixture(scope="module")
def varied_docs() -> list[str]:
    docs = varied_documents(ONE_MB + 50_000, seed=2024)
    assert sum(len(d.encode("utf-8")) for d in docs) >= ONE_MB
    return docs


# --- 1. the three implementations agree ------------------------------------------------


def test_varied_text_covers_the_hard_cases(varied_docs: list[str]) -> None:
    text = "".join(varied_docs)
    # fmt: off
    must_have = [
        "\t", "\r\n", "\x0b", "\x0c", "\u00a0", "\u2003", "\u3000", "   \n", "'re", "'ll",
        "'s", "<|endoftext|>", "    return", "\t\tif", "é", "λ", "ж", "世界", "ال", "नमस्ते",
        "👨‍👩‍👧‍👦", "👍🏽", "🇫🇷",
    ]
    # fmt: on
    missing = [s for s in must_have if s not in text]
    assert not missing, f"the generator no longer produces {missing!r}"
    assert any(len(run) >= 50 for run in text.split() if run.isdigit()), "no long digit run"


def test_varied_text_is_deterministic() -> None:
    assert varied_text(20_000, seed=7) == varied_text(20_000, seed=7)
    assert varied_text(20_000, seed=7) != varied_text(20_000, seed=8)


@pytest.mark.parametrize("layout", ["openai", "huggingface"])
def test_fast_reference_and_hf_give_identical_ids(
    layout: str, gpt2_vocab_dir: Path, varied_docs: list[str], tmp_path: Path
) -> None:
    folder = gpt2_vocab_dir if layout == "openai" else hf_layout_copy(gpt2_vocab_dir, tmp_path)
    ours = load_tokenizer(folder)
    reference = ReferenceBPE(folder)

    expected = [reference.encode(doc) for doc in varied_docs]
    assert_same_ids(varied_docs, expected, [ours.encode(doc) for doc in varied_docs], "ours")
    assert_same_ids(varied_docs, expected, ours.encode_batch(varied_docs), "ours (batch)")
    hf_ids = [enc.ids for enc in hf_bpe(folder).encode_batch(varied_docs)]
    assert_same_ids(varied_docs, expected, hf_ids, "HF tokenizers")

    for doc, ids in zip(varied_docs, expected, strict=True):
        assert ours.decode(ids) == doc
        assert reference.decode(ids) == doc


@pytest.mark.parametrize("char", TRICKY, ids=[f"U+{ord(c[-1]):04X}" for c in TRICKY])
def test_implementations_agree_on_tricky_characters(
    char: str, gpt2: Tokenizer, gpt2_vocab_dir: Path
) -> None:
    reference, hf = _reference_and_hf(gpt2_vocab_dir)
    for text in _contexts(char):
        expected = reference.encode(text)
        assert gpt2.encode(text) == expected, f"ours differs on {text!r}"
        assert hf.encode(text).ids == expected, f"HF differs on {text!r}"
        assert gpt2.decode(expected) == text


_CACHED: dict[Path, tuple[ReferenceBPE, ByteLevelBPETokenizer]] = {}


def _reference_and_hf(folder: Path) -> tuple[ReferenceBPE, ByteLevelBPETokenizer]:
    if folder not in _CACHED:
        _CACHED[folder] = (ReferenceBPE(folder), hf_bpe(folder))
    return _CACHED[folder]


def test_known_gpt2_ids(gpt2: Tokenizer) -> None:
    # Ids anyone can check against OpenAI's GPT-2 ("Hello world" is famously [15496, 995]).
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.token_bytes(gpt2.encode(" the cat's")) == [b" the", b" cat", b"'s"]


def test_decode_of_a_cut_character_uses_replacement_char(gpt2: Tokenizer) -> None:
    ids = gpt2.encode("é")  # two bytes; if they were split, half a character would remain
    pieces = gpt2.token_bytes(ids)
    assert b"".join(pieces) == "é".encode()
    assert gpt2.decode(gpt2.encode("😀")[:1]) == "\ufffd"


def test_byte_tokens_use_gpt2_ids(gpt2_vocab_dir: Path) -> None:
    """ids 0..255 are the single bytes, in the order of bytes_to_unicode."""
    vocab = json.loads((gpt2_vocab_dir / "encoder.json").read_text(encoding="utf-8"))
    assert {char: i for i, char in enumerate(bytes_to_unicode().values())} == {
        token: i for token, i in vocab.items() if i < 256
    }


def test_save_reproduces_openais_files(gpt2: Tokenizer, gpt2_vocab_dir: Path, tmp_path: Path):
    gpt2.save(tmp_path / "copy")
    for name in ("encoder.json", "vocab.bpe"):
        original = hashlib.sha256((gpt2_vocab_dir / name).read_bytes()).hexdigest()
        saved = hashlib.sha256((tmp_path / "copy" / name).read_bytes()).hexdigest()
        assert saved == original, name
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["encoder.json", "vocab.bpe"]


def test_tokenizer_survives_pickling(gpt2: Tokenizer) -> None:
    """Process pools (Dask, multiprocessing) pickle what they send to workers."""
    copy = pickle.loads(pickle.dumps(gpt2))
    assert copy.encode("It's 42 😀") == gpt2.encode("It's 42 😀")
    assert (copy.name, copy.fingerprint, copy.eot_token) == (gpt2.name, gpt2.fingerprint, 50256)


# --- 2. the special token ----------------------------------------------------------------


def test_end_of_text_is_text_unless_allowed(gpt2: Tokenizer, gpt2_vocab_dir: Path) -> None:
    assert gpt2.eot_token == 50256
    assert gpt2.n_vocab == 50257

    plain = gpt2.encode("<|endoftext|>")
    assert len(plain) > 1 and gpt2.eot_token not in plain
    assert plain == ReferenceBPE(gpt2_vocab_dir).encode("<|endoftext|>")
    assert gpt2.encode("<|endoftext|>", allow_special=True) == [gpt2.eot_token]

    text = "end.<|endoftext|>Next"
    with_eot = gpt2.encode(text, allow_special=True)
    assert with_eot.count(gpt2.eot_token) == 1
    assert gpt2.decode(with_eot) == text == gpt2.decode(gpt2.encode(text))
    assert gpt2.encode_batch([text, "x"], allow_special=True) == [with_eot, gpt2.encode("x")]
    assert gpt2.encode_batch([text], num_threads=1) == [gpt2.encode(text)]


def test_out_of_range_ids_are_a_clear_error(gpt2: Tokenizer) -> None:
    for bad in ([1, 50257], [-1]):
        with pytest.raises(TokenizerError, match=f"token id {bad[-1]} is outside") as err:
            gpt2.decode(bad)
        assert "\n" not in str(err.value)
        with pytest.raises(TokenizerError, match=f"token id {bad[-1]} is outside"):
            gpt2.token_bytes(bad)


# --- 5. fingerprints -----------------------------------------------------------------------


def test_fingerprint_depends_on_content_not_layout(
    gpt2: Tokenizer, gpt2_vocab_dir: Path, tmp_path: Path
) -> None:
    hf_copy = load_tokenizer(hf_layout_copy(gpt2_vocab_dir, tmp_path / "hf"))
    assert hf_copy.fingerprint == gpt2.fingerprint
    assert len(gpt2.fingerprint) == 64 and int(gpt2.fingerprint, 16) >= 0
