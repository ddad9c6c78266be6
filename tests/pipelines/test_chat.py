"""`gpt2lab chat`: a conversation at a real terminal (a pseudo-terminal, keys typed as a
person types them), its history kept within the model's context, and every way out."""

from __future__ import annotations

import os
import pty
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from model import GPT, GPTConfig, save_checkpoint, train_bpe
from pipelines.cli import app
from tasks.dialogue.data import training_texts
from tests.terminal import exit_code, kill, plain, read_terminal

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_SPLIT = REPO_ROOT / "tasks" / "evals" / "builtin" / "local_data" / "personachat.train.jsonl"
CONTEXT = 96
runner = CliRunner()


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    """A tiny random GPT-2 with a small BPE beside it, and a short context, so that a few
    turns fill it."""
    folder = tmp_path_factory.mktemp("chat") / "model"
    bpe = folder.parent / "bpe"
    train_bpe(training_texts(TRAIN_SPLIT), 512, bpe)
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=512, block_size=CONTEXT, n_layer=1, n_head=2, n_embd=32)
    save_checkpoint(GPT(config), folder)
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(bpe / name, folder / name)
    return folder


@pytest.fixture
def persona_file(tmp_path) -> Path:
    path = tmp_path / "persona.txt"
    path.write_text("I have a cat named Milo.\n\nI work nights as a nurse.\n")
    return path


def test_quit_and_end_of_input_leave_quietly(chat_model, persona_file):
    base = ["chat", "--model", str(chat_model), "--persona", str(persona_file)]
    quit_ = runner.invoke(app, [*base, "--temperature", "0"], input="Hello!\n/quit\nnever read\n")
    assert quit_.exit_code == 0, quit_.output
    assert "persona: I have a cat named Milo. I work nights as a nurse." in quit_.output
    assert quit_.output.count("model:") == 1  # one reply, then /quit
    eof = runner.invoke(app, base, input="Hello!\n")  # then the input ends, as Ctrl-D
    assert eof.exit_code == 0 and "Traceback" not in eof.output, eof.output


def test_a_missing_persona_file_is_a_one_line_error(chat_model, tmp_path):
    result = runner.invoke(
        app, ["chat", "--model", str(chat_model), "--persona", str(tmp_path / "nope.txt")]
    )
    assert result.exit_code == 2
    assert "--persona" in result.output and "no such file" in result.output


@pytest.mark.slow
def test_a_conversation_at_a_terminal_drops_old_turns_and_ctrl_c_leaves_cleanly(
    chat_model, persona_file
):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200", "NO_COLOR": "1"}
    command = [sys.executable, "-m", "pipelines.cli", "chat", "--model", str(chat_model)]
    command += ["--persona", str(persona_file), "--temperature", "0", "--max-new-tokens", "8"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pseudo-terminal is its terminal
        os.execve(sys.executable, command, env)
    code = None
    try:
        shown = read_terminal(fd, time.monotonic() + 120, b"> ")
        assert b"Ctrl-D or Ctrl-C leaves" in shown, shown
        for turn in range(8):
            os.write(fd, f"Tell me about your work, turn {turn}?\r".encode())
            # The reply, then the next prompt on a line of its own.
            shown += read_terminal(fd, time.monotonic() + 60, b"\n> ")
            if "(dropped" in plain(shown):
                break
        text = plain(shown)
        assert "Tell me about your work, turn 0?" in text  # the terminal echoed the typing
        assert text.count("model:") >= 2
        dropped = [line for line in text.splitlines() if line.startswith("(dropped")]
        assert len(dropped) == 1, text
        assert dropped[0].endswith(
            f"oldest turns to stay within the model's context of {CONTEXT} tokens)"
        ) or dropped[0].endswith(
            f"oldest turn to stay within the model's context of {CONTEXT} tokens)"
        )
        os.write(fd, b"half a mess")
        os.write(fd, b"\x03")  # Ctrl-C: the terminal sends SIGINT
        rest = read_terminal(fd, time.monotonic() + 10, b"\x00")  # until the terminal closes
        code = exit_code(pid, 10)
    finally:
        if code is None:
            kill(pid)
        os.close(fd)
    assert code == 130
    assert b"Traceback" not in shown + rest and b"KeyboardInterrupt" not in rest, rest
