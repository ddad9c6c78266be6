"""The `gpt2lab` command: one verb per stage, each a thin layer over the code it runs.

Heavy libraries (torch, Prefect, MLflow) are imported inside the commands, so that
`gpt2lab --help` answers at once and the environment (workspace, telemetry off) is set
before Prefect or MLflow read it.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipelines.workspace import configure_environment

app = typer.Typer(
    name="gpt2lab",
    help="The GPT-2 recipe end to end: corpus, BPE, training, evaluation, preferences.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console(stderr: bool = False) -> Console:
    # Made per call, so that the terminal width (COLUMNS) is read when a command runs.
    return Console(stderr=stderr)


def _prob(p: float) -> str:
    """Probabilities span many orders of magnitude: 0.412, 0.003, 2.1e-05."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


@app.callback()
def _setup() -> None:
    configure_environment()


def _fail(err: Exception) -> typer.Exit:
    """Print a user-fixable error as one line and exit with status 2."""
    _console(stderr=True).print(
        f"[bold red]error:[/] {err}", markup=True, highlight=False, soft_wrap=True
    )
    return typer.Exit(code=2)


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
    console = _console()
    from model.errors import Gpt2labError
    from model.tokenizer import load_tokenizer

    try:
        tok = load_tokenizer(tokenizer)
    except Gpt2labError as err:
        raise _fail(err) from None
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
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="Checkpoint folder (ours or Hugging Face) or hub id."),
    ],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text to continue.")],
    tokenizer: Annotated[
        str | None,
        typer.Option(help="Tokenizer folder or hub id (default: the model's folder or id)."),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 50,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 1.0,
    top_k: Annotated[int | None, typer.Option(min=1)] = None,
    top_p: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop at this text (repeatable).")] = None,
    show_probs: Annotated[
        bool, typer.Option(help="Show each token's probability and the top-5 alternatives.")
    ] = False,
) -> None:
    """Continue a prompt, streaming tokens as they are sampled."""
    from model import SamplingConfig, load_model, stream
    from model.errors import Gpt2labError
    from model.tokenizer import load_tokenizer

    try:
        tok = load_tokenizer(tokenizer or model)
        net = load_model(model)
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
        raise _fail(err) from None


def _print_streaming(events, tok, prompt: str, stop: list[str]) -> None:
    """Print text as it comes. A token can end in the middle of a UTF-8 character, so
    bytes go through an incremental decoder that holds back incomplete characters."""
    from model.sampling import cut_at_stop

    console = _console()
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
    console = _console()
    console.print(Text(f"prompt: {prompt}", style="bold"))
    table = Table("step", "chosen", "p", "top-5 alternatives")
    for step, event in enumerate(events):
        chosen = _token_label(tok, event.token)
        alts = "  ".join(f"{_token_label(tok, t)} {_prob(p)}" for t, p in event.alternatives)
        table.add_row(str(step), chosen, _prob(event.probability), alts)
    console.print(table)


@app.command()
def corpus(
    links: Annotated[
        list[Path], typer.Option("--links", "-l", help="Link dump or URL list (repeatable).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML file with the flow's settings.")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Links per task.")] = None,
    runner: Annotated[str | None, typer.Option(help="'default' or 'dask'.")] = None,
    allow_network: Annotated[
        list[str] | None,
        typer.Option(
            help="Allow fetching from this loopback/private network, e.g. 127.0.0.1/32 for a "
            "local mini-web (repeatable). Everything else private stays refused."
        ),
    ] = None,
) -> None:
    """Links -> fetched, extracted, filtered, deduplicated dataset (resumable)."""
    from pipelines.config_files import load_config
    from pipelines.corpus import CorpusConfig, run_corpus

    overrides = {"links": links, "out": out, "batch_size": batch_size, "runner": runner}
    if allow_network:
        overrides["fetch"] = {"allowed_networks": allow_network}
    try:
        settings = load_config(CorpusConfig, config, overrides)
        missing = [str(p) for p in settings.links if not p.is_file()]
        if missing:
            raise ValueError(f"link input not found: {missing[0]}")
        result = run_corpus(settings)
    except ValueError as err:
        raise _fail(err) from None
    console = _console()
    console.print(f"{result.documents:,} documents -> {result.dataset}")
    console.print(f"manifest: {result.manifest}  fingerprint: {result.fingerprint[:16]}")
    console.print(f"MLflow run {result.mlflow_run_id} in experiment 'corpus'")


@app.command()
def encode(
    corpus: Annotated[
        Path, typer.Option("--corpus", help="Corpus folder (from `corpus`) or saved dataset.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Tokens folder to write or finish.")],
    tokenizer: Annotated[
        str | None, typer.Option(help="Tokenizer folder or hub id [default: gpt2].")
    ] = None,
    train_tokenizer: Annotated[
        bool, typer.Option("--train-tokenizer", help="Learn a new BPE from the corpus.")
    ] = False,
    vocab_size: Annotated[
        int | None, typer.Option(help="Vocabulary of the BPE to learn (--train-tokenizer).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML file with the flow's settings.")
    ] = None,
    val_fraction: Annotated[
        float | None, typer.Option(help="Share of documents for validation.")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, uint16 or uint32.")] = None,
    threads: Annotated[int | None, typer.Option(help="Encoding threads (0 = all cores).")] = None,
) -> None:
    """Corpus -> train/val token shards for training (resumable)."""
    from pipelines.config_files import load_config
    from pipelines.encode import EncodeConfig, run_encode

    if tokenizer is not None and train_tokenizer:
        raise _fail(ValueError("give --tokenizer or --train-tokenizer, not both"))
    overrides = {
        "corpus": corpus,
        "out": out,
        "tokenizer": tokenizer,
        "vocab_size": vocab_size,
        "train_tokenizer": train_tokenizer or None,
        "val_fraction": val_fraction,
        "dtype": dtype,
        "threads": threads,
    }
    try:
        settings = load_config(EncodeConfig, config, overrides)
        result = run_encode(settings)
    except ValueError as err:
        raise _fail(err) from None
    console = _console()
    tokens = ", ".join(f"{split} {n:,}" for split, n in result.tokens.items())
    console.print(f"tokens: {tokens} in {result.shards} shards -> {result.tokens_dir}")
    console.print(f"fingerprint: {result.fingerprint[:16]}")
    console.print(f"MLflow run {result.mlflow_run_id} in experiment 'encode'")


def _run_training(config: Path | None, overrides: dict) -> None:
    from pipelines.config_files import load_config
    from pipelines.presets import preset_path
    from pipelines.train import TrainConfig, run_train

    try:
        settings = load_config(TrainConfig, preset_path(config) if config else None, overrides)
        result = run_train(settings)
    except ValueError as err:
        raise _fail(err) from None
    console = _console()
    loss = f"{result.val_loss:.3f}" if result.val_loss is not None else "not measured"
    console.print(f"{result.steps} steps; validation loss {loss}; checkpoint {result.checkpoint}")
    if result.model_version:
        console.print(f"registered model version {result.model_version}")
    console.print(f"MLflow run {result.mlflow_run_id} in experiment 'train'")


@app.command()
def train(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file, or a preset: cpu-tiny, gpt2-124m-gpu."),
    ] = None,
    tokens: Annotated[Path | None, typer.Option(help="Tokens folder from `encode`.")] = None,
    name: Annotated[str | None, typer.Option(help="Run name (and run folder name).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder.")] = None,
) -> None:
    """Pretrain GPT-2 on token shards (resumes a run folder's newest checkpoint)."""
    overrides = {
        "tokens": tokens,
        "name": name,
        "max_steps": max_steps,
        "device": device,
        "out": out,
    }
    _run_training(config, overrides)


@app.command()
def finetune(
    init_from: Annotated[
        str, typer.Option("--init-from", help="Checkpoint folder, Hugging Face folder or hub id.")
    ],
    data: Annotated[
        Path, typer.Option(help="Tokens folder, or a .txt / .jsonl file encoded on the fly.")
    ],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML file.")] = None,
    name: Annotated[str | None, typer.Option(help="Run name (and run folder name).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder.")] = None,
) -> None:
    """Fine-tune a pretrained model on a smaller corpus (resumable)."""
    overrides = {
        "init_from": init_from,
        "tokens": data,
        "name": name,
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "device": device,
        "out": out,
    }
    _run_training(config, overrides)


evals_app = typer.Typer(help="Evaluation tasks.", no_args_is_help=True)
app.add_typer(evals_app, name="evals")


@evals_app.command("list")
def evals_list() -> None:
    """The registered eval tasks: one file each in tasks/evals/builtin/, or in a folder
    named by GPT2LAB_EVAL_TASKS."""
    from tasks.evals.registry import all_tasks

    table = Table("task", "version", "kind", "description", "GPT-2 paper (117M)")
    for name, eval_task in all_tasks().items():
        paper = ", ".join(f"{k} {v:g}" for k, v in list(eval_task.paper.items())[:3])
        table.add_row(name, str(eval_task.version), eval_task.kind, eval_task.description, paper)
    _console().print(table)


@app.command()
def evaluate(
    model: Annotated[str, typer.Option("--model", "-m", help="Checkpoint, HF folder or hub id.")],
    tasks: Annotated[str, typer.Option(help="Comma-separated task names (gpt2lab evals list).")],
    limit: Annotated[int | None, typer.Option(help="First N rows of each task.")] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Tokenizer, when the model folder has none.")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Generate everything again.")
    ] = False,
    source: Annotated[
        str, typer.Option(help="local: shipped samples; hub: the full datasets (online).")
    ] = "local",
) -> None:
    """Run eval tasks on a model; results beside the GPT-2 paper's, in MLflow."""
    from pipelines.evaluate import EvaluateConfig, run_evaluate
    from tasks.evals.registry import get_tasks

    try:
        names = [name.strip() for name in tasks.split(",") if name.strip()]
        config = EvaluateConfig(
            model=model,
            tasks=names,
            limit=limit,
            tokenizer=tokenizer,
            use_cache=not no_cache,
            source=source,
        )
        get_tasks(config.tasks)  # an unknown name: one line listing the known ones
        result = run_evaluate(config)
    except ValueError as err:
        raise _fail(err) from None
    table = Table("task", "metric", "this model", "GPT-2 paper")
    for entry in result.results:
        for metric, value in entry["scores"].items():
            paper = entry["paper"].get(metric)
            table.add_row(
                entry["task"], metric, f"{value:.4g}", "" if paper is None else f"{paper:.4g}"
            )
    console = _console()
    console.print(table)
    console.print(f"results: {result.results_file}")
    console.print(f"MLflow run {result.mlflow_run_id} in experiment 'evaluate'")


# --- preferences ------------------------------------------------------------------------

ModelsArg = Annotated[
    list[str], typer.Argument(help="Two or more models: checkpoint folders or hub ids.")
]
ModelsFlag = Annotated[
    bool, typer.Option("--models", help="Optional marker before the models, for readability.")
]
PromptsOpt = Annotated[
    Path | None,
    typer.Option(help="A file (a prompt per line, or .jsonl) or a saved dataset (default: demo)."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file with more PreferencesConfig fields."),
]
DatabaseOpt = Annotated[
    str | None, typer.Option(help="SQLAlchemy URL (default: workspace/preferences.db).")
]


def _preferences_config(config: Path | None, overrides: dict):
    from pipelines.config_files import load_config
    from pipelines.preferences import PreferencesConfig

    return load_config(PreferencesConfig, config, overrides)


@app.command()
def compare(
    models: ModelsArg,
    models_flag: ModelsFlag = False,
    prompts: PromptsOpt = None,
    n: Annotated[int | None, typer.Option("--n", help="Prompts to use (the first n).")] = None,
    batch: Annotated[
        str | None, typer.Option(help="Batch name (default: from the config).")
    ] = None,
    annotators: Annotated[int | None, typer.Option(help="Invite links to make.")] = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Make a comparison batch (sample every model on every prompt) and print invite links.

    Example: gpt2lab compare --models base/ tuned/ --prompts prompts.txt --n 200
    """
    from pipelines.preferences import make_batch

    del models_flag  # only there so that `--models A B` reads naturally
    overrides = {
        "models": models,
        "prompts": prompts,
        "n": n,
        "batch": batch,
        "annotators": annotators,
        "database": database,
    }
    try:
        settings = _preferences_config(config, overrides)
        ready = make_batch.fn(settings)
    except ValueError as err:
        raise _fail(err) from None
    console = _console()
    if not ready.made_now:
        console.print(f"batch {ready.name} already exists: reusing it (no new invites)")
        return
    if ready.invites_file is None:  # --annotators 0
        console.print(
            f"batch {ready.name} made, with no invite links: invite annotators on "
            "the admin page (gpt2lab serve-comparisons, then /admin)"
        )
        return
    console.print(f"batch {ready.name} made", end="; ")
    _print_invites(console, ready.invites_file)


def _print_invites(console: Console, invites_file: Path) -> None:
    console.print("invite links (each is a login, keep them private):")
    for line in invites_file.read_text().splitlines():
        console.print("  " + line.replace("\t", "  "), highlight=False, soft_wrap=True)
    console.print(f"saved in {invites_file}; start the page with: gpt2lab serve-comparisons")


@app.command("serve-comparisons")
def serve_comparisons(
    database: DatabaseOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
) -> None:
    """Run the comparison page (annotators vote at /join/<token>; admins at /admin)."""
    from pipelines.comparison_server import (
        ADMIN_TOKEN_ENV,
        admin_token,
        default_database_url,
        serve,
    )
    from pipelines.workspace import workspace_dir

    console = _console()
    admin_token()  # made on first use, so that its file exists to point at
    where = (
        "$" + ADMIN_TOKEN_ENV
        if os.environ.get(ADMIN_TOKEN_ENV)
        else str(workspace_dir() / "preferences-admin-token")
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[bold yellow]warning:[/] binding {host}: put TLS in front (a proxy)")
    console.print(f"comparison page on http://{host}:{port}  (admin: /admin, token in {where})")
    serve(database or default_database_url(), host, port)


preferences_app = typer.Typer(help="Preference batches: collect and report.", no_args_is_help=True)
app.add_typer(preferences_app, name="preferences")


@preferences_app.command("run")
def preferences_run(
    models: ModelsArg,
    models_flag: ModelsFlag = False,
    prompts: PromptsOpt = None,
    n: Annotated[int | None, typer.Option("--n", help="Prompts to use (the first n).")] = None,
    judge: Annotated[
        str | None, typer.Option(help="people (the web page) or simulated (a scripted judge).")
    ] = None,
    target_votes: Annotated[int | None, typer.Option(help="Stop at this many comparisons.")] = None,
    deadline_hours: Annotated[float | None, typer.Option(help="Or after this long.")] = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The whole preferences flow: batch, page (or simulated judge), wait, analyse, log."""
    from pipelines.preferences import preferences_flow

    del models_flag
    overrides = {
        "models": models,
        "prompts": prompts,
        "n": n,
        "judge": judge,
        "target_votes": target_votes,
        "deadline_hours": deadline_hours,
        "database": database,
    }
    try:
        result = preferences_flow(_preferences_config(config, overrides))
    except ValueError as err:
        raise _fail(err) from None
    _print_preferences(result)


@preferences_app.command("report")
def preferences_report(
    batch: Annotated[str, typer.Argument(help="The batch's name.")],
    judge: Annotated[str, typer.Option(help="people or simulated (never mixed).")] = "people",
    database: DatabaseOpt = None,
) -> None:
    """Analyse a batch's votes as they stand: win rates, checks, MLflow, dataset export."""
    from pipelines.preferences import preferences_report_flow

    if judge not in ("people", "simulated"):
        raise _fail(ValueError(f"--judge must be people or simulated, not {judge!r}"))
    try:
        result = preferences_report_flow(batch, judge, database)
    except ValueError as err:
        raise _fail(err) from None
    _print_preferences(result)


def _print_preferences(result) -> None:
    console = _console()
    console.print(Text((result.export / "summary.md").read_text()))
    console.print(f"pairs (prompt/chosen/rejected) and votes: {result.export}")
    console.print(f"MLflow run {result.mlflow_run_id} in experiment 'preferences'")


@app.command()
def tune(
    from_batch: Annotated[
        str, typer.Option("--from-batch", help="The comparison batch whose votes to learn from.")
    ],
    allow_simulated: Annotated[
        bool,
        typer.Option(help="Train on the simulated judge's votes when no person has voted."),
    ] = False,
    start_model: Annotated[
        str | None, typer.Option(help="The model to tune (default: the batch's first model).")
    ] = None,
    compare_with: Annotated[
        str | None,
        typer.Option("--compare", help="Who judges tuned vs start: people or simulated."),
    ] = None,
    database: DatabaseOpt = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file of TuningConfig fields ([reward], [dpo])."),
    ] = None,
) -> None:
    """Train a reward model and DPO on a batch's votes, then open tuned vs start for judging.

    Example: gpt2lab tune --from-batch base-vs-finetuned-1a2b3c4d
    """
    from pipelines.config_files import load_config
    from pipelines.tuning import TuningConfig, check_votes, preference_tuning_flow

    overrides = {
        "batch": from_batch,
        "allow_simulated": allow_simulated or None,
        "start_model": start_model,
        "compare": compare_with,
        "database": database,
    }
    try:
        settings = load_config(TuningConfig, config, overrides)
        check_votes(settings)  # bad votes: one line here, not a failed flow run's traceback
        result = preference_tuning_flow(settings)
    except ValueError as err:
        raise _fail(err) from None
    console = _console()
    console.print(Text((result.folder / "summary.md").read_text()))
    console.print(f"tuned model: {result.policy.path}")
    console.print(f"reward model: {result.reward_model.path}")
    if result.invites_file is not None:
        console.print(f"new batch {result.new_batch}, tuned vs start", end="; ")
        _print_invites(console, result.invites_file)
    console.print(f"MLflow run {result.mlflow_run_id} in experiment 'preference-tuning'")


@app.command()
def demo(
    name: Annotated[str, typer.Option(help="Run name (and folder).")] = "demo",
) -> None:
    """The whole chain offline, in a few minutes: a local mini-web -> corpus -> BPE ->
    pretrain -> fine-tune -> evaluate -> preferences (simulated judge) -> report."""
    import time

    from pipelines.end_to_end import EndToEndConfig, end_to_end_flow

    started = time.perf_counter()
    try:
        result = end_to_end_flow(EndToEndConfig(name=name))
    except (ValueError, RuntimeError) as err:
        raise _fail(err) from None
    console = _console()
    console.rule(f"gpt2lab demo: {time.perf_counter() - started:.0f} s")
    _print_end_to_end(result)
    checkpoint = result.outputs["finetune"]["checkpoint"]
    console.print(
        f"Open {result.report} in a browser, or run `gpt2lab ui` and look at the "
        "'end-to-end' experiment. Sample the fine-tuned model with:\n"
        f"  gpt2lab generate --model {checkpoint} --prompt 'Day 3. Wind'"
    )


@app.command()
def tour(
    steps: Annotated[int, typer.Option(min=0, help="Optimizer steps on the tour's text.")] = 300,
    vocab_size: Annotated[int, typer.Option(min=257, help="BPE vocabulary size.")] = 512,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and sampling.")] = 0,
) -> None:
    """A one-minute offline tour: learn a BPE, fit a tiny GPT-2, watch it predict."""
    console = _console()
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


@app.command("run")
def run_end_to_end(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML file of EndToEndConfig fields.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run name (and folder).")] = None,
) -> None:
    """The end-to-end flow: corpus, encode, pretrain, finetune, evaluate, preferences, report.

    Stages whose settings and inputs are unchanged since they last finished are skipped.
    """
    from pipelines.config_files import load_config
    from pipelines.end_to_end import EndToEndConfig, end_to_end_flow

    try:
        settings = load_config(EndToEndConfig, config, {"name": name})
        result = end_to_end_flow(settings)
    except (ValueError, RuntimeError) as err:
        raise _fail(err) from None
    _print_end_to_end(result)


def _print_end_to_end(result) -> None:
    console = _console()
    for stage, status in result.stages.items():
        console.print(f"  {stage:<12} {status}")
    console.print(f"report: {result.report}")
    console.print(
        f"MLflow run {result.mlflow_run_id} in experiment 'end-to-end'; see it with: gpt2lab ui"
    )


@app.command()
def report(
    run_ids: Annotated[list[str], typer.Argument(help="End-to-end MLflow run id(s).")],
    out: Annotated[Path | None, typer.Option(help="Folder (default: workspace/reports/).")] = None,
) -> None:
    """Render an end-to-end run's report from MLflow, or several runs side by side."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from model.atomic_files import write_file_atomically
    from pipelines.workspace import mlflow_tracking_uri, workspace_dir
    from reports.run_report import compare, write_report

    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    folder = out or workspace_dir() / "reports" / "-".join(r[:8] for r in run_ids)
    try:
        if len(run_ids) == 1:
            html, _ = write_report(run_ids[0], folder, client)
        else:
            page, markdown = compare(run_ids, client)
            folder.mkdir(parents=True, exist_ok=True)
            html = folder / "comparison.html"
            write_file_atomically(html, page)
            write_file_atomically(folder / "comparison.md", markdown)
    except ValueError as err:  # a run that is not there, named with the store
        raise _fail(err) from None
    except MlflowException as err:
        raise _fail(ValueError(f"MLflow: {err.message}")) from None
    _console().print(f"report: {html} (and its .md beside it)")


@app.command()
def schedule(
    cron: Annotated[str | None, typer.Option(help='Cron schedule, e.g. "0 3 * * *".')] = None,
    interval: Annotated[float | None, typer.Option(help="Or: seconds between runs.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML file of EndToEndConfig fields.")
    ] = None,
    deployment: Annotated[str, typer.Option(help="Deployment name.")] = "scheduled",
    prefect_port: Annotated[int, typer.Option(help="Port of the Prefect server.")] = 4200,
) -> None:
    """Run the end-to-end flow on a schedule: a Prefect server on 127.0.0.1 plans the runs,
    this process runs them (Ctrl-C stops it)."""
    from pipelines.config_files import load_config
    from pipelines.end_to_end import EndToEndConfig
    from pipelines.schedule import serve_end_to_end

    try:
        settings = load_config(EndToEndConfig, config, {})
        serve_end_to_end(
            settings, deployment=deployment, cron=cron, interval=interval, port=prefect_port
        )
    except (ValueError, RuntimeError) as err:
        raise _fail(err) from None
    except KeyboardInterrupt:
        pass


@app.command()
def ui(
    mlflow_port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    prefect_port: Annotated[int, typer.Option(help="Port of the Prefect server.")] = 4200,
) -> None:
    """Start the MLflow UI (on the workspace's store) and a Prefect server, on 127.0.0.1."""
    import time

    from pipelines.ui import start_ui, stop_ui

    console = _console()
    try:
        services = start_ui(mlflow_port=mlflow_port, prefect_port=prefect_port)
    except RuntimeError as err:
        raise _fail(err) from None
    for service in services:
        note = "" if service.process else "  (already running)"
        console.print(f"{service.name}: {service.url}{note}")
    prefect_api = f"{services[-1].url}/api"
    console.print(f"Flows use this Prefect server with PREFECT_API_URL={prefect_api}.")
    console.print("Ctrl-C stops what was started here.")
    try:
        while all(s.process is None or s.process.poll() is None for s in services):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop_ui(services)


def main() -> None:  # pragma: no cover - console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
