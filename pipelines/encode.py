"""The `encode` flow: a corpus dataset in, token shards out, ready for training.

    check corpus -> plan + tokenizer (load or train) -> encode each part -> tokens.json

Started again on the same output folder with the same config, it skips the parts
already written. Token counts, compression, speed and the tokenizer go to MLflow.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field, model_validator

from model.tokenizer import Tokenizer
from model.tokenizer.byte_map import visible
from pipelines.dask_cluster import announce_cluster, cluster_task_runner
from pipelines.failure_hooks import notify_failure
from pipelines.run_lock import folder_lock
from pipelines.tracking import describe, log_dataset, log_metrics_batch, tracked_run
from reports import mlflow_names as names
from tasks.encode.corpus_source import CorpusSource, open_corpus
from tasks.encode.encode import (
    EncodePlan,
    EncodeSettings,
    TokenizerChoice,
    encode_part,
    finish,
    finished_part,
    start_encoding,
    tokenizer_in,
)
from tasks.encode.token_shards import META_FILE, TOKENIZER_DIR, TokenShardsMeta

FIRST_MERGES_LOGGED = 100


class EncodeConfig(TokenizerChoice, EncodeSettings):
    """Settings of the encode flow (the CLI's options and `--config` TOML tables)."""

    corpus: Path = Field(description="corpus folder (from `gpt2lab corpus`) or saved dataset")
    out: Path = Field(description="tokens folder to write (or to finish)")
    dask_address: str | None = Field(
        None,
        description="an existing Dask scheduler, e.g. tcp://HOST:8786: encode the parts on "
        "its workers (they need this code, and `corpus` and `out` at the same paths)",
    )

    @model_validator(mode="after")
    def _vocab_size_with_training(self) -> EncodeConfig:
        if self.train_tokenizer and self.vocab_size is None:
            raise ValueError("train_tokenizer needs vocab_size")
        if self.vocab_size is not None and not self.train_tokenizer:
            raise ValueError("vocab_size is only for train_tokenizer (a loaded tokenizer has one)")
        return self

    def choice(self) -> TokenizerChoice:
        return TokenizerChoice(**self.model_dump(include=set(TokenizerChoice.model_fields)))

    def settings(self) -> EncodeSettings:
        return EncodeSettings(**self.model_dump(include=set(EncodeSettings.model_fields)))


class EncodeResult(BaseModel):
    tokens_dir: Path
    fingerprint: str
    tokens: dict[str, int]
    documents: dict[str, int]
    shards: int
    parts_encoded: int  # by this run (the others were already done)
    mlflow_run_id: str


open_corpus_task = task(open_corpus, name="open-corpus")
start_encoding_task = task(start_encoding, name="plan-and-tokenizer")
encode_part_task = task(encode_part, name="encode-part", task_run_name="part {index}")
finish_task = task(finish, name="write-metadata")


# One part at a time on this machine: each part already encodes on every core (`threads`),
# and two at once would only double the memory. `run_encode` swaps in a Dask cluster.
@flow(name="encode", task_runner=ThreadPoolTaskRunner(max_workers=1), on_failure=[notify_failure])
def encode_flow(config: EncodeConfig) -> EncodeResult:
    """Encode the corpus into token shards in `config.out` (see the module)."""
    with folder_lock(config.out):  # a second run writing the same folder refuses at once
        return _encode(config)


def _encode(config: EncodeConfig) -> EncodeResult:
    logger = get_run_logger()
    tags: dict[str, str] = {}
    if config.dask_address:
        tags, _ = announce_cluster(config.dask_address, logger)
    source: CorpusSource = open_corpus_task(config.corpus)
    plan: EncodePlan = start_encoding_task(source, config.out, config.choice(), config.settings())
    total = len(plan.parts)
    logger.info(
        "%s: %d documents in %d parts -> %s (%s)",
        source.path,
        source.documents,
        total,
        config.out,
        plan.dtype,
    )
    progress = create_progress_artifact(0.0, description=f"encoding {source.path}")
    encoded_mb, encoding_seconds, parts_encoded = 0.0, 0.0, 0
    to_encode = []
    for index in range(total):
        if finished_part(config.out, plan, index) is not None:
            logger.info("part %d/%d: already written", index + 1, total)
        else:
            to_encode.append(index)
    done = total - len(to_encode)
    # Submitted together, the parts run as the task runner allows: one at a time here (each
    # part already encodes on every core), or one per worker on a Dask cluster.
    futures = [
        encode_part_task.submit(source, config.out, plan, index, config.settings())
        for index in to_encode
    ]
    for future in as_completed(futures):
        record = future.result()
        text_mb = sum(shard.text_bytes for shard in record.shards) / 1e6
        encoded_mb += text_mb
        encoding_seconds += record.seconds
        parts_encoded += 1
        done += 1
        logger.info(
            "part %d/%d: %.1f MB of text in %.1f s (%.1f MB/s); %d/%d parts done",
            record.part + 1,
            total,
            text_mb,
            record.seconds,
            text_mb / max(record.seconds, 1e-9),
            done,
            total,
        )
        update_progress_artifact(progress, 100.0 * done / total)
    if not to_encode:  # every part was written by an earlier run
        update_progress_artifact(progress, 100.0)
    meta: TokenShardsMeta = finish_task(config.out, plan, source)
    logger.info("tokens: %s; fingerprint %s", meta.tokens, meta.fingerprint[:16])
    throughput = encoded_mb / encoding_seconds if encoding_seconds else None
    run_id = log_encode_run(config, meta, tokenizer_in(config.out), throughput, tags)
    return EncodeResult(
        tokens_dir=config.out,
        fingerprint=meta.fingerprint,
        tokens=meta.tokens,
        documents=meta.documents,
        shards=len(meta.shards),
        parts_encoded=parts_encoded,
        mlflow_run_id=run_id,
    )


def log_encode_run(
    config: EncodeConfig,
    meta: TokenShardsMeta,
    tokenizer: Tokenizer,
    throughput: float | None,
    tags: dict[str, str] | None = None,
) -> str:
    """One MLflow run: token counts per split, compression, speed, the tokenizer's files,
    and for a trained BPE its first merges. Returns the run id."""
    lineage = {
        "corpus": meta.corpus["fingerprint"],
        "tokenizer": meta.tokenizer["fingerprint"],
        "tokens": meta.fingerprint,
    }
    params = config.model_dump(mode="json", exclude={"corpus", "out", "dask_address"})
    with tracked_run("encode", lineage=lineage, params=params, tags=tags) as run:
        # Read: the corpus dataset; written: the token shards (MLflow's Dataset column).
        log_dataset(run.info.run_id, "corpus", config.corpus, meta.corpus["fingerprint"], "input")
        log_dataset(run.info.run_id, "tokens", config.out, meta.fingerprint, "output")
        metrics: dict[str, float] = {names.SHARDS: len(meta.shards)}
        for split in meta.tokens:
            metrics[f"{names.TOKENS_PREFIX}{split}"] = meta.tokens[split]
            metrics[f"{names.DOCUMENTS_PREFIX}{split}"] = meta.documents[split]
            metrics[f"{names.TEXT_MB_PREFIX}{split}"] = meta.text_bytes[split] / 1e6
        # Compression: UTF-8 bytes per BPE token, the end-of-text separators left out.
        # About 4.5 for GPT-2's tokenizer on English web text; a small vocabulary gives less.
        text_tokens = sum(meta.tokens.values()) - sum(meta.documents.values())
        if text_tokens:
            metrics[names.BYTES_PER_TOKEN] = sum(meta.text_bytes.values()) / text_tokens
        if throughput is not None:
            metrics[names.ENCODE_MB_PER_S] = throughput
        log_metrics_batch(run, metrics)
        mlflow.log_artifacts(str(config.out / TOKENIZER_DIR), TOKENIZER_DIR)
        mlflow.log_artifact(str(config.out / META_FILE))
        if config.train_tokenizer:
            mlflow.log_table(first_merges_table(tokenizer), "first_merges.json")
        split_counts = ", ".join(f"{split} {n:,}" for split, n in meta.tokens.items())
        compression = metrics.get(names.BYTES_PER_TOKEN)
        describe(
            run.info.run_id,
            f"**Encode**: the corpus tokenized with a {meta.vocab_size:,}-token BPE into "
            f"{len(meta.shards)} uint16 shards (fingerprint `{meta.fingerprint[:12]}`).\n\n"
            f"Tokens: {split_counts}"
            + (f"; {compression:.2f} bytes per token." if compression else "."),
        )
        return run.info.run_id


def first_merges_table(tokenizer: Tokenizer, limit: int = FIRST_MERGES_LOGGED) -> dict[str, list]:
    """The first merges a BPE learnt, readable: spaces shown as ␣, newlines as ⏎. A
    teaching view: they are the most frequent pairs of its corpus (" t"+"he", "i"+"n")."""

    merges = tokenizer.merges(limit)
    return {
        "rank": list(range(1, len(merges) + 1)),
        "left": [visible(left) for left, _ in merges],
        "right": [visible(right) for _, right in merges],
        "token": [visible(left + right) for left, right in merges],
    }


def run_encode(config: EncodeConfig) -> EncodeResult:
    """Run the flow (the CLI's entry point). The folder is locked before the flow starts,
    so that a second run into it is one line, not a failed flow run."""
    with folder_lock(config.out):
        return encode_on_its_runner(config)


def encode_on_its_runner(config: EncodeConfig) -> EncodeResult:
    """The flow, its parts on the Dask cluster at `config.dask_address` when there is one."""
    if config.dask_address:
        return encode_flow.with_options(task_runner=cluster_task_runner(config.dask_address))(
            config
        )
    return encode_flow(config)
