"""`gpt2lab chat`: talk with a model in the terminal, as a persona (PERSONA-CHAT style).

The model reads the same text it is fine-tuned on with `--format persona-chat` and scored
on by the `personachat` eval task (`tasks/dialogue/format.py`): the persona sentences, the
conversation with "Them:" (you) and "You:" (the model), then "You:" for its reply. The
reply streams token by token and ends at the end of its line. The conversation grows
every turn, and a model reads at most its context (`block_size` tokens): when the next
prompt would not fit, the oldest turns are dropped, and one line says so.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from pipelines.cli.common import DeviceOption, ModelOption, TokenizerOption, app, fail, make_console

if TYPE_CHECKING:  # torch is imported only when the command runs (see pipelines/cli)
    from model import GPT, SamplingConfig, Tokenizer

QUIT = "/quit"
INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)


def read_persona(path: Path | None) -> list[str]:
    """Persona sentences: one per non-empty line of the file."""
    if path is None:
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ValueError(f"--persona {path}: no such file") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"--persona {path}: not UTF-8 text (byte {error.start})") from None
    return [line.strip() for line in lines if line.strip()]


@app.command()
def chat(
    model: ModelOption,
    persona: Annotated[
        Path | None,
        typer.Option(help="Text file: who the model is, one persona sentence per line."),
    ] = None,
    tokenizer: TokenizerOption = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest reply, in tokens.")] = 40,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 0.7,
    top_k: Annotated[int | None, typer.Option(min=1)] = None,
    top_p: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = 0.9,
    seed: Annotated[int | None, typer.Option()] = None,
    device: DeviceOption = "auto",
) -> None:
    """Chat with a model in the terminal; /quit, Ctrl-D or Ctrl-C leaves."""
    try:
        _chat(model, persona, tokenizer, max_new_tokens, temperature, top_k, top_p, seed, device)
    except KeyboardInterrupt:  # Ctrl-C, while typing or while the model writes
        make_console().print()
        raise typer.Exit(code=INTERRUPTED) from None


def _chat(
    model: str,
    persona_file: Path | None,
    tokenizer: str | None,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None,
    device: str,
) -> None:
    from model import SamplingConfig, load_model
    from model.errors import Gpt2labError
    from model.tokenizer import load_tokenizer
    from pipelines.model_refs import resolve_device, resolve_model

    console = make_console()
    try:
        persona = read_persona(persona_file)
        where = resolve_device(device)
        folder = resolve_model(model)
        net = load_model(folder).to(where)  # the model first: a wrong --model is named so
        tok = load_tokenizer(resolve_model(tokenizer) if tokenizer else folder)
        if net.config.vocab_size < tok.n_vocab:
            raise Gpt2labError(
                f"tokenizer has {tok.n_vocab} tokens but the model only {net.config.vocab_size}"
            )
        sampling = SamplingConfig(max_new_tokens, temperature, top_k, top_p, seed)
    except (Gpt2labError, ValueError) as err:
        raise fail(err) from None
    net.eval()
    # The prompt may take the context less the reply's room.
    room = net.config.block_size - max_new_tokens
    if room < 1:
        raise fail(
            ValueError(
                f"--max-new-tokens {max_new_tokens} leaves no room in the model's "
                f"context of {net.config.block_size} tokens"
            )
        )
    console.print(f"persona: {' '.join(persona) if persona else '(none)'}", highlight=False)
    console.print(
        f"Type a message and press Enter; {QUIT}, Ctrl-D or Ctrl-C leaves.", highlight=False
    )
    history: list[str] = []
    while True:
        try:
            message = input("> ").strip()
        except EOFError:  # Ctrl-D
            console.print()
            return
        if message == QUIT:
            return
        if not message:
            continue
        history.append(message)
        kept = _fit(persona, history, tok, room)
        if not kept:
            console.print(
                f"(that message and the persona do not fit in the model's context of "
                f"{net.config.block_size} tokens: say something shorter)",
                highlight=False,
            )
            history.pop()
            continue
        if len(kept) < len(history):
            dropped = len(history) - len(kept)
            console.print(
                f"(dropped the {dropped} oldest turn{'s' if dropped > 1 else ''} to stay "
                f"within the model's context of {net.config.block_size} tokens)",
                highlight=False,
            )
            history = kept
        reply = _stream_reply(net, tok, persona, history, sampling, console)
        history.append(reply)


def _fit(persona: list[str], history: list[str], tok: Tokenizer, room: int) -> list[str]:
    from tasks.dialogue.format import fit_history

    return fit_history(persona, history, lambda prompt: len(tok.encode(prompt)) <= room)


def _stream_reply(
    net: GPT,
    tok: Tokenizer,
    persona: list[str],
    history: list[str],
    sampling: SamplingConfig,
    console: Console,
) -> str:
    """Write the model's reply as it comes; return it (its first line, stripped)."""
    from model import stream
    from tasks.dialogue.format import END_OF_TURN, build_prompt, cut_reply

    prompt_ids = tok.encode(build_prompt(persona, history))
    events = stream(
        net,
        [prompt_ids],
        sampling,
        eot_token=tok.eot_token,
        stop_strings=(END_OF_TURN,),
        decode=tok.decode,
    )
    console.print(Text("model:", style="bold"), end="")
    # A token can end inside a UTF-8 character: the incremental decoder holds it back.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = ""
    for event in events:
        if event.finish_reason == "eot":
            break
        new = decoder.decode(tok.token_bytes([event.token])[0])
        shown = text.split(END_OF_TURN, 1)[0]
        text += new
        new_shown = text.split(END_OF_TURN, 1)[0][len(shown) :]  # nothing after the line
        console.print(new_shown, end="", markup=False, highlight=False, soft_wrap=True)
    console.print()
    return cut_reply(text)
