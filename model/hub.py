"""Fetching files from the Hugging Face hub, for models and tokenizers alike.

Anything that can come from the hub also loads from a local folder; this module is only
reached when the user names a hub id ("gpt2", "openai-community/gpt2") that is not a
folder on disk. Offline (HF_HUB_OFFLINE=1, or no network) and not in the local cache, it
fails with one line saying so and pointing at the local-folder alternative.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from model.errors import Gpt2labError

# A hub id: "name" or "owner/name"; letters, digits, ".", "_", "-" inside.
_HUB_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(f"{_HUB_NAME}(?:/{_HUB_NAME})?")


def looks_like_hub_id(text: str) -> bool:
    return _HUB_ID.fullmatch(text) is not None and ".." not in text and "--" not in text


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
    if not looks_like_hub_id(text):
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
    try:
        for alternatives in files:
            for name in alternatives:
                try:
                    folder = Path(hf_hub_download(repo_id, name)).parent
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
