"""Bad tokenizer input fails with one line that names the problem and where it is."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model.errors import Gpt2labError
from model.tokenizer import ReferenceBPE, TokenizerError, load_tokenizer


def test_tokenizer_errors_are_user_errors() -> None:
    # The command line prints Gpt2labError as one line without a traceback.
    assert issubclass(TokenizerError, Gpt2labError) and issubclass(TokenizerError, ValueError)


def load_error(path_or_id: str | Path) -> str:
    with pytest.raises(TokenizerError) as err:
        load_tokenizer(path_or_id)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def copy_of_gpt2(gpt2_vocab_dir: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copyfile(gpt2_vocab_dir / name, dest / name)
    return dest


def test_folder_in_neither_layout(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n")  # half of a layout
    message = load_error(tmp_path)
    assert str(tmp_path) in message
    assert "encoder.json + vocab.bpe" in message and "vocab.json + merges.txt" in message


def test_no_such_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert load_error(missing) == f"no such tokenizer folder: {missing}"
    for not_a_hub_id in ("./not/here", "a/b/c", "ends-with-", "x..y", "~/nothing"):
        assert load_error(not_a_hub_id) == f"no such tokenizer folder: {not_a_hub_id}"
    with pytest.raises(TokenizerError, match="no such tokenizer folder"):
        ReferenceBPE(missing)


def test_a_file_instead_of_a_folder(gpt2_vocab_dir: Path) -> None:
    message = load_error(gpt2_vocab_dir / "encoder.json")
    assert "encoder.json" in message and "folder" in message


@pytest.mark.parametrize("hub_id", ["openai-community/gpt2", "gpt2"])
def test_hub_id_while_offline(hub_id: str) -> None:
    # conftest sets HF_HUB_OFFLINE=1 and an empty HF_HOME: nothing is cached.
    message = load_error(hub_id)
    assert repr(hub_id) in message
    assert "offline or not cached" in message and "local folder" in message


def test_merges_that_do_not_match_the_vocabulary(gpt2_vocab_dir: Path, tmp_path: Path) -> None:
    folder = copy_of_gpt2(gpt2_vocab_dir, tmp_path / "swapped")
    lines = (folder / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    lines[10], lines[11] = lines[11], lines[10]  # two merges in the wrong order
    (folder / "vocab.bpe").write_text("\n".join(lines), encoding="utf-8")
    message = load_error(folder)
    assert str(folder) in message and "rank 265" in message


def test_merges_from_another_vocabulary(gpt2_vocab_dir: Path, tmp_path: Path) -> None:
    folder = copy_of_gpt2(gpt2_vocab_dir, tmp_path / "truncated")
    lines = (folder / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    (folder / "vocab.bpe").write_text("\n".join(lines[:1000]) + "\n", encoding="utf-8")
    message = load_error(folder)
    assert str(folder) in message and "do not fit together" in message


def test_malformed_merges_line(gpt2_vocab_dir: Path, tmp_path: Path) -> None:
    folder = copy_of_gpt2(gpt2_vocab_dir, tmp_path / "malformed")
    with (folder / "vocab.bpe").open("a", encoding="utf-8") as f:
        f.write("one two three\n")
    message = load_error(folder)
    assert "vocab.bpe, line 50002" in message and "one two three" in message


def test_vocabulary_that_is_not_json(gpt2_vocab_dir: Path, tmp_path: Path) -> None:
    folder = copy_of_gpt2(gpt2_vocab_dir, tmp_path / "badjson")
    (folder / "encoder.json").write_text('{"a": 0,', encoding="utf-8")
    message = load_error(folder)
    assert "encoder.json" in message and "JSON" in message


def test_vocabulary_without_end_of_text(gpt2_vocab_dir: Path, tmp_path: Path) -> None:
    folder = copy_of_gpt2(gpt2_vocab_dir, tmp_path / "noeot")
    text = (folder / "encoder.json").read_text(encoding="utf-8")
    (folder / "encoder.json").write_text(text.replace(', "<|endoftext|>": 50256', ""))
    assert "<|endoftext|>" in load_error(folder)
