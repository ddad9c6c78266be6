"""The layers of DESIGN.md are a contract: model/ <- tasks/ | reports/ <- pipelines/.

The contracts themselves are import-linter's, declared in pyproject.toml and run by
`make lint`. These tests show that they hold on the tree as it is, and that they would
catch a break: each one copies the packages, adds one forbidden import and expects
`lint-imports` to fail naming it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "tasks", "pipelines", "reports", "benchmarks", "tests")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the packages under `root`, with the project's contracts."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        # The copy under `root` comes first on the path, ahead of the installed tree.
        env={"PYTHONPATH": str(root), "PATH": str(LINT_IMPORTS.parent)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("file", "line", "broken", "named"),
    [
        # model/ is the bottom layer: it imports nothing of ours. (Not a flow here: a flow
        # would also bring Prefect and MLflow into model/ and break their contracts too.)
        (
            "model/config.py",
            "import tasks.fingerprint",
            "Layers",
            "model.config -> tasks.fingerprint",
        ),
        # reports/ reads MLflow; it never reaches into tasks/.
        (
            "reports/run_data.py",
            "import tasks.fingerprint",
            "Layers",
            "reports.run_data -> tasks.fingerprint",
        ),
        # tasks/ is plain functions: Prefect is declared in pipelines/ only.
        (
            "tasks/fingerprint.py",
            "import prefect",
            "never import Prefect",
            "tasks.fingerprint -> prefect",
        ),
        # A loop inside model/: checkpoint.py imports gpt.py already.
        (
            "model/gpt.py",
            "from model.checkpoint import load_checkpoint",
            "No import loops",
            ".gpt -> .checkpoint",
        ),
        # Benchmarks stand on the packages, never on test helpers.
        (
            "benchmarks/common.py",
            "import tests.conftest",
            "Benchmarks never import the tests",
            "benchmarks.common -> tests.conftest",
        ),
    ],
)
def test_a_deliberate_break_is_caught(tmp_path, file, line, broken, named):
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / file
    target.write_text(target.read_text() + f"\n{line}  # deliberately wrong\n")

    result = lint_imports(tmp_path)

    assert result.returncode != 0, f"{line!r} in {file} went unnoticed:\n{result.stdout}"
    broken_lines = [row for row in result.stdout.splitlines() if row.endswith(" BROKEN")]
    assert len(broken_lines) == 1 and broken in broken_lines[0], result.stdout
    assert named in result.stdout  # the report names the import that breaks it


def test_the_teaching_file_imports_only_its_config_and_loss():
    # model/gpt.py is read top to bottom by learners: no file formats, no loaders.
    graph = grimp.build_graph("model")
    ours = graph.find_modules_directly_imported_by("model.gpt")
    assert ours == {"model.config", "model.loss"}
