"""The verbs that run one stage each: `corpus`, `encode`, `train`, `finetune`, `evals list`
and `evaluate`. Their options set fields of the stage's flow config; `--config` reads the
rest from a TOML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from pipelines.cli.common import DeviceOption, app, fail, make_console, running_flows


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
    dask_address: Annotated[
        str | None,
        typer.Option(help="Run the shards on the Dask cluster at this scheduler address."),
    ] = None,
    shared: Annotated[
        str | None,
        typer.Option(help="Folder or fsspec URL for the shards, reachable by every worker."),
    ] = None,
    shards: Annotated[int | None, typer.Option(help="Shards to cut the links into.")] = None,
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
    from pipelines.corpus import CorpusConfig, empty_corpus_note, run_corpus

    overrides = {
        "links": links,
        "out": out,
        "batch_size": batch_size,
        "runner": runner,
        "dask_address": dask_address,
        "shared": shared,
        "shards": shards,
    }
    if allow_network:
        overrides["fetch"] = {"allowed_networks": allow_network}
    try:
        settings = load_config(CorpusConfig, config, overrides)
        missing = [str(p) for p in settings.links if not p.is_file()]
        if missing:
            raise ValueError(f"link input not found: {missing[0]}")
        if settings.dask_address:
            _print_dask_dashboard(settings.dask_address)
        with running_flows():
            result = run_corpus(settings)
    except (ValueError, RuntimeError) as err:  # RuntimeError: a run that cannot go on
        raise fail(err) from None
    console = make_console()
    console.print(f"{result.documents:,} documents -> {result.dataset}")
    if note := empty_corpus_note(result.counts):
        make_console(stderr=True).print(f"[bold yellow]warning:[/] {note}", highlight=False)
    console.print(f"manifest: {result.manifest}  fingerprint: {result.fingerprint[:16]}")
    console.print(f"MLflow run {result.mlflow_run_id} in experiment 'corpus'")


def _print_dask_dashboard(address: str) -> None:
    """At the start, for watching the run; a wrong address fails here, in one line."""
    from pipelines.dask_cluster import dask_dashboard

    dashboard = dask_dashboard(address)
    make_console().print(f"Dask dashboard: {dashboard or 'none served'}")


@app.command()
def encode(
    corpus: Annotated[
        Path, typer.Option("--corpus", help="Corpus folder (from `corpus`) or saved dataset.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Tokens folder to write or finish.")],
    tokenizer: Annotated[
        str | None, typer.Option(help="Tokenizer folder or hub id (default: gpt2).")
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
    dask_address: Annotated[
        str | None,
        typer.Option(help="Encode the parts on the Dask cluster at this scheduler address."),
    ] = None,
) -> None:
    """Corpus -> train/val token shards for training (resumable)."""
    from pipelines.config_files import load_config
    from pipelines.encode import EncodeConfig, run_encode

    if tokenizer is not None and train_tokenizer:
        raise fail(ValueError("give --tokenizer or --train-tokenizer, not both"))
    overrides = {
        "corpus": corpus,
        "out": out,
        "tokenizer": tokenizer,
        "vocab_size": vocab_size,
        "train_tokenizer": train_tokenizer or None,
        "val_fraction": val_fraction,
        "dtype": dtype,
        "threads": threads,
        "dask_address": dask_address,
    }
    try:
        settings = load_config(EncodeConfig, config, overrides)
        if settings.dask_address:
            _print_dask_dashboard(settings.dask_address)
        from pipelines.run_lock import folder_lock

        # The folder first: a second encode into it refuses at once, before starting
        # anything (run_encode takes the same lock again, which is allowed).
        with folder_lock(settings.out), running_flows():
            result = run_encode(settings)
    except ValueError as err:
        raise fail(err) from None
    console = make_console()
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
        with running_flows():
            result = run_train(settings)
    except ValueError as err:
        raise fail(err) from None
    console = make_console()
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
        str,
        typer.Option(
            "--init-from",
            help="Checkpoint folder, Hugging Face folder, hub id, or models:/NAME@ALIAS "
            "or models:/NAME/VERSION (a registered model).",
        ),
    ],
    data: Annotated[
        Path, typer.Option(help="Tokens folder, or a .txt / .jsonl file encoded on the fly.")
    ],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="How to read a data file: text, or persona-chat (PERSONA-CHAT dialogues).",
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML file.")] = None,
    name: Annotated[str | None, typer.Option(help="Run name (and run folder name).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder.")] = None,
) -> None:
    """Fine-tune a pretrained model on a smaller corpus (resumable)."""
    from pipelines.model_refs import resolve_model

    try:
        resolve_model(init_from)  # an unknown models:/ reference: one line, before the flow
    except ValueError as err:
        raise fail(err) from None
    overrides = {
        "init_from": init_from,
        "tokens": data,
        "format": format,
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

    tasks = all_tasks()
    # Names are typed into --tasks: never cut or wrapped; the description wraps instead.
    name_column = Column("task", no_wrap=True, min_width=max(map(len, tasks), default=4))
    table = Table(name_column, "version", "kind", "description", "GPT-2 paper (by size)")
    for name, eval_task in tasks.items():
        paper = "; ".join(
            f"{metric} " + ", ".join(f"{v:g} ({size})" for size, v in figure.by_size.items())
            for metric, figure in list(eval_task.paper.items())[:2]
        )
        table.add_row(name, str(eval_task.version), eval_task.kind, eval_task.description, paper)
    make_console().print(table)


@app.command()
def evaluate(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Checkpoint, HF folder, hub id, or models:/NAME@ALIAS or models:/NAME/VERSION.",
        ),
    ],
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
    baseline: Annotated[
        str | None,
        typer.Option(help="Also score this model on the same rows: paired differences."),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(help="Perplexity tasks: tokens between windows (default: the context)."),
    ] = None,
    corpus: Annotated[
        Path | None,
        typer.Option(help="Corpus folder (from `corpus`): log each task's 8-gram overlap with it."),
    ] = None,
    device: DeviceOption = "auto",
) -> None:
    """Run eval tasks on a model; results with 95% intervals beside the GPT-2 paper's figure
    for the nearest model size, in MLflow."""
    from model.loading import checkpoint_folder
    from pipelines.config_files import load_config
    from pipelines.evaluate import EvaluateConfig, run_evaluate
    from pipelines.model_refs import resolve_device, resolve_model
    from tasks.evals.registry import get_tasks

    try:
        names = [name.strip() for name in tasks.split(",") if name.strip()]
        overrides = {
            "model": model,
            "tasks": names,
            "limit": limit,
            "tokenizer": tokenizer,
            "use_cache": not no_cache,
            "source": source,
            "device": device,
            "baseline": baseline,
            "stride": stride,
            "corpus": corpus,
        }
        config = load_config(EvaluateConfig, None, overrides)
        get_tasks(config.tasks)  # an unknown name: one line listing the known ones
        resolve_device(config.device)  # no GPU for --device cuda: one line, before any work
        # An unknown models:/ reference or a missing folder: one line, before the flow starts.
        for reference in filter(None, (config.model, config.baseline)):
            checkpoint_folder(resolve_model(reference))
        with running_flows():
            result = run_evaluate(config)
    except ValueError as err:
        raise fail(err) from None
    console = make_console()
    _print_results(console, result.results, baseline)
    console.print(f"results: {result.results_file}")
    console.print(f"MLflow run {result.mlflow_run_id} in experiment 'evaluate'")


def _print_results(console, records: list[dict], baseline: str | None) -> None:
    """The scores with n and intervals beside the paper's figure (its size said), and the
    paired differences when a baseline was scored too (the rows of results.md)."""
    from pipelines.evaluate import paired_rows, same_note, score_rows, size_note

    table = Table("task", "metric", "this model (95% interval)", "n", "GPT-2 paper")
    for row in score_rows(records):
        table.add_row(*row[:5])  # the notes are in results.md and MLflow
    console.print(table)
    if sizes := size_note(records):
        console.print(sizes)
    rows_scored = sorted({record["rows"] for record in records})
    console.print(f"rows scored per task: {', '.join(str(n) for n in rows_scored)}")
    if baseline:
        paired = Table("task", "metric", "baseline", "this model", "difference (95%)", "p")
        shown, same = paired_rows(records)
        for row in shown:
            paired.add_row(*row)
        console.print(f"Paired with {baseline} on the same rows:")
        console.print(paired)
        if same:
            console.print(same_note(same))


# --- preferences ------------------------------------------------------------------------
