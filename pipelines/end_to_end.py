"""The end-to-end flow: links -> corpus -> encode -> pretrain -> fine-tune -> evaluate ->
preferences, one parent flow with each stage the flow of the same name.

    corpus       links (or the bundled mini-web) -> a clean, deduplicated dataset
    encode       a BPE trained on that corpus -> token shards
    pretrain     a small GPT-2 from scratch on the shards
    finetune     the pretrained model on a style set (a text file)
    evaluate     the fine-tuned model on the eval tasks' local data, and their overlap
                 with the corpus (8-grams, as the GPT-2 paper's section 4)
    preferences  pretrained vs fine-tuned, judged (by default) by the simulated judge

MLflow: one parent run in the `end-to-end` experiment, named after the run, and under it
the runs each stage's flow makes, named after the stage and tagged `gpt2lab.stage` (see
`tracking.stage_runs`). The parent carries the summary: each training stage's final
validation loss, each eval task's headline (first) score, the win rate, and a description.
The fine-tuned model is registered as `gpt2lab-<name>` (alias `best` as the train flow
sets it; `[finetune] register_as = ""` turns it off). A stage whose settings
and inputs are unchanged since it last finished is skipped: it gets a child run tagged
`gpt2lab.cached` that points at the run that did the work (`gpt2lab.cached_from`). A
stage that fails stops the flow with its name; a rerun skips what finished and goes on
from there.
"""

# No `from __future__ import annotations` here: a scheduled run validates the flow's
# parameters from its type hints, and those must be real classes, not strings.
import math
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipelines import interrupts
from pipelines.corpus import CorpusConfig, run_corpus
from pipelines.encode import EncodeConfig, encode_on_its_runner
from pipelines.evaluate import EvaluateConfig, evaluate_flow
from pipelines.failure_hooks import notify_failure
from pipelines.interrupts import RunInterrupted, where_stopped
from pipelines.preferences import PreferencesConfig, preferences_flow
from pipelines.run_lock import folder_lock
from pipelines.stage_cache import StageCache, StageRecord, stage_key
from pipelines.tracking import (
    describe,
    lineage_tags,
    log_dataset,
    log_metrics_batch,
    stage_runs,
    tracked_run,
)
from pipelines.train import TrainConfig, train_flow
from pipelines.workspace import workspace_dir
from reports.mlflow_names import (
    CACHED_FROM_TAG,
    CACHED_TAG,
    DESCRIPTION_TAG,
    END_TO_END_EXPERIMENT,
    END_TO_END_KIND,
    KIND_TAG,
    STAGE_TAG,
    STAGES,
    TRAINING_STAGES,
    WIN_RATE_PREFIX,
    eval_summary_metric,
    final_val_loss,
)
from tasks.encode.token_shards import read_meta
from tasks.fingerprint import fingerprint_path
from tasks.train.style_set import style_set_text

_PLACEHOLDER = Path("/placeholder")  # stands in for paths the flow fills in, when validating


# Each stage's section starts from these; a config file or option changes single fields
# (a TOML `[pretrain]` table with `max_steps = 1000` keeps the rest). Sized for a laptop CPU.
SECTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "corpus": {},
    # val_fraction: a corpus of a hundred pages needs a larger share than GPT-2's 0.5%.
    "encode": {"train_tokenizer": True, "vocab_size": 2048, "val_fraction": 0.1},
    "pretrain": {
        "model": "tiny",
        "context": 128,
        "max_steps": 300,
        "eval_interval": 100,
        "checkpoint_interval": 100,
        "device": "cpu",
        "register_as": None,
    },
    # No register_as: the fine-tuned model is registered as gpt2lab-<run name>.
    "finetune": {
        "context": 128,
        "max_steps": 100,
        "learning_rate": 1e-3,
        "eval_interval": 50,
        "checkpoint_interval": 50,
        "device": "cpu",
    },
    "evaluate": {"tasks": ["wikitext2-perplexity", "lambada", "wmt14-en-fr"], "limit": 8},
    "preferences": {
        "judge": "simulated",
        "n": 12,
        "max_new_tokens": 32,
        # A tiny model often ends at once; a reader needs a few words to judge.
        "min_new_tokens": 8,
        "annotators": 0,
    },
}


class EndToEndConfig(BaseModel):
    """One config for the whole chain: each stage's section holds that stage's own config
    fields (see its flow), except the paths between stages, which this flow fills in."""

    name: str = Field("e2e", min_length=1, description="run name; its folder in the workspace")
    links: list[Path] = Field([], description="link dumps or URL lists; none: the mini-web")
    miniweb_articles: int = Field(120, ge=2, description="pages of the bundled mini-web")
    finetune_data: Path | None = Field(None, description="style set; none: the bundled one")
    corpus: dict[str, Any] = SECTION_DEFAULTS["corpus"]
    encode: dict[str, Any] = SECTION_DEFAULTS["encode"]
    pretrain: dict[str, Any] = SECTION_DEFAULTS["pretrain"]
    finetune: dict[str, Any] = SECTION_DEFAULTS["finetune"]
    evaluate: dict[str, Any] = SECTION_DEFAULTS["evaluate"]
    preferences: dict[str, Any] = SECTION_DEFAULTS["preferences"]

    @field_validator(*SECTION_DEFAULTS, mode="before")
    @classmethod
    def _on_top_of_defaults(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, dict):
            return {**SECTION_DEFAULTS[info.field_name], **value}
        return value

    @model_validator(mode="after")
    def _sections_are_valid(self) -> "EndToEndConfig":
        """Every section must make a valid config for its stage: checked now, not an hour in."""
        p = _PLACEHOLDER
        checks: dict[str, Callable[[], BaseModel]] = {
            "corpus": lambda: _corpus_config(self, [p], p),
            "encode": lambda: _encode_config(self, p, p),
            "pretrain": lambda: _train_config(self, "pretrain", p, None, p),
            "finetune": lambda: _train_config(self, "finetune", p, str(p), p),
            "evaluate": lambda: _evaluate_config(self, str(p)),
            "preferences": lambda: _preferences_config(self, [str(p), str(p / "b")]),
        }
        for section, check in checks.items():
            try:
                check()
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise ValueError(f"{section}.{where}: {first['msg']}") from None
        return self

    def run_dir(self) -> Path:
        return workspace_dir() / "end-to-end" / self.name


class EndToEndResult(BaseModel):
    run_dir: Path
    mlflow_run_id: str
    stages: dict[str, str]  # stage -> "ran" or "cached"
    outputs: dict[str, dict[str, Any]]
    report: Path  # report.html; report.md beside it


# ---------------------------------------------------------------------------------------
# Each stage's config, from its section plus the paths this flow fills in


def _corpus_config(config: EndToEndConfig, links: list[Path], out: Path) -> CorpusConfig:
    values = {"links": links, "out": out, **config.corpus}
    if not config.links:
        # The mini-web is our own server on 127.0.0.1: allow exactly that address, and
        # fetch it briskly. All its pages are on one host, and the politeness a crawler
        # owes other people's servers (one request a second per host) would make the
        # demo's corpus take two minutes.
        mini_web = {"allowed_networks": ["127.0.0.1/32"], "per_host_delay_s": 0.0}
        values["fetch"] = {**mini_web, "per_host_connections": 4, **values.get("fetch", {})}
    return CorpusConfig(**values)


def _encode_config(config: EndToEndConfig, corpus: Path, out: Path) -> EncodeConfig:
    return EncodeConfig(**{**config.encode, "corpus": corpus, "out": out})


def _train_config(
    config: EndToEndConfig, stage: str, tokens: Path, init_from: str | None, out: Path
) -> TrainConfig:
    section = config.pretrain if stage == "pretrain" else config.finetune
    values = {"name": f"{config.name}-{stage}", **section, "tokens": tokens, "out": out}
    if stage == "finetune":
        values.setdefault("register_as", registered_name(config))
    if init_from is not None:
        values["init_from"] = init_from
    return TrainConfig(**values)


def registered_name(config: EndToEndConfig) -> str:
    """The registered model an end-to-end run's fine-tuned model goes to by default."""
    return f"gpt2lab-{config.name}"


def _evaluate_config(
    config: EndToEndConfig, model: str, corpus: Path | None = None
) -> EvaluateConfig:
    out = config.run_dir() / "evaluate" / "results.json"
    # The run's own corpus: each task's 8-gram overlap with it sits beside its scores.
    return EvaluateConfig(**{"out": out, "corpus": corpus, **config.evaluate, "model": model})


def _preferences_config(
    config: EndToEndConfig, models: list[str], tokens: list[Path] | None = None
) -> PreferencesConfig:
    labels = {"labels": ["pretrained", "finetuned"]} if len(models) == 2 else {}
    # The simulated judge scores with bigram models of both models' training data, mixed
    # evenly: a reference that is neither compared model (scored by one of them, that one
    # would win every vote) and favours neither side's data.
    judge = {}
    if tokens and "reference_model" not in config.preferences:
        judge = {"reference_tokens": tokens}
    return PreferencesConfig(**{**labels, **judge, **config.preferences, "models": models})


# ---------------------------------------------------------------------------------------
# The flow


Work = Callable[[], tuple[str, dict[str, Any], list[Path]]]  # -> (run id, outputs, paths)


class _Stages:
    """Runs one stage at a time inside the parent run, or skips it when its record holds."""

    def __init__(self, config: EndToEndConfig, parent_run_id: str) -> None:
        self.config = config
        self.cache = StageCache(config.run_dir() / "stages")
        self.parent_run_id = parent_run_id
        self.status: dict[str, str] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()

    def _where(self, stage: str) -> str:
        """`stage 3/6 pretrain (41 s in)`: the run's overall progress, for the log."""
        position = f"{STAGES.index(stage) + 1}/{len(STAGES)}" if stage in STAGES else "?"
        return f"stage {position} {stage} ({time.monotonic() - self.started:.0f} s in)"

    def run(self, stage: str, settings: BaseModel, inputs: dict[str, str], work: Work, out: Path):
        """Do `work` for `stage` (writing into `out`), unless a record with the same key
        says it is done. Work left in `out` by an interrupted run with the same key is
        resumed; work made with another key (other settings or inputs) is cleared first."""
        logger = get_run_logger()
        key = stage_key(stage, settings, inputs)
        record = self.cache.get(stage, key)
        if record is not None:
            logger.info("%s: unchanged since run %s, skipped", self._where(stage), record.run_id)
            tags = {
                STAGE_TAG: stage,
                CACHED_TAG: "true",
                CACHED_FROM_TAG: record.run_id,
                DESCRIPTION_TAG: f"**{stage}**: unchanged since run `{record.run_id}`, "
                "whose results this run reuses.",
            }
            with tracked_run(
                END_TO_END_EXPERIMENT, stage, parent_run_id=self.parent_run_id, tags=tags
            ):
                pass
            self.status[stage] = "cached"
        else:
            logger.info("%s: running", self._where(stage))
            self.cache.forget(stage)  # a stale record must not outlive a failed rerun
            if self.cache.started_with(stage) != key and out.exists():
                logger.info("%s: clearing %s, made with other settings or inputs", stage, out)
                shutil.rmtree(out)
            self.cache.start(stage, key)
            interrupts.current_stage = stage  # for the line printed if it is stopped
            try:
                with stage_runs(END_TO_END_EXPERIMENT, self.parent_run_id, stage):
                    run_id, outputs, paths = work()
            except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: no later stage starts
                raise RunInterrupted(f"{where_stopped(stop)} of {stage}") from None
            except Exception as error:
                raise RuntimeError(f"stage {stage} failed: {error}") from error
            finally:
                interrupts.current_stage = None
            record = StageRecord(stage=stage, key=key, run_id=run_id, outputs=outputs, paths=paths)
            self.cache.put(record)
            self.status[stage] = "ran"
            logger.info("%s: done", self._where(stage))
        self.outputs[stage] = record.outputs
        return record.outputs


@flow(name="end-to-end", on_failure=[notify_failure])
def end_to_end_flow(config: EndToEndConfig) -> EndToEndResult:
    """corpus -> encode -> pretrain -> finetune -> evaluate -> preferences (see the module)."""
    # Two runs of one name in one workspace would write the same folders: the second
    # refuses at once, naming the first.
    with folder_lock(config.run_dir()):
        return _end_to_end(config)


def run_end_to_end(config: EndToEndConfig) -> EndToEndResult:
    """Run the flow (the CLI's entry point). The run folder is locked before the flow
    starts, so that a second run of the same name is one line, not a failed flow run."""
    with folder_lock(config.run_dir()):
        return end_to_end_flow(config)


def _end_to_end(config: EndToEndConfig) -> EndToEndResult:
    config.run_dir().mkdir(parents=True, exist_ok=True)
    with tracked_run(
        END_TO_END_EXPERIMENT,
        config.name,
        params=config.model_dump(mode="json"),
        tags={KIND_TAG: END_TO_END_KIND},
    ) as parent:
        stages = _Stages(config, parent.info.run_id)
        corpus = _corpus_stage(stages)
        tokens = _encode_stage(stages, corpus)
        pretrained = _train_stage(
            stages, "pretrain", Path(tokens["tokens"]), None, {"tokens": tokens["fingerprint"]}
        )
        style = config.finetune_data or _write_style_set(config.run_dir())
        tuned = _train_stage(
            stages, "finetune", style, pretrained, {"data": fingerprint_path(style)}
        )
        _evaluate_stage(stages, tuned, corpus)
        _preferences_stage(stages, pretrained, tuned, Path(tokens["tokens"]))
        lineage = {
            "corpus": corpus["fingerprint"],
            "tokenizer": tokens["tokenizer"],
            "tokens": tokens["fingerprint"],
            "checkpoint": tuned["fingerprint"],
        }
        client = _client()
        for tag, value in lineage_tags(lineage).items():
            client.set_tag(parent.info.run_id, tag, value)
        # The chain's data on the parent too, so its page and Dataset column show it.
        run_id = parent.info.run_id
        corpus_dir = Path(corpus["dataset"]).parent
        log_dataset(run_id, "corpus", corpus_dir, corpus["fingerprint"], "output")
        log_dataset(run_id, "tokens", tokens["tokens"], tokens["fingerprint"], "output")
        log_dataset(run_id, style.name, style, fingerprint_path(style), "training")
        summary = summary_metrics(stages.outputs)
        log_metrics_batch(parent, summary)
        describe(parent.info.run_id, run_description(config, stages.outputs, summary))
    explain = _explain_page(config, tuned["checkpoint"], parent.info.run_id)
    report = _report(parent.info.run_id, config.run_dir() / "report", explain)
    return EndToEndResult(
        run_dir=config.run_dir(),
        mlflow_run_id=parent.info.run_id,
        stages=stages.status,
        outputs=stages.outputs,
        report=report,
    )


def summary_metrics(outputs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """What a reviewer compares across end-to-end runs, under the names the stage runs
    use: final validation losses, each eval task's headline (first) score, win rates."""
    found: dict[str, float] = {}
    for stage in TRAINING_STAGES:
        loss = outputs.get(stage, {}).get("val_loss")
        if loss is not None:
            found[final_val_loss(stage)] = loss
    for record in outputs.get("evaluate", {}).get("scores", []):
        for metric, value in list(record["scores"].items())[:1]:
            found[eval_summary_metric(record["task"], metric)] = value
    for name, value in outputs.get("preferences", {}).get("summary", {}).items():
        if name.startswith(WIN_RATE_PREFIX):
            found[name] = value
    return {name: float(v) for name, v in found.items() if math.isfinite(float(v))}


def run_description(
    config: EndToEndConfig, outputs: dict[str, dict[str, Any]], summary: dict[str, float]
) -> str:
    """The parent run's description: the chain, the registered model, the key figures."""
    figures = "\n".join(f"- `{name}`: {value:.4g}" for name, value in summary.items())
    registered = outputs.get("finetune", {}).get("registered_as")
    model = f"The fine-tuned model: `models:/{registered}@best`.\n\n" if registered else ""
    return (
        f"**End-to-end run `{config.name}`**: links → corpus → BPE and token shards → "
        f"pretrain → fine-tune → evaluate → preferences; one child run per stage.\n\n"
        f"{model}Key figures:\n\n{figures}"
    )


def _report(run_id: str, folder: Path, explain: Path | None = None) -> Path:
    """The run's report (HTML and Markdown), written once the run has ended, so that it
    shows the final status; logged to the run and shown in Prefect's UI. It links to the
    explain page, which sits in `explain/` beside `report/`, locally and among the run's
    artifacts alike."""
    from prefect.artifacts import create_markdown_artifact

    from reports.run_report import write_report

    links = []
    if explain is not None:
        href = f"../{explain.parent.name}/{explain.name}"
        links.append(("Inside the fine-tuned model: one of its fixed prompts, explained", href))
    html, markdown = write_report(run_id, folder, _client(), links=links)
    client = _client()
    client.log_artifact(run_id, str(html), "report")
    client.log_artifact(run_id, str(markdown), "report")
    create_markdown_artifact(
        markdown.read_text(encoding="utf-8"),
        key="end-to-end-report",
        description=f"end-to-end run {run_id}",
    )
    return html


def _explain_page(config: EndToEndConfig, checkpoint: str, run_id: str) -> Path | None:
    """The teaching page of `gpt2lab explain` for the fine-tuned model on its first fixed
    prompt, written to `<run>/explain/` and logged to the run. A run that finished is not
    failed for a page that could not be made: that is logged, and the report has no link."""
    from model import SamplingConfig
    from model.explain import explain_checkpoint
    from reports.explain_page import EXPLAIN_ARTIFACT_DIR, EXPLAIN_PAGE, write_explain_page

    p = _PLACEHOLDER
    prompt = _train_config(config, "finetune", p, str(p), p).prompts[0]
    try:
        explained = explain_checkpoint(checkpoint, prompt, SamplingConfig(8, top_k=40, seed=0))
        page = config.run_dir() / EXPLAIN_ARTIFACT_DIR / EXPLAIN_PAGE
        write_explain_page(explained, page, model_name=f"{config.name}, fine-tuned")
        _client().log_artifact(run_id, str(page), EXPLAIN_ARTIFACT_DIR)
    except Exception as error:  # noqa: BLE001 - a teaching page must not fail a finished run
        get_run_logger().warning("no explain page for %s: %s", checkpoint, error)
        return None
    return page


# ---------------------------------------------------------------------------------------
# The stages: settings, what identifies their inputs, and the work


def _corpus_stage(stages: _Stages) -> dict[str, Any]:
    """The links given, or the bundled mini-web, served on 127.0.0.1 meanwhile."""
    config = stages.config
    out = config.run_dir() / "corpus"
    if config.links:
        inputs = {str(path): fingerprint_path(path) for path in config.links}
    else:  # the mini-web's port changes every time; its pages do not
        inputs = {"miniweb": f"articles={config.miniweb_articles}"}
    settings = _corpus_config(config, [_PLACEHOLDER], out)

    def work():
        if not config.links:
            # A new mini-web has a new port, so its links differ from those an interrupted
            # run recorded: start the (small) corpus afresh rather than resume it.
            shutil.rmtree(out, ignore_errors=True)
        with ExitStack() as stack:
            links = config.links or [_serve_miniweb(stack, config)]
            # run_corpus: the corpus section may ask for a Dask cluster (dask_address).
            result = run_corpus(_corpus_config(config, links, out))
        outputs = {
            "dataset": str(result.dataset),
            "fingerprint": result.fingerprint,
            "documents": result.documents,
        }
        return result.mlflow_run_id, outputs, [result.dataset]

    return stages.run("corpus", settings, inputs, work, out)


def _encode_stage(stages: _Stages, corpus: dict[str, Any]) -> dict[str, Any]:
    out = stages.config.run_dir() / "tokens"
    # The corpus folder (corpus.json beside dataset/), not the dataset alone: encode then
    # records the corpus run's own fingerprint, so both runs name the same MLflow dataset.
    settings = _encode_config(stages.config, Path(corpus["dataset"]).parent, out)

    def work():
        result = encode_on_its_runner(settings)  # [encode] may name a Dask cluster
        tokenizer = read_meta(result.tokens_dir).tokenizer["fingerprint"]
        outputs = {
            "tokens": str(result.tokens_dir),
            "fingerprint": result.fingerprint,
            "tokenizer": tokenizer,
        }
        return result.mlflow_run_id, outputs, [result.tokens_dir]

    return stages.run("encode", settings, {"corpus": corpus["fingerprint"]}, work, out)


def _train_stage(
    stages: _Stages, stage: str, data: Path, init: dict[str, Any] | None, inputs: dict[str, str]
) -> dict[str, Any]:
    """Pretraining (from scratch on token shards) or fine-tuning (from `init`'s checkpoint)."""
    out = stages.config.run_dir() / stage
    init_from = init["checkpoint"] if init else None
    settings = _train_config(stages.config, stage, data, init_from, out)
    if init is not None:
        inputs = {**inputs, "init": init["fingerprint"]}

    def work():
        result = train_flow(settings)
        if result.checkpoint is None:
            raise RuntimeError(f"{stage} wrote no checkpoint (max_steps too small?)")
        checkpoint = result.checkpoint
        outputs = {
            "checkpoint": str(checkpoint),
            "fingerprint": fingerprint_path(checkpoint),
            "val_loss": result.val_loss,
            "steps": result.steps,
            "registered_as": result.registered_as,
            # The token shards it trained on (a text file is encoded into the run folder).
            "tokens": str(data if data.is_dir() else settings.run_dir() / "data" / "tokens"),
        }
        return result.mlflow_run_id, outputs, [result.checkpoint]

    return stages.run(stage, settings, inputs, work, out)


def _evaluate_stage(
    stages: _Stages, model: dict[str, Any], corpus: dict[str, Any]
) -> dict[str, Any]:
    settings = _evaluate_config(stages.config, model["checkpoint"], Path(corpus["dataset"]))

    def work():
        result = evaluate_flow(settings)
        outputs = {"results": str(result.results_file), "scores": result.results}
        return result.mlflow_run_id, outputs, [result.results_file]

    out = settings.out.parent if settings.out else stages.config.run_dir() / "evaluate"
    inputs = {"model": model["fingerprint"], "corpus": corpus["fingerprint"]}
    return stages.run("evaluate", settings, inputs, work, out)


def _preferences_stage(
    stages: _Stages, first: dict[str, Any], second: dict[str, Any], tokens: Path
):
    models = [first["checkpoint"], second["checkpoint"]]
    # Each model's training data: the corpus shards, and the style set's (if recorded).
    data = [tokens] + [Path(t) for t in [second.get("tokens")] if t and Path(t) != tokens]
    settings = _preferences_config(stages.config, models, data)

    def work():
        result = preferences_flow(settings)
        outputs = {"batch": result.batch, "export": str(result.export), "summary": result.summary}
        return result.mlflow_run_id, outputs, [result.export]

    inputs = {"first": first["fingerprint"], "second": second["fingerprint"]}
    out = stages.config.run_dir() / "preferences"  # (the batch lives in the database)
    return stages.run("preferences", settings, inputs, work, out)


def _serve_miniweb(stack: ExitStack, config: EndToEndConfig) -> Path:
    """Start the mini-web for the corpus stage; returns a URL list of its article pages.

    Only the articles: the mini-web's bad cases (a page that stalls for a minute, 20 MB of
    HTML, ...) are for the corpus tests, and outside links must never be fetched here.
    """
    from tasks.corpus.miniweb import MiniWeb

    web = stack.enter_context(MiniWeb(config.miniweb_articles))
    links = config.run_dir() / "miniweb-links.txt"
    links.write_text("".join(f"{web.url(path)}\n" for path in web.articles))
    return links


def _write_style_set(run_dir: Path) -> Path:
    path = run_dir / "style-set.txt"
    if not path.exists():
        path.write_text(style_set_text(), encoding="utf-8")
    return path


def _client():
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri

    return MlflowClient(tracking_uri=mlflow_tracking_uri())
