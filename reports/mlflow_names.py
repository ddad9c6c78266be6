"""The names gpt2lab records in MLflow, defined once.

The flows (`pipelines/`) write runs under these names and the reports (`reports/`) read
them back, so both import them from here: a name changed here changes for writer and
reader together, and a typo is an import error instead of a figure that silently goes
missing from a report. The module lives in `reports/` because that is the lowest layer
that reads them and that `pipelines/` may import (see DESIGN.md).
"""

from __future__ import annotations

# -- Experiments: one per flow kind ------------------------------------------------------

END_TO_END_EXPERIMENT = "end-to-end"
PREFERENCE_TUNING_EXPERIMENT = "preference-tuning"

# -- Tags ---------------------------------------------------------------------------------

KIND_TAG = "gpt2lab.kind"  # what a parent run is
END_TO_END_KIND = "end-to-end"
EVALUATE_KIND = "evaluate"  # a standalone `gpt2lab evaluate` run: one child run per task
STAGE_TAG = "gpt2lab.stage"  # which end-to-end stage a child run is (see STAGES)
CACHED_TAG = "gpt2lab.cached"  # "true": the stage was skipped, its result reused
CACHED_FROM_TAG = "gpt2lab.cached_from"  # the run whose result a cached stage reused
LINEAGE_TAG_PREFIX = "gpt2lab.lineage."  # + input name -> that input's fingerprint
GIT_COMMIT_TAG = "gpt2lab.git_commit"
VERSION_TAG = "gpt2lab.version"
FINGERPRINT_TAG = "gpt2lab.fingerprint"  # a logged model's checkpoint fingerprint
VAL_DATA_TAG = "gpt2lab.val_data"  # fingerprint of the data a validation loss was measured on
VAL_LOSS_TAG = "val_loss"  # a registered version's validation loss (what `best` compares)
MODEL_PARAM = "model"  # every evaluation run: the model it scored (path, hub id, models:/)
BEST_ALIAS = "best"
JUDGE_TAG = "gpt2lab.judge"  # who voted: "people" or "simulated"
JUDGE_REFERENCE_TAG = "gpt2lab.judge_reference"  # what the simulated judge scores with
BATCH_TAG = "gpt2lab.batch"  # the comparison batch a preference-tuning run learned from
FOLLOWUP_BATCH_TAG = "gpt2lab.followup_batch"  # the batch that compares tuned vs start
FLOW_RUN_ID_TAG = "prefect.flow_run_id"
FLOW_NAME_TAG = "prefect.flow_name"
FLOW_RUN_NAME_TAG = "prefect.flow_run_name"  # e.g. "brave-otter": as Prefect's UI lists it
FLOW_RUN_URL_TAG = "prefect.flow_run_url"  # the flow run's page in Prefect's UI
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own: how a child run names its parent
DESCRIPTION_TAG = "mlflow.note.content"  # MLflow's own: the run page's markdown description
# MLflow's own experiment tag choosing the UI's view: model training (runs, charts), not the
# GenAI view (traces), which shows "No data available" for runs like ours.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"


def lineage_tag(name: str) -> str:
    """`corpus` -> `gpt2lab.lineage.corpus`."""
    return f"{LINEAGE_TAG_PREFIX}{name}"


# -- The end-to-end run's stages, in the order they run ----------------------------------

STAGES = ("corpus", "encode", "pretrain", "finetune", "evaluate", "preferences")
TRAINING_STAGES = ("pretrain", "finetune")

# -- Metrics ------------------------------------------------------------------------------

# Training, per optimizer step (and per evaluation, for the validation loss). Both losses
# share the prefix `loss/`: MLflow's UI groups charts by prefix, so they chart together.
TRAIN_LOSS = "loss/train"
TRAIN_LEARNING_RATE = "train/lr"
TRAIN_GRAD_NORM = "train/grad_norm"
TRAIN_TOKENS_PER_S = "train/tokens_per_s"
TRAIN_MFU = "train/mfu"  # model FLOPs utilisation, where the device's peak is known
VAL_LOSS = "loss/val"
LOSS_HISTORIES = (TRAIN_LOSS, VAL_LOSS)  # the curves a report draws


def final_val_loss(stage: str) -> str:
    """The end-to-end run's summary of a training stage: `<VAL_LOSS>/<stage>`."""
    return f"{VAL_LOSS}/{stage}"


# Encoding: per split ("train", "val"), then for the whole corpus.
TOKENS_PREFIX = "tokens/"
DOCUMENTS_PREFIX = "documents/"
TEXT_MB_PREFIX = "text_mb/"
BYTES_PER_TOKEN = "bytes_per_token"  # UTF-8 bytes per token: the BPE's compression
SHARDS = "shards"
ENCODE_MB_PER_S = "throughput_mb_per_s"

# The corpus funnel: `funnel/<i>_<step>` records left after step i; `drops/<why>` counts.
FUNNEL_PREFIX = "funnel/"
DROPS_PREFIX = "drops/"


def funnel_metric(index: int, step: str) -> str:
    """`(2, "language filter")` -> `funnel/2_language_filter` (MLflow keys have no spaces)."""
    return f"{FUNNEL_PREFIX}{index}_{step.replace(' ', '_')}"


# Preferences, per pair of models: `win_rate/<a>_vs_<b>` and its 95% interval's ends.
WIN_RATE_PREFIX = "win_rate/"
WIN_RATE_LOW_PREFIX = "win_rate_low/"
WIN_RATE_HIGH_PREFIX = "win_rate_high/"
PAIR_SEPARATOR = "_vs_"


def pair_name(model: str, opponent: str) -> str:
    """The metric-name suffix of a pair of model labels: `pretrained_vs_finetuned`."""
    return f"{model}{PAIR_SEPARATOR}{opponent}"


# An evaluate task run's bookkeeping: how its outputs were obtained, not scores.
EVAL_GENERATED = "generated"  # outputs the model produced in this run
EVAL_FROM_CACHE = "from_cache"  # outputs answered from the output cache
EVAL_SECONDS = "seconds"
EVAL_ROWS = "rows"  # how many rows the scores are over (the n of every interval)
EVAL_BOOKKEEPING = (EVAL_GENERATED, EVAL_FROM_CACHE, EVAL_SECONDS, EVAL_ROWS)
# Every score's 95% bootstrap interval: `<metric>/ci95_low` and `<metric>/ci95_high`, so the
# MLflow UI draws each score and its interval in one chart group.
EVAL_CI_LOW_SUFFIX = "/ci95_low"
EVAL_CI_HIGH_SUFFIX = "/ci95_high"
# An evaluate parent run (and the end-to-end run) carries each task's scores as
# `eval/<task>/<metric>`, so runs line up in MLflow's compare view.
EVAL_SUMMARY_PREFIX = "eval/"


def eval_summary_metric(task: str, metric: str) -> str:
    """`("lambada", "accuracy")` -> `eval/lambada/accuracy`."""
    return f"{EVAL_SUMMARY_PREFIX}{task}/{metric}"


# A paired comparison against a baseline model on the same rows: `vs_baseline/<metric>/...`.
EVAL_PAIRED_PREFIX = "vs_baseline/"
# Overlap of a task's rows with a training corpus (8-grams, the paper's section 4).
CONTAMINATION_PREFIX = "contamination/"
EVAL_RESULTS_TABLE = "results_table.json"  # evaluate: every task's scores beside the paper's

# -- Artifacts ----------------------------------------------------------------------------

DROP_REASONS_TABLE = "drop_reasons.json"  # corpus: why documents were dropped
SAMPLES_KEPT_TABLE = "samples_kept.json"  # corpus: a few kept documents to read
WIN_RATES_TABLE = "win_rates.json"  # preferences: one row per pair of models
EVAL_TASK_FILE = "task.json"  # evaluate: one task's result, examples left out
SAMPLES_FOLDER = "samples"  # training: `samples/step-NNNNNN.txt` at each evaluation

# The columns of WIN_RATES_TABLE.
WIN_RATE_COLUMNS = (
    "model",
    "opponent",
    "wins",
    "losses",
    "ties",
    "both_bad",
    "win_rate",
    "low_95",
    "high_95",
)

# -- Contamination (evaluate --corpus): the GPT-2 paper's 8-gram overlap, per task run ----

CONTAMINATION_NGRAM_OVERLAP = CONTAMINATION_PREFIX + "ngram_overlap"  # share of the task's 8-grams
CONTAMINATION_ROWS_OVERLAPPING = CONTAMINATION_PREFIX + "rows_overlapping"  # share of rows with any
CONTAMINATION_ROWS = CONTAMINATION_PREFIX + "rows"  # rows measured (n)
CONTAMINATION_METRICS = (
    CONTAMINATION_NGRAM_OVERLAP,
    CONTAMINATION_ROWS_OVERLAPPING,
    CONTAMINATION_ROWS,
)
EXAMPLE_OVERLAP = "overlap"  # column of the examples table: the row's share of 8-grams found
