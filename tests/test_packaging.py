"""gpt2lab installs as an application: a plain wheel carries the four packages and every
data file they read, and nothing else of the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "tasks", "pipelines", "reports")
# Files the code opens at run time (templates, presets, shipped data), by suffix.
DATA_SUFFIXES = {".txt", ".toml", ".jsonl", ".html", ".css", ".js"}


def tracked_files(*paths: str) -> list[str]:
    return subprocess.run(
        ["git", "ls-files", *paths], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()


def shipped_files() -> set[str]:
    """What a wheel must hold: every module and data file git tracks in the four packages."""
    return {
        path
        for path in tracked_files(*PACKAGES)
        if Path(path).suffix == ".py" or Path(path).suffix in DATA_SUFFIXES
    }


@pytest.mark.slow
def test_the_wheel_holds_every_package_and_data_file(tmp_path):
    # Built from a copy of what git tracks, so the checkout gets no build/ folder and an
    # untracked file cannot slip in.
    source = tmp_path / "source"
    for path in tracked_files("pyproject.toml", "README.md", *PACKAGES):
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, source / path)
    # No build isolation: the build uses the setuptools already installed (no download).
    build = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps"]
    build += ["--no-build-isolation", "--wheel-dir", str(tmp_path), "--quiet"]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = tmp_path.glob("gpt2lab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    missing = shipped_files() - names
    assert not missing, f"the wheel lacks {sorted(missing)[:10]}"
    top_level = {name.split("/", 1)[0] for name in names if not name.startswith("gpt2lab-")}
    assert top_level == set(PACKAGES), top_level  # no tests/, benchmarks/ or stray modules
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "gpt2lab = pipelines.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_packages_import_from_the_repository_root():
    # nanoGPT-style: `python -c "from model import GPT"` in a checkout just works.
    subprocess.run(
        [sys.executable, "-c", "from model import GPT; import tasks, pipelines, reports"],
        cwd=ROOT,
        check=True,
    )


def test_the_editable_install_is_a_plain_path_not_an_import_hook():
    # Editors resolve imports statically only from a path entry; a finder hook hides them.
    import model

    assert Path(model.__file__).resolve().parent == ROOT / "model"
    assert not any("__editable__" in type(f).__module__ for f in sys.meta_path)
