"""What makes an end-to-end stage rerun: its settings, its inputs, and gpt2lab's code,
but not the repository's README, docs or tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.stage_cache import CODE_PACKAGES, stage_key

ROOT = Path(__file__).resolve().parents[2]


def _code_fingerprint_of(tree: Path) -> str:
    """The code fingerprint that a process importing the packages in `tree` computes."""
    code = "from pipelines.stage_cache import code_fingerprint; print(code_fingerprint())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tree,  # `-c` puts the working folder first on the path: the copy, not the checkout
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_code_fingerprint_covers_the_packages_and_nothing_else(tmp_path):
    tree = tmp_path / "repo"
    for package in CODE_PACKAGES:
        shutil.copytree(
            ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    (tree / "README.md").write_text("# gpt2lab\n")
    (tree / "tests").mkdir()
    before = _code_fingerprint_of(tree)

    # Prose, tests, and what Python or an editor leaves behind: no rerun.
    (tree / "README.md").write_text("# gpt2lab, now with a longer README\n")
    (tree / "tests" / "test_new.py").write_text("def test_it():\n    pass\n")
    (tree / "tasks" / ".fingerprint.py.swp").write_text("editor state")
    assert _code_fingerprint_of(tree) == before

    # Code, or a data file the code reads: every stage reruns.
    source = tree / "tasks" / "fingerprint.py"
    source.write_text(source.read_text() + "\n# changed\n")
    changed = _code_fingerprint_of(tree)
    assert changed != before
    prompts = tree / "tasks" / "preferences" / "data" / "prompts.txt"
    prompts.write_text(prompts.read_text() + "One more prompt\n")
    assert _code_fingerprint_of(tree) not in (before, changed)


def test_stage_key_follows_settings_and_inputs():
    key = stage_key("encode", {"vocab_size": 600}, {"corpus": "c" * 64})
    assert key == stage_key("encode", {"vocab_size": 600}, {"corpus": "c" * 64})
    assert key != stage_key("encode", {"vocab_size": 601}, {"corpus": "c" * 64})
    assert key != stage_key("encode", {"vocab_size": 600}, {"corpus": "d" * 64})
    assert key != stage_key("pretrain", {"vocab_size": 600}, {"corpus": "c" * 64})
