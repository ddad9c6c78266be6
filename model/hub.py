"""Fetching files from the Hugging Face hub, for models and tokenizers alike.

Anything that can come from the hub also loads from a local folder; this module is only
reached when the user names a hub id ("gpt2", "openai-community/gpt2") that is not a
folder on disk. Offline (HF_HUB_OFFLINE=1, or no network) and not in the local cache, it
fails with one line saying so and pointing at the local-folder alternative.

Two mistakes must fail at once, not after the hub client's retries (about 25 s):
- a path that does not exist, written as a path (`./ckpt`, `/data/m`, `runs/a/b`) or
  starting with a folder that exists here (`workspace/nope`): it is never a hub id;
- a hub id while the hub cannot be reached: one quick connection attempt tells, and then
  only the local cache is looked at.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from model.errors import Gpt2labError

# A hub id: "name" or "owner/name"; letters, digits, ".", "_", "-" inside.
_HUB_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(f"{_HUB_NAME}(?:/{_HUB_NAME})?")


HUB_CONNECT_TIMEOUT_S = 3.0  # one try; a reachable hub answers a TCP connect far sooner


def looks_like_hub_id(text: str) -> bool:
    return _HUB_ID.fullmatch(text) is not None and ".." not in text and "--" not in text


def looks_like_a_path(text: str) -> bool:
    """Whether `text` was meant as a folder: written as a path (`./x`, `/x`, `~/x`, `a/b/c`,
    a backslash), or `first/rest` where the folder `first` exists here (so `workspace/nope`
    is a missing checkpoint, not the hub user "workspace")."""
    if text.startswith(("/", "./", "../", "~", ".\\")) or "\\" in text or text.count("/") > 1:
        return True
    first, slash, _ = text.partition("/")
    return bool(slash) and Path(first).is_dir()


@functools.cache
def hub_reachable() -> bool:
    """Whether the Hugging Face hub can be reached: not when HF_HUB_OFFLINE is set, nor when
    one TCP connection to its host fails (no network, no DNS). Asked once per process."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), HUB_CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def resolve_local_or_hub(
    path_or_id: str | Path,
    *,
    what: str,
    expected: str,
    files: Sequence[Sequence[str]],
    error: type[Gpt2labError],
) -> tuple[Path, str]:
    """The folder `path_or_id` names, fetching it from the hub when it is a hub id.

    `files` lists what to fetch: each entry is a group of alternatives, the first one the
    repository has is taken (e.g. `[("config.json",), ("model.safetensors",
    "pytorch_model.bin")]`). Returns the folder and a display name.
    """
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path, path.resolve().name
    if path.exists():
        raise error(f"{path} is a file; expected a {what} folder with {expected}")
    text = str(path_or_id)
    if not looks_like_hub_id(text) or looks_like_a_path(text):
        raise error(f"no such {what} folder: {text}")
    return _download(text, what, expected, files, error), text


def _download(repo_id, what, expected, files, error) -> Path:
    # Imported here: only hub ids need huggingface_hub, and it is slow to import.
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    folder = None
    # Offline, only the local cache is looked at: no retries against a hub that is not there.
    cache_only = not hub_reachable()
    try:
        for alternatives in files:
            for name in alternatives:
                try:
                    folder = Path(
                        hf_hub_download(repo_id, name, local_files_only=cache_only)
                    ).parent
                    break
                except LocalEntryNotFoundError:
                    raise  # offline: not "this file is absent"
                except EntryNotFoundError:
                    continue
            else:
                raise error(f"hub repository {repo_id!r} has no {' or '.join(alternatives)}")
    except LocalEntryNotFoundError:
        raise error(
            f"{what} {repo_id!r} is not a local folder and could not be fetched from the "
            f"Hugging Face hub (offline or not cached); pass a local folder with {expected}"
        ) from None
    except HFValidationError:
        raise error(f"no such {what} folder: {repo_id}") from None
    except RepositoryNotFoundError:
        raise error(
            f"{what} {repo_id!r} is not a local folder, and the hub has no repository {repo_id!r}"
        ) from None
    except (HfHubHTTPError, OSError) as err:  # network failures surface as OSError too
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise error(f"could not fetch {what} {repo_id!r} from the hub: {first_line}") from None
    return folder
