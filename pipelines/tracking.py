"""MLflow runs with lineage: every metric can be traced back to its data, code and flow run.

Use `tracked_run` for every MLflow run gpt2lab makes:

    with tracked_run("train", lineage={"tokens": tokens_fp, "tokenizer": tok_fp},
                     params=config) as run:
        ...
        log_metrics_batch(run, [("loss", 3.2, 100), ("loss", 3.1, 200)])

Each run gets these tags (see docs/workspace.md):

- `gpt2lab.lineage.<name>`: the fingerprint of each input (corpus, tokenizer, checkpoint, ...);
- `gpt2lab.git_commit`: the commit of the gpt2lab source, `-dirty` if `gpt2lab/` had local
  edits or untracked files;
- `gpt2lab.version`: the installed package version;
- `prefect.flow_run_id`, `prefect.flow_name`, `prefect.flow_run_name`,
  `prefect.flow_run_url`: the Prefect flow run that made it, if any; that flow run gets a
  link artifact pointing back at the MLflow run.

Runs are named after what made them (the flow kind, or the end-to-end stage), never left to
MLflow's random names, and `describe` gives a run its markdown description. Experiments open
in MLflow's model-training view (runs and charts), not its GenAI view (traces).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import (
    DatasetInput,
    InputTag,
    LoggedModelInput,
    Metric,
    Param,
    Run,
    RunStatus,
)
from mlflow.entities.lifecycle_stage import LifecycleStage
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from pydantic import BaseModel

from model.errors import Gpt2labError
from pipelines import interrupts
from pipelines.run_lock import exclusive
from pipelines.workspace import (
    mlartifacts_dir,
    mlflow_db_path,
    mlflow_tracking_uri,
    uses_workspace_store,
)
from reports.mlflow_names import (
    DESCRIPTION_TAG,
    EXPERIMENT_KIND_TAG,
    FLOW_NAME_TAG,
    FLOW_RUN_ID_TAG,
    FLOW_RUN_NAME_TAG,
    FLOW_RUN_URL_TAG,
    GIT_COMMIT_TAG,
    MODEL_TRAINING_KIND,
    STAGE_TAG,
    VERSION_TAG,
    lineage_tag,
)

logger = logging.getLogger(__name__)

# The folder holding gpt2lab's packages (the repository root in a checkout), and the
# packages whose files are the code that produced a run.
_SOURCE_ROOT = Path(__file__).resolve().parents[1]
CODE_PACKAGES = ("model", "tasks", "pipelines", "reports")

# A git call that takes longer than this is abandoned: tagging must never hang a run.
_GIT_TIMEOUT_S = 5.0

MetricPoints = Mapping[str, float] | Iterable[tuple[str, float, int]]


@contextmanager
def tracked_run(
    experiment: str,
    run_name: str | None = None,
    *,
    lineage: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | BaseModel | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    system_metrics: bool = False,
    compared: Collection[str] | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Open an MLflow run in `experiment`, tagged with its lineage; end it when the block ends.

    Args:
        experiment: one experiment per flow kind ("corpus", "train", "evaluate", ...); created
            on first use, with its artifacts under `<workspace>/mlartifacts/<experiment>/` when
            tracking into the workspace's SQLite store.
        run_name: shown in the MLflow UI; default: the experiment's name (the flow kind).
            Inside an end-to-end stage, the flow's own run is named after the stage.
        lineage: input name -> fingerprint (see tasks.fingerprint), each stored as the tag
            `gpt2lab.lineage.<name>`.
        params: the run's settings, a mapping or a pydantic config model. All of them are
            logged as the artifact `config.json` (the whole configuration, to read or to
            run again); as MLflow params, nested values flattened to dotted keys
            (`{"optim": {"lr": 3e-4}}` -> `optim.lr`), go only those named in `compared`.
        compared: the dotted keys of the settings a person compares runs by: the params,
            the columns of MLflow's runs table. None: every setting (for runs with few).
        nested: make this run a child of the run already active in this thread.
        parent_run_id: make this run a child of that run, even one started in another thread
            or process (MLflow's active run is per thread; Prefect tasks run in worker threads).
        tags: any extra tags; they win over the automatic ones of the same name.
        system_metrics: also record CPU, memory, disk and network use (and GPU use, where
            NVIDIA's management library is installed) every 10 s while the run is open.

    The run ends FINISHED, or FAILED if the block raises (KILLED on Ctrl-C).
    """
    mlflow.set_tracking_uri(mlflow_tracking_uri())
    stage = _STAGE.get()
    flow_level = parent_run_id is None and not nested  # the flow's own run, not a child
    run_name = run_name or experiment  # a name a person can read, not "puzzled-snail-84"
    if stage is not None:  # inside an end-to-end run: see `stage_runs`
        experiment = stage.experiment
        if flow_level:  # the stage's own top-level run
            parent_run_id = stage.parent_run_id
            run_name = stage.name
            tags = {STAGE_TAG: stage.name, **dict(tags or {})}
    experiment_id = ensure_experiment(experiment)
    run_tags = {**lineage_tags(lineage or {}), **context_tags(), **dict(tags or {})}
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name,
        # MLflow refuses a parent_run_id while another run is active unless nested=True.
        nested=nested or parent_run_id is not None,
        parent_run_id=parent_run_id,
        tags=run_tags,
        log_system_metrics=system_metrics,
    ) as run:
        if params:
            log_settings(run.info.run_id, params, compared)
        if flow_level:
            link_flow_run(run)
        interrupts.open_runs.append(run.info.run_id)  # to mark KILLED if stopped hard
        try:
            yield run
        except KeyboardInterrupt:
            # Stopped by Ctrl-C or SIGTERM: KILLED, not FAILED (MLflow's own choice for any
            # exception). Ended here, MLflow's exit sees it ended and leaves it so.
            with contextlib.suppress(Exception):
                mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
            raise
        finally:
            with contextlib.suppress(ValueError):
                interrupts.open_runs.remove(run.info.run_id)


@dataclass(frozen=True)
class Stage:
    experiment: str
    parent_run_id: str
    name: str


# The stage of an end-to-end run that this code runs in, if any. A context variable, not a
# global: Prefect copies the context into the threads where tasks run, and two end-to-end
# runs in one process (tests) do not see each other's.
_STAGE: ContextVar[Stage | None] = ContextVar("gpt2lab_stage", default=None)


@contextmanager
def stage_runs(experiment: str, parent_run_id: str, name: str) -> Iterator[None]:
    """Inside this block, the runs that a flow makes belong to an end-to-end run.

    The flows (corpus, encode, train, ...) call `tracked_run` as they always do. Here, their
    top-level run becomes a child of `parent_run_id`, tagged `gpt2lab.stage = name`, and
    every run they make goes to `experiment`, so the MLflow UI shows the whole end-to-end
    run as one tree. The flows need no parameter for it.
    """
    token = _STAGE.set(Stage(experiment, parent_run_id, name))
    try:
        yield
    finally:
        _STAGE.reset(token)


def ensure_experiment(name: str) -> str:
    """The id of experiment `name`, creating it (or restoring it from the trash) if needed.

    It is tagged to open in MLflow's model-training view: without the tag, MLflow 3 guesses
    from what the experiment holds and may open its GenAI view, which lists traces (none)."""
    client = _client()
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(
                name,
                artifact_location=_artifact_location(name),
                tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND},
            )
        except MlflowException:
            # Another process created it between our look-up and create: use theirs.
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == LifecycleStage.DELETED:
        # A deleted experiment keeps its name, so a new one cannot be created; bring it back
        # rather than failing every scheduled run because someone tidied up the UI.
        logger.warning("MLflow experiment %r was deleted; restoring it", name)
        client.restore_experiment(found.experiment_id)
    if EXPERIMENT_KIND_TAG not in found.tags:  # made before gpt2lab set the tag
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    return found.experiment_id


def _artifact_location(experiment: str) -> str | None:
    """`<workspace>/mlartifacts/<experiment>` as a file URI, or None to let a server decide."""
    if not uses_workspace_store():
        return None
    # Experiment names may hold "/" or spaces; keep the folder name plain and on one level.
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
    return (mlartifacts_dir() / folder).as_uri()


def lineage_tags(lineage: Mapping[str, str]) -> dict[str, str]:
    """`{"corpus": fp}` -> `{"gpt2lab.lineage.corpus": fp}`."""
    return {lineage_tag(name): str(fp) for name, fp in lineage.items()}


def context_tags() -> dict[str, str]:
    """Tags saying which code and which Prefect flow run produced a run."""
    return {
        GIT_COMMIT_TAG: git_commit(),
        VERSION_TAG: package_version(),
        **prefect_tags(),
    }


def prefect_tags() -> dict[str, str]:
    """The Prefect flow run's id, flow name, run name and UI link inside a Prefect flow run,
    else `{}`."""
    # Inside a flow run Prefect is already imported; checking first keeps plain scripts and
    # tests from paying Prefect's import time just to learn there is no flow run.
    if "prefect" not in sys.modules:
        return {}
    from prefect.runtime import flow_run  # works in flows and in their tasks alike

    run_id = flow_run.id
    if not run_id:
        return {}
    found = {FLOW_RUN_ID_TAG: str(run_id)}
    try:
        # Outside the flow's own thread this may ask the Prefect API; a tag is not worth
        # failing the run for.
        flow_name = flow_run.flow_name
    except Exception:  # any API or context error just means "no name"
        logger.debug("could not read the Prefect flow name", exc_info=True)
        flow_name = None
    if flow_name:
        found[FLOW_NAME_TAG] = str(flow_name)
    with contextlib.suppress(Exception):  # as above: no tag rather than a failed run
        if flow_run.name:
            found[FLOW_RUN_NAME_TAG] = str(flow_run.name)
        url = str(flow_run.ui_url or "")
        if url.startswith(("http://", "https://")):  # "None/flow-runs/..." without a UI
            found[FLOW_RUN_URL_TAG] = url
    return found


# Where `gpt2lab ui` serves MLflow when tracking goes to the workspace's SQLite file.
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"


# MLflow 3's UI opens in its GenAI view (traces) unless the address asks for the
# model-training one; the experiment tag alone does not switch it while the UI's own
# GenAI / Model training switch is shown.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def mlflow_run_url(experiment_id: str, run_id: str, base: str | None = None) -> str:
    """The run's page in the MLflow UI at `base`, in its model-training view. By default
    the UI is the tracking server itself, or where `gpt2lab ui` serves a workspace's
    SQLite store."""
    if base is None:
        uri = mlflow_tracking_uri()
        base = uri if uri.startswith(("http://", "https://")) else DEFAULT_MLFLOW_UI
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"


def link_flow_run(run: mlflow.ActiveRun) -> None:
    """Give the Prefect flow run this code runs in a link artifact to MLflow run `run`, so
    each UI leads to the other. Nothing outside a flow run; a failure is only logged."""
    if "prefect" not in sys.modules:
        return
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    try:
        from prefect.artifacts import create_link_artifact

        create_link_artifact(
            mlflow_run_url(run.info.experiment_id, run.info.run_id),
            link_text=f"MLflow run {run.info.run_name}",
            description=f"MLflow run {run.info.run_id} (open `gpt2lab ui` first)",
        )
    except Exception:  # a missing link must never fail the run
        logger.debug("could not link the Prefect flow run to MLflow", exc_info=True)


def describe(run_id: str, markdown: str) -> None:
    """Set run `run_id`'s description: the markdown MLflow shows at the top of its page."""
    _client().set_tag(run_id, DESCRIPTION_TAG, markdown)


def log_model_input(run_id: str, model_id: str) -> None:
    """Record that run `run_id` used MLflow logged model `model_id` (an evaluation: the
    model it scored), so the run page links to the model."""
    _client().log_inputs(run_id, models=[LoggedModelInput(model_id)])


def log_dataset(
    run_id: str, name: str, source: str | os.PathLike[str], fingerprint: str, context: str
) -> DatasetEntity:
    """Record that run `run_id` read (`context` "training", "validation", "evaluation", ...)
    or wrote ("output") the data at `source` (a local path, or an http(s) URL), known by
    `fingerprint`.

    MLflow lists it in the run's Dataset column and its lineage; a metric logged with the
    returned dataset is linked to it. Only the name, digest and source are recorded: the
    data itself stays where it is. Returns the MLflow dataset entity."""
    # MLflow stores a digest of at most 36 characters; 32 hex characters (128 bits) of our
    # SHA-256 fingerprints still tell any two datasets apart.
    digest = fingerprint.removeprefix("hub:")[:32]
    where = str(source)
    if where.startswith(("http://", "https://")):
        found: DatasetSource = HTTPDatasetSource(where)
    else:
        found = LocalArtifactDatasetSource(Path(where).resolve().as_uri())
    entity = MetaDataset(source=found, name=name, digest=digest)._to_mlflow_entity()
    tags = [InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]
    _client().log_inputs(run_id, datasets=[DatasetInput(dataset=entity, tags=tags)])
    return entity


@functools.cache
def git_commit(source_root: Path = _SOURCE_ROOT, packages: Sequence[str] = CODE_PACKAGES) -> str:
    """The commit of the git checkout holding the `packages` folders under `source_root`,
    `-dirty` if those folders have local changes (README, docs or tests do not count).

    "unknown" when the packages are not tracked in a git checkout (an installed wheel), git
    is missing, or git is slow. Untracked files count as changes: a new, uncommitted module
    is code the commit does not hold.

    Cached per process: the code a process runs is the code it imported at start, so the
    first answer is the right one even if files are edited later.
    """
    head = _git(source_root, "rev-parse", "HEAD")
    if not head:
        return "unknown"
    paths = ["--", *packages]
    # A package installed into a virtualenv inside some checkout is not that checkout's code:
    # require the package folders themselves to be tracked.
    if not _git(source_root, "ls-files", *paths):
        return "unknown"
    status = _git(source_root, "status", "--porcelain", *paths)
    if status is None:
        return "unknown"
    return f"{head}-dirty" if status else head


def _git(cwd: Path, *args: str) -> str | None:
    """Run one git command in `cwd`; its stripped output, or None on any failure."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,  # never wait for input
            # Never prompt, and never take a lock that a concurrent git command may hold.
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def package_version() -> str:
    """The installed gpt2lab version, or "unknown" when running from an uninstalled tree."""
    try:
        return importlib.metadata.version("gpt2lab")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


CONFIG_ARTIFACT = "config.json"  # a run's whole configuration (see `log_settings`)


def log_settings(
    run_id: str, settings: Mapping[str, Any] | BaseModel, compared: Collection[str] | None
) -> None:
    """Log a run's settings: all of them as `config.json`, the `compared` ones as params.

    A flow config has dozens of settings (the corpus flow's filters alone have 25), most of
    them never changed. As params they would all become columns of MLflow's runs table,
    where a reviewer looks for the few that differ. So the params are the settings people
    compare (model size, steps, learning rate, dedup threshold, ...), and the file keeps
    everything, exactly as the flow received it.
    """
    if isinstance(settings, BaseModel):  # a flow config: paths, enums -> plain JSON
        settings = settings.model_dump(mode="json")
    _client().log_text(run_id, json.dumps(settings, indent=2, default=str), CONFIG_ARTIFACT)
    flat = flatten_params(settings)
    if compared is not None:
        missing = sorted(set(compared) - set(flat))
        if missing:  # a renamed setting: say so here, not as a column that quietly vanished
            raise KeyError(f"compared settings not in the config: {', '.join(missing)}")
        flat = {key: value for key, value in flat.items() if key in compared}
    # One log_batch call (MLflow splits it into chunks of 100 params itself).
    _client().log_batch(run_id, params=[Param(key, value) for key, value in flat.items()])


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings -> dotted keys, values as strings (MLflow stores params as text)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def log_metrics_batch(
    run: str | mlflow.ActiveRun | Run | None,
    metrics: MetricPoints,
    *,
    step: int = 0,
    model_id: str | None = None,
    dataset: DatasetEntity | None = None,
) -> None:
    """Log many metric points in one `log_batch` call.

    On SQLite, 1,000 single `log_metric` calls take seconds; one batch of the same points takes
    milliseconds. Buffer per-step metrics and log them here every so often.

    Args:
        run: a run id, a run object, or None for the run active in this thread.
        metrics: either `{"name": value}` (all at `step`) or `(name, value, step)` triples.
        step: the step for the mapping form.
        model_id: the MLflow logged model the points measure: they show on its page.
        dataset: the dataset (from `log_dataset`) they were measured on.
    """
    run_id = _run_id(run)
    now_ms = int(time.time() * 1000)
    if isinstance(metrics, Mapping):
        points = [(key, value, step) for key, value in metrics.items()]
    else:
        points = list(metrics)
    linked = {"model_id": model_id}
    if dataset is not None:
        linked |= {"dataset_name": dataset.name, "dataset_digest": dataset.digest}
    batch = [
        Metric(key=key, value=float(value), timestamp=now_ms, step=int(at_step), **linked)
        for key, value, at_step in points
    ]
    if batch:
        # MlflowClient.log_batch splits batches above MLflow's 1,000-metric limit for us.
        _client().log_batch(run_id, metrics=batch)


def end_run_quickly(run_id: str, status: str) -> None:
    """End run `run_id` with `status`, one quick try (a process about to exit cannot wait
    for MLflow's retries)."""
    with failing_fast():
        _client().set_terminated(run_id, status)


def _client() -> MlflowClient:
    # Always name the store: MlflowClient() alone would fall back to MLflow's own default
    # (./mlflow.db in the current directory) whenever tracked_run has not run yet.
    uri = mlflow_tracking_uri()
    if uri not in _stores_ready and uses_workspace_store():
        # MLflow creates (and migrates) its tables on first use; two processes doing that
        # at once in a new workspace crash in the migration. One at a time, then.
        with exclusive(mlflow_db_path().with_name("mlflow.db.setup-lock")):
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        _stores_ready.add(uri)
    return MlflowClient(tracking_uri=uri)


_stores_ready: set[str] = set()  # workspace stores whose tables this process has seen made


def _run_id(run: str | mlflow.ActiveRun | Run | None) -> str:
    if run is None:
        active = mlflow.active_run()
        if active is None:
            raise RuntimeError("log_metrics_batch: no run given and no MLflow run is active")
        return active.info.run_id
    return run if isinstance(run, str) else run.info.run_id


class TrackingUnavailable(Gpt2labError):
    """The tracking server stayed unreachable for longer than the caller would wait (the
    command line prints it as one line)."""


@contextmanager
def failing_fast(timeout_s: float = 10.0) -> Iterator[None]:
    """MLflow HTTP calls inside this block try once, for at most `timeout_s`.

    MLflow's client retries each request up to 7 times with exponential backoff (minutes
    in all) before it gives up; a training step must not wait that long. `MetricBuffer`
    keeps its own points and retries on its own schedule, so one quick try is enough. MLflow
    reads these variables at every request; the change is undone when the block ends."""
    saved = {name: os.environ.get(name) for name in _FAST_HTTP}
    os.environ.update(
        {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout_s))}
    )
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_FAST_HTTP = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")

# MLflow's own limit on metrics per log_batch request.
_BATCH_LIMIT = 1000


class MetricBuffer:
    """Metric points of one run, held in memory until the tracking store takes them.

    A tracking server that stops for a while (a restart, a network blip) must neither stop
    training nor lose its measurements. So points are stamped when they are measured and
    kept here; `flush` sends them and keeps whatever did not go. After a failure it waits
    before trying again, twice as long each time (1 s, 2 s, 4 s, ... at most `max_wait_s`),
    so a dead server costs the training loop one quick failed request now and then. Sending
    a point twice is harmless: MLflow stores a (name, value, step, timestamp) point once.

        buffer = MetricBuffer(run_id)
        buffer.add([("loss/train", 3.2, 10)])
        buffer.flush()        # False while the server is away; the points stay here
        buffer.close(600)     # at the end: wait up to 10 min, else TrackingUnavailable
    """

    def __init__(
        self,
        run_id: str,
        *,
        first_wait_s: float = 1.0,
        max_wait_s: float = 30.0,
        clock: Any = time.monotonic,
        sleep: Any = time.sleep,
    ) -> None:
        self.run_id = run_id
        self.pending: list[Metric] = []
        self.first_wait_s, self.max_wait_s = first_wait_s, max_wait_s
        self._clock, self._sleep = clock, sleep
        self._wait = first_wait_s
        self._next_try = 0.0
        self.down_since: float | None = None  # clock time of the first failed send

    def add(self, metrics: MetricPoints, *, step: int = 0) -> None:
        """Keep points, stamped now (when they were measured, not when they reach MLflow)."""
        now_ms = int(time.time() * 1000)
        if isinstance(metrics, Mapping):
            points = [(key, value, step) for key, value in metrics.items()]
        else:
            points = list(metrics)
        self.pending += [
            Metric(key=key, value=float(value), timestamp=now_ms, step=int(at_step))
            for key, value, at_step in points
        ]

    @property
    def reachable(self) -> bool:
        """False from a failed send until the next successful one."""
        return self.down_since is None

    def flush(self) -> bool:
        """Send what is kept, unless a retry is not due yet. True when nothing is left."""
        if not self.pending:
            return True
        if self._clock() < self._next_try:
            return False
        try:
            with failing_fast():
                while self.pending:
                    chunk = self.pending[:_BATCH_LIMIT]
                    _client().log_batch(self.run_id, metrics=chunk)
                    del self.pending[: len(chunk)]
        except MlflowException as error:
            if 400 <= error.get_http_status_code() < 500:
                raise  # refused (no such run, a bad value): trying again would not help
            self._failed(error)
            return False
        except Exception as error:  # noqa: BLE001 - any failure to reach the store: retry
            self._failed(error)
            return False
        if self.down_since is not None:
            logger.warning(
                "MLflow tracking at %s is back after %.0f s; buffered metrics logged",
                mlflow_tracking_uri(),
                self._clock() - self.down_since,
            )
        self.down_since, self._wait, self._next_try = None, self.first_wait_s, 0.0
        return True

    def close(self, patience_s: float) -> None:
        """Send everything, retrying for up to `patience_s` seconds; else TrackingUnavailable."""
        deadline = self._clock() + patience_s
        while not self.flush():
            now = self._clock()
            if now >= deadline:
                raise TrackingUnavailable(
                    f"MLflow tracking at {mlflow_tracking_uri()} unreachable for "
                    f"{now - (self.down_since or now):.0f} s: {len(self.pending)} metric points "
                    f"of run {self.run_id} not logged"
                )
            self._sleep(max(0.0, min(self._next_try, deadline) - now))

    def _failed(self, error: Exception) -> None:
        now = self._clock()
        if self.down_since is None:
            self.down_since = now
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            logger.warning(
                "MLflow tracking at %s did not answer (%s); keeping metrics and retrying",
                mlflow_tracking_uri(),
                first_line[:200],
            )
        self._next_try = now + self._wait
        self._wait = min(self._wait * 2, self.max_wait_s)
