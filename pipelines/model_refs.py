"""Naming a model to run, and where to run it.

Wherever a command takes a model (`evaluate`, `generate`, `finetune --init-from`,
`compare`), it takes a checkpoint folder, a Hugging Face GPT-2 folder, a hub id, or a
model the train flow registered in MLflow:

    models:/NAME@ALIAS      e.g. models:/gpt2lab@best  (the version the alias points at now)
    models:/NAME/VERSION    e.g. models:/gpt2lab/3
    models:/NAME/latest     the newest version

`resolve_model` turns any of them into something `load_model` reads. A registered model
is looked up in the workspace's MLflow store and downloaded once into
`<workspace>/registered-models/<name>/<version>/`; an alias is turned into its version
first, so a moved alias fetches the version it points at now, and a version already
downloaded is never fetched again (a registered version never changes).

`resolve_device` picks the device a model runs on: `auto` is CUDA when torch sees a GPU.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from model.errors import Gpt2labError
from pipelines.workspace import mlflow_tracking_uri, workspace_dir

Device = Literal["auto", "cpu", "cuda"]

REGISTRY_SCHEME = "models:/"
CACHE_FOLDER = "registered-models"
# What `mlflow_model.log_checkpoint_model` calls the checkpoint among the model's artifacts.
CHECKPOINT_ARTIFACT = "checkpoint"
# models:/NAME@ALIAS or models:/NAME/VERSION (digits, or "latest"), as MLflow writes them.
_REFERENCE = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+|latest))$"
)


class ModelReferenceError(Gpt2labError):
    """A models:/ reference that names no registered model version."""


def is_registered(reference: str) -> bool:
    """True for a models:/ reference (a registered model), False for a path or hub id."""
    return reference.startswith(REGISTRY_SCHEME)


def resolve_model(reference: str) -> str:
    """The local folder (or hub id) to load for `reference`.

    A path or hub id comes back unchanged. `models:/NAME@ALIAS`, `models:/NAME/VERSION`
    and `models:/NAME/latest` are resolved to a version in the MLflow store the workspace
    tracks into, downloaded once, and the checkpoint folder inside is returned.
    """
    if not is_registered(reference):
        return reference
    match = _REFERENCE.match(reference)
    if match is None:
        raise ModelReferenceError(
            f"{reference}: not a registered model reference; use models:/NAME@ALIAS, "
            "models:/NAME/VERSION or models:/NAME/latest"
        )
    name, alias, version = match["name"], match["alias"], match["version"]
    if alias == "latest":  # MLflow reserves this alias for the newest version
        alias, version = None, "latest"
    version = _version(reference, name, alias, version)
    folder = _download(name, version)
    return str(folder / _checkpoint_path(folder))


def resolve_device(choice: str) -> str:
    """ "cpu" or "cuda" for `choice` (auto, cpu or cuda); cuda without a GPU is refused."""
    import torch

    if choice not in ("auto", "cpu", "cuda"):
        raise Gpt2labError(f"device must be auto, cpu or cuda, not {choice!r}")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise Gpt2labError(
            "device cuda: torch finds no CUDA GPU on this machine "
            "(torch.cuda.is_available() is False); use --device cpu or auto"
        )
    return choice


def _version(reference: str, name: str, alias: str | None, version: str | None) -> str:
    """The version number `reference` names now, looked up in the registry."""
    from mlflow.exceptions import MlflowException

    client = _client()
    where = f"in the MLflow store {_shown(mlflow_tracking_uri())}"
    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        raise ModelReferenceError(f"{reference}: no registered model {name!r} {where}") from None
    if alias is not None:
        if alias not in registered.aliases:
            known = ", ".join(sorted(registered.aliases)) or "none"
            raise ModelReferenceError(
                f"{reference}: model {name!r} has no alias {alias!r} {where} (aliases: {known})"
            )
        return str(registered.aliases[alias])
    versions = [int(v.version) for v in client.search_model_versions(f"name = '{_quoted(name)}'")]
    if version == "latest":
        if not versions:
            raise ModelReferenceError(f"{reference}: model {name!r} has no versions {where}")
        return str(max(versions))
    if int(version) not in versions:
        newest = f"newest is {max(versions)}" if versions else "it has none"
        raise ModelReferenceError(
            f"{reference}: model {name!r} has no version {version} {where} ({newest})"
        )
    return str(int(version))


def _download(name: str, version: str) -> Path:
    """`<workspace>/registered-models/<name>/<version>/`, downloaded if not there yet.

    Downloaded into a temporary folder beside it and renamed into place when complete, so
    an interrupted download is never mistaken for a model, and two processes fetching the
    same version at once both end with one whole copy."""
    import mlflow

    parent = workspace_dir() / CACHE_FOLDER / _folder_name(name)
    final = parent / version
    if final.is_dir():
        return final
    parent.mkdir(parents=True, exist_ok=True)
    source = _client().get_model_version_download_uri(name, version)
    partial = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=parent))
    try:
        downloaded = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(partial), tracking_uri=mlflow_tracking_uri()
        )
        os.rename(downloaded, final)
    except OSError:
        if not final.is_dir():  # not "someone else finished first": a real failure
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def _checkpoint_path(folder: Path) -> str:
    """Where the checkpoint sits inside a downloaded model: the MLmodel file says."""
    from mlflow.models import Model

    artifacts = Model.load(str(folder)).flavors.get("python_function", {}).get("artifacts", {})
    entry = artifacts.get(CHECKPOINT_ARTIFACT)
    if entry is None:
        raise ModelReferenceError(
            f"{folder}: this registered model holds no gpt2lab checkpoint (no "
            f"{CHECKPOINT_ARTIFACT!r} artifact); register models with the train flow"
        )
    return entry["path"]


def _folder_name(name: str) -> str:
    """A registered model's name as one folder name: escaped, never "." or ".."."""
    escaped = quote(name, safe="")
    return escaped.replace(".", "%2E") if set(escaped) == {"."} else escaped


def _quoted(name: str) -> str:
    """`name` inside a single-quoted MLflow search filter."""
    return name.replace("\\", "\\\\").replace("'", "\\'")


def _shown(uri: str) -> str:
    """A tracking URI for messages: without a password, if it holds one."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_tracking_uri())
