"""The records that move through the corpus funnel, shared by every step.

A link becomes a page (fetched bytes), a page becomes a document (extracted text), and at
each step a record may be dropped with a `Verdict` that says where and why. The manifest
keeps one fate per URL, so every URL of the input can be explained afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Fate = Literal["kept", "dropped", "failed"]


@dataclass(frozen=True)
class Verdict:
    """Why a record left the funnel: `stage` is the step ("links", "fetch", "extract",
    "filter", "dedup"), `reason` a short stable code (e.g. "robots_disallowed",
    "http_404", "not_english", "near_duplicate"), `detail` free text for humans."""

    stage: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Link:
    """One outbound link to fetch, after normalisation and the link rules."""

    url: str  # normalised: lower-case host, no fragment, no tracking parameters
    karma: int | None = None  # the submission's score, when the input has one
    subreddit: str | None = None
    post_id: str | None = None
    created_utc: int | None = None
    source: str = ""  # where it was read: "file.jsonl.zst:123"


@dataclass(frozen=True)
class Page:
    """The outcome of fetching one URL: the body on success, else a verdict."""

    url: str  # the link's URL
    final_url: str | None  # after redirects
    status: int | None  # last HTTP status, None when no response came
    content_type: str | None  # the response's Content-Type header, as sent
    body: bytes | None  # at most the configured maximum size; None on failure
    fetched_at: str  # ISO 8601, UTC
    failure: Verdict | None = None  # stage "fetch" (or "robots")
    attempts: int = 1


@dataclass(frozen=True)
class Document:
    """Extracted main text of one page."""

    url: str
    title: str | None
    text: str
