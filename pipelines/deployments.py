"""The flows prefect.yaml's `corpus` and `encode` deployments run: each stage the way
`gpt2lab corpus` / `gpt2lab encode` runs it.

A deployment runs the flow its entrypoint names exactly as that flow was declared, task
runner included, and `corpus_flow` and `encode_flow` are declared with threads. The
command line instead calls `run_corpus` / `run_encode`, which lock the output folder and
then start the flow on the task runner its config asks for (`dask_address`, or
`runner = "dask"` for the corpus). Pointed at a stage's flow itself, a deployment would
quietly ignore `dask_address` and run every shard on the worker's threads.

So the deployments point here instead: each flow below only makes that same call, and the
stage's flow runs as its subflow, on the right runner, its folder locked. Both take the
stage's own config, so the Prefect UI's form for the deployment is the stage's form.

A failed run posts one failure notice, from the flow below: `notify_failure` leaves a
subflow's failure to its parent.
"""

from __future__ import annotations

from prefect import flow

from pipelines.corpus import CorpusConfig, CorpusResult, run_corpus
from pipelines.encode import EncodeConfig, EncodeResult, run_encode
from pipelines.failure_hooks import notify_failure


@flow(name="corpus-deployment", on_failure=[notify_failure])
def corpus_deployment_flow(config: CorpusConfig) -> CorpusResult:
    """The corpus flow as `gpt2lab corpus` runs it: folder locked, shards on the runner
    the config names (threads, a local Dask cluster, or the cluster at `dask_address`)."""
    return run_corpus(config)


@flow(name="encode-deployment", on_failure=[notify_failure])
def encode_deployment_flow(config: EncodeConfig) -> EncodeResult:
    """The encode flow as `gpt2lab encode` runs it: folder locked, parts on the Dask cluster
    at `dask_address` when the config names one, else one at a time here."""
    return run_encode(config)
