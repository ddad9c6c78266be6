"""The disk fills while shards are written: one line naming the folder, nothing half-written
is ever read, and the run resumes once space is freed.

The full disk is real: a small tmpfs mounted in a private mount namespace (`unshare -rm`),
so the test needs no privileges and leaves no mount behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.encode.corpus_source import open_corpus
from tasks.encode.encode import EncodeSettings, TokenizerChoice, encode_corpus

from .conftest import save_dataset

SETTINGS = {"val_fraction": 0.1, "shard_mb": 0.05}

# Runs inside the namespace, on the tmpfs at DISK: encode until the disk is full, look at
# what a reader sees, free the space, encode again. Prints what it found as JSON.
CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from model.errors import Gpt2labError
    from tasks.encode.corpus_source import open_corpus
    from tasks.encode.encode import EncodeSettings, TokenizerChoice, encode_corpus
    from tasks.encode.token_shards import read_meta, verify_shards, PARTS_DIR, PartRecord

    corpus, disk, settings = sys.argv[1], Path(sys.argv[2]), sys.argv[4]
    free_bytes, disk_bytes = int(sys.argv[3]), int(sys.argv[5])
    filler = disk / "filler"  # takes all but `free_bytes` of the disk
    filler.write_bytes(bytes(disk_bytes - free_bytes))
    tokens = disk / "tokens"
    choice = TokenizerChoice(tokenizer=str(Path(corpus).parent / "tokenizer"))
    settings = EncodeSettings(**json.loads(settings))
    found = {}
    try:
        encode_corpus(open_corpus(corpus), tokens, choice, settings)
        found["error"] = None
    except Gpt2labError as error:
        found["error"] = str(error)
    found["tmp_files"] = sorted(p.name for p in tokens.rglob("*.tmp"))
    try:
        read_meta(tokens)
        found["finished_before"] = True
    except Gpt2labError:
        found["finished_before"] = False
    # What a resuming run trusts: the part records, and the shards they name.
    complete = set()
    for record_file in sorted((tokens / PARTS_DIR).glob("*.json")):
        record = PartRecord.model_validate_json(record_file.read_text())
        complete |= {s.file for s in record.shards}
    found["parts_kept"] = len(list((tokens / PARTS_DIR).glob("*.json")))
    found["unrecorded_shards"] = sorted(
        p.name for p in tokens.glob("*.bin") if p.name not in complete
    )
    filler.unlink()  # space freed: run again
    meta = encode_corpus(open_corpus(corpus), tokens, choice, settings)
    verify_shards(tokens)
    found["fingerprint_after"] = meta.fingerprint
    print(json.dumps(found))
    """
)


def can_mount_tmpfs(folder: Path) -> bool:
    probe = ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {folder}"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_full_disk_gives_one_line_leaves_no_half_shard_and_resumes(tmp_path, documents):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not can_mount_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here (needs unshare -rm and user namespaces)")
    corpus = save_dataset(tmp_path / "data" / "corpus", documents)
    # The reference: the same encoding on a disk with room (a trained tokenizer, kept for
    # the runs below so that they differ from this one only in the disk).
    reference = encode_corpus(
        open_corpus(corpus),
        tmp_path / "reference",
        TokenizerChoice(train_tokenizer=True, vocab_size=512),
        EncodeSettings(**SETTINGS),
    )
    shutil.copytree(tmp_path / "reference" / "tokenizer", tmp_path / "data" / "tokenizer")
    total = folder_bytes(tmp_path / "reference")
    shards = sum(s.tokens * 2 for s in reference.shards)
    assert len(reference.shards) >= 6  # several parts: the disk fills in the middle
    # Room for the tokenizer, the plan and about half of the shards.
    free = total - shards // 2
    size = 4 * total
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    mount = f"mount -t tmpfs -o size={size} tmpfs {disk}"
    child = f'{mount} && exec "$0" "$@"'
    command = ["unshare", "-rm", "sh", "-c", child, sys.executable, str(script)]
    command += [str(corpus), str(disk), str(free), json.dumps(SETTINGS), str(size)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])

    error = found["error"]
    assert error is not None and "\n" not in error
    assert str(disk / "tokens") in error and "no space left" in error
    assert found["tmp_files"] == []  # the partial shard was removed
    assert found["finished_before"] is False  # tokens.json absent: readers refuse the folder
    assert found["unrecorded_shards"] == []  # every shard file in view is a complete one
    assert found["parts_kept"] >= 1  # the parts written before the disk filled were kept
    assert found["fingerprint_after"] == reference.fingerprint  # resumed, same tokens
