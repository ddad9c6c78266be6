"""Teaching views: `tokenize` (a text's BPE pieces), `generate` (stream a continuation,
optionally with each token's probability), `explain` (one HTML page of pictures: tokens,
the causal mask, attention, next-token probabilities, sampling step by step) and `tour`
(a BPE and a tiny GPT-2 in a minute).
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from pipelines.cli.common import DeviceOption, ModelOption, TokenizerOption, app, fail, make_console


def _prob(p: float) -> str:
    """Probabilities span many orders of magnitude: 0.412, 0.003, 2.1e-05."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _show(piece: bytes) -> str:
    from model.tokenizer.byte_map import visible

    return visible(piece)


@app.command()
def tokenize(
    text: Annotated[str, typer.Argument(help="The text to split into BPE tokens.")],
    tokenizer: Annotated[
        str, typer.Option("--tokenizer", "-t", help="Tokenizer folder or hub id.")
    ],
    allow_special: Annotated[
        bool, typer.Option(help="Read '<|endoftext|>' in the text as the special token.")
    ] = False,
) -> None:
    """Show how a text is split into byte-level BPE tokens, with their ids."""
    console = make_console()
    from model.errors import Gpt2labError
    from model.tokenizer import load_tokenizer

    try:
        tok = load_tokenizer(tokenizer)
    except Gpt2labError as err:
        raise fail(err) from None
    ids = tok.encode(text, allow_special=allow_special)
    pieces = tok.token_bytes(ids)

    inline = Text()
    for i, piece in enumerate(pieces):
        inline.append(_show(piece), style="black on cyan" if i % 2 else "black on yellow")
    console.print(inline)

    table = Table("#", "id", "piece", "bytes")
    for i, (token, piece) in enumerate(zip(ids, pieces, strict=True)):
        table.add_row(str(i), str(token), _show(piece), piece.hex(" "))
    console.print(table)
    n_bytes = len(text.encode("utf-8"))
    ratio = n_bytes / max(len(ids), 1)
    console.print(f"{len(ids)} tokens, {n_bytes} bytes, {ratio:.2f} bytes per token")


@app.command()
def generate(
    model: ModelOption,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text to continue.")],
    tokenizer: TokenizerOption = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 50,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 1.0,
    top_k: Annotated[int | None, typer.Option(min=1)] = None,
    top_p: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop at this text (repeatable).")] = None,
    show_probs: Annotated[
        bool, typer.Option(help="Show each token's probability and the top-5 alternatives.")
    ] = False,
    device: DeviceOption = "auto",
) -> None:
    """Continue a prompt, streaming tokens as they are sampled."""
    from model import SamplingConfig, load_model, stream
    from model.errors import Gpt2labError
    from model.tokenizer import load_tokenizer
    from pipelines.model_refs import resolve_device, resolve_model

    try:
        where = resolve_device(device)
        folder = resolve_model(model)  # a registered model: its downloaded folder
        # The model first: a wrong --model is then named as the model, not as its tokenizer.
        net = load_model(folder).to(where)
        tok = load_tokenizer(resolve_model(tokenizer) if tokenizer else folder)
        sampling = SamplingConfig(max_new_tokens, temperature, top_k, top_p, seed)
        prompt_ids = tok.encode(prompt)
        if not prompt_ids:
            raise ValueError("--prompt is empty")
        if net.config.vocab_size < tok.n_vocab:
            raise Gpt2labError(
                f"tokenizer has {tok.n_vocab} tokens but the model only {net.config.vocab_size}"
            )
        events = stream(
            net,
            [prompt_ids],
            sampling,
            eot_token=tok.eot_token,
            stop_strings=stop or (),
            decode=tok.decode,
            alternatives=5 if show_probs else 0,
        )
        if show_probs:
            _print_with_probabilities(events, tok, prompt)
        else:
            _print_streaming(events, tok, prompt, stop or ())
    except (Gpt2labError, ValueError) as err:
        raise fail(err) from None


def _print_streaming(events, tok, prompt: str, stop: list[str]) -> None:
    """Print text as it comes. A token can end in the middle of a UTF-8 character, so
    bytes go through an incremental decoder that holds back incomplete characters."""
    from model.sampling import cut_at_stop

    console = make_console()
    console.print(Text(prompt, style="bold"), end="")
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = ""
    for event in events:
        if event.finish_reason == "eot":
            break
        new = decoder.decode(tok.token_bytes([event.token])[0])
        if stop:
            # Hold back the text once a stop string appears; print only what precedes it.
            kept = cut_at_stop(text + new, stop)
            new = kept[len(text) :]
        text += new
        console.print(new, end="", markup=False, highlight=False, soft_wrap=True)
    console.print(decoder.decode(b"", final=True), markup=False, highlight=False)


def _token_label(tok, token: int) -> str:
    return "<|endoftext|>" if token == tok.eot_token else _show(tok.token_bytes([token])[0])


def _print_with_probabilities(events, tok, prompt: str) -> None:
    """The teaching view: each chosen token, how likely the model thought it was, and what
    else it considered."""
    console = make_console()
    console.print(Text(f"prompt: {prompt}", style="bold"))
    table = Table("step", "chosen", "p", "top-5 alternatives")
    for step, event in enumerate(events):
        chosen = _token_label(tok, event.token)
        alts = "  ".join(f"{_token_label(tok, t)} {_prob(p)}" for t, p in event.alternatives)
        table.add_row(str(step), chosen, _prob(event.probability), alts)
    console.print(table)


@app.command()
def explain(
    model: ModelOption,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text to look at.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "explain.html"
    ),
    steps: Annotated[int, typer.Option(min=1, help="Generation steps to show.")] = 8,
    tokenizer: TokenizerOption = None,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 1.0,
    top_k: Annotated[int | None, typer.Option(min=1)] = None,
    top_p: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the sampling steps: same seed, same page.")
    ] = 0,
    word: Annotated[
        str | None,
        typer.Option(help="Word whose BPE merges are shown (default: the one with most merges)."),
    ] = None,
    layer: Annotated[int, typer.Option(min=0, help="Layer of the causal-mask view.")] = 0,
    head: Annotated[int, typer.Option(min=0, help="Head of the causal-mask view.")] = 0,
    top: Annotated[int, typer.Option(min=1, help="Most likely tokens listed per position.")] = 5,
    log: Annotated[
        bool,
        typer.Option(
            help="Also log the page to MLflow: to the run that logged a models:/ model, "
            "else to a new run in the 'explain' experiment."
        ),
    ] = False,
    device: DeviceOption = "auto",
) -> None:
    """Write one HTML page that shows what GPT-2 does with a prompt, in pictures."""
    from model import SamplingConfig
    from model.errors import Gpt2labError
    from model.explain import explain_checkpoint
    from pipelines.model_refs import resolve_device, resolve_model
    from reports.explain_page import write_explain_page

    console = make_console()
    try:
        folder = resolve_model(model)  # a registered model: its downloaded folder
        ex = explain_checkpoint(
            folder,
            prompt,
            SamplingConfig(steps, temperature, top_k, top_p, seed),
            tokenizer=resolve_model(tokenizer) if tokenizer else None,
            device=resolve_device(device),
            word=word,
            layer=layer,
            head=head,
            top=top,
        )
        page = write_explain_page(ex, out, model_name=model)
        console.print(f"wrote {page} ({len(ex.ids)} tokens, {page.stat().st_size:,} bytes)")
        if log:
            run_id = _log_explain_page(page, model, folder, prompt)
            console.print(f"logged to MLflow run {run_id}")
    except (Gpt2labError, ValueError, OSError) as err:
        raise fail(err) from None


def _log_explain_page(page: Path, model: str, folder: str, prompt: str) -> str:
    """Log the page where a user will look for it: beside the model, in the run that
    logged a registered (models:/) model; any other model has no run of its own, so the
    page gets a new run in the 'explain' experiment, tagged with the model's fingerprint."""
    from mlflow.store.artifact.utils.models import get_model_name_and_version
    from mlflow.tracking import MlflowClient

    from pipelines.model_refs import is_registered
    from pipelines.tracking import tracked_run
    from pipelines.workspace import mlflow_tracking_uri
    from reports.explain_page import EXPLAIN_ARTIFACT_DIR, EXPLAIN_EXPERIMENT
    from tasks.fingerprint import model_fingerprint

    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    if is_registered(model):
        name, version = get_model_name_and_version(client, model)
        run_id = client.get_model_version(name, version).run_id
        if run_id:
            client.log_artifact(run_id, str(page), EXPLAIN_ARTIFACT_DIR)
            return run_id
    params = {"model": model, "prompt": prompt[:500]}
    lineage = {"checkpoint": model_fingerprint(folder)}
    with tracked_run(EXPLAIN_EXPERIMENT, f"explain {model}", params=params, lineage=lineage) as run:
        client.log_artifact(run.info.run_id, str(page), EXPLAIN_ARTIFACT_DIR)
        return run.info.run_id


@app.command()
def tour(
    steps: Annotated[int, typer.Option(min=0, help="Optimizer steps on the tour's text.")] = 300,
    vocab_size: Annotated[int, typer.Option(min=257, help="BPE vocabulary size.")] = 512,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and sampling.")] = 0,
) -> None:
    """A one-minute offline tour: learn a BPE, fit a tiny GPT-2, watch it predict."""
    console = make_console()
    from model import SamplingConfig, load_model, stream
    from model.tokenizer import load_tokenizer
    from pipelines.tour import TourConfig, tour_flow

    config = TourConfig(steps=steps, vocab_size=vocab_size, seed=seed)
    result = tour_flow(config)

    console.rule("gpt2lab tour")
    console.print(f"tokenizer ({config.vocab_size} tokens): {result.tokenizer_dir}")
    console.print(f"model ({result.n_parameters:,} parameters): {result.model_dir}")
    if result.first_loss is not None:
        console.print(
            f"training loss over {config.steps} steps: "
            f"{result.first_loss:.2f} -> {result.last_loss:.2f}"
        )
    for prompt, sample in zip(config.prompts, result.samples, strict=True):
        console.print(Text(prompt, style="bold"), Text(sample), sep="")

    tok = load_tokenizer(result.model_dir)
    net = load_model(result.model_dir)
    console.rule("next-token prediction, step by step")
    events = stream(
        net,
        [tok.encode(config.prompts[0])],
        SamplingConfig(max_new_tokens=8, temperature=0),
        eot_token=tok.eot_token,
        alternatives=5,
    )
    _print_with_probabilities(events, tok, config.prompts[0])
    console.print(
        f"MLflow run {result.mlflow_run_id} in experiment 'tour'; try:\n"
        f"  gpt2lab generate --model {result.model_dir} --prompt 'The model' --show-probs\n"
        f"  gpt2lab tokenize --tokenizer {result.model_dir} 'Byte pair encoding'"
    )
