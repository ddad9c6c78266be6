"""Stopping a training process from outside: SIGTERM saves and stops; SIGKILL loses only
the steps since the last checkpoint, and a half-written checkpoint is never loaded."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tasks.train.checkpoints import STATE_FILE, latest_checkpoint
from tasks.train.loop import train
from tests.tasks.train.test_loop import settings

_TRAIN_IN_A_CHILD = """
import sys
from pathlib import Path
from tasks.train.loop import Callbacks, train
from tests.tasks.train.test_loop import settings
tokens, run, progress, interval = sys.argv[1:]
report = lambda step, metrics: Path(progress).write_text(str(step))
result = train(settings(Path(tokens), max_steps=100_000, checkpoint_interval=int(interval),
                        eval_interval=100_000), Path(run), Callbacks(on_step=report))
print("stopped" if result.stopped else "finished", result.steps)
"""


def _start(tokens_dir: Path, tmp_path: Path, interval: int) -> subprocess.Popen:
    progress = tmp_path / "progress"
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            _TRAIN_IN_A_CHILD,
            str(tokens_dir),
            str(tmp_path / "run"),
            str(progress),
            str(interval),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],  # the project root: `tests` importable
    )


def _wait_for_step(child: subprocess.Popen, tmp_path: Path, step: int) -> None:
    deadline = time.monotonic() + 120
    progress = tmp_path / "progress"
    while time.monotonic() < deadline:
        assert child.poll() is None, child.stderr.read()
        # Read once: the child rewrites the file each step, so it can be empty between
        # two reads.
        text = progress.read_text() if progress.is_file() else ""
        if text.strip() and int(text) >= step:
            return
        time.sleep(0.01)
    raise AssertionError(f"the child did not reach step {step}")


def test_sigterm_saves_a_checkpoint_and_stops(tokens_dir, tmp_path):
    child = _start(tokens_dir, tmp_path, interval=100_000)  # no checkpoint before the signal
    _wait_for_step(child, tmp_path, 3)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    verdict, steps = out.split()
    assert verdict == "stopped"
    saved = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert saved is not None and saved.name == f"step-{int(steps):06d}"


def test_sigkill_loses_only_the_steps_since_the_last_checkpoint(tokens_dir, tmp_path):
    child = _start(tokens_dir, tmp_path, interval=5)
    _wait_for_step(child, tmp_path, 12)
    child.kill()  # SIGKILL: nothing runs on the way out
    child.wait()
    checkpoints = tmp_path / "run" / "checkpoints"
    newest = latest_checkpoint(checkpoints)
    assert newest is not None and int(newest.name.removeprefix("step-")) % 5 == 0
    # Whatever a kill can leave half-written must never be taken for a checkpoint.
    (checkpoints / ".step-000099.partial").mkdir()
    (checkpoints / "step-000099").mkdir()
    (checkpoints / "step-000099" / "gpt2lab.json").write_text("{")
    assert latest_checkpoint(checkpoints) == newest

    steps_done = int(newest.name.removeprefix("step-"))
    resumed = train(
        settings(tokens_dir, max_steps=steps_done + 2, checkpoint_interval=5), tmp_path / "run"
    )
    assert resumed.resumed_from == steps_done and resumed.steps == steps_done + 2
    leftovers = [p.name for p in checkpoints.iterdir() if not (p / STATE_FILE).is_file()]
    assert leftovers == [], "a killed save's leftovers were not cleaned up"
