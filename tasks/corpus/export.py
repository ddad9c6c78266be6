"""Export a corpus run: its dataset, its manifest and its fingerprint.

The store (`store.py`) holds a run's state while it works; this module turns that state into
the three things the next stages and people read, in `<out>/`:

- `dataset/`: the kept documents as a Hugging Face dataset (`datasets.load_from_disk`);
- `manifest.jsonl`: every input link's fate, one JSON object a line, in input order;
- `corpus.json`: the corpus fingerprint, the counts and whether the run was complete.

It reads the store only through its public reading methods (`counts`, `fates`,
`iter_documents`), so exporting never changes the run's state and may be repeated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from model.atomic_files import write_file_atomically, write_folder_atomically
from tasks.corpus.store import CorpusStore

DATASET_DIR = "dataset"
MANIFEST_FILE = "manifest.jsonl"
CORPUS_FILE = "corpus.json"


@dataclass(frozen=True)
class ExportResult:
    dataset_path: Path
    manifest_path: Path
    corpus_path: Path  # corpus.json: fingerprint, counts, completeness
    fingerprint: str
    n_documents: int
    complete: bool  # False when some links were still pending or awaiting extraction


def export_corpus(
    store: CorpusStore, out_dir: str | os.PathLike[str] | None = None
) -> ExportResult:
    """Write `<out>/dataset` (Hugging Face, on disk), `<out>/manifest.jsonl` and
    `<out>/corpus.json` from `store`; `out_dir` defaults to the store's folder.

    Each is written to a temporary name and renamed into place, so a crash leaves the
    previous export or the new one, never half of one. corpus.json is written last: its
    presence says the other two are complete.

    The corpus fingerprint is the SHA-256 of "url\\0content_hash\\n" for every exported
    document in idx (input) order: the same documents give the same fingerprint,
    whatever the Arrow files' bytes, and any change of text, URL or order changes it.
    """
    out = Path(out_dir) if out_dir is not None else store.folder
    out.mkdir(parents=True, exist_ok=True)
    counts = store.counts()
    dataset_path = out / DATASET_DIR
    fingerprint, n_documents = write_folder_atomically(
        dataset_path, lambda tmp: _write_dataset(store, tmp)
    )
    manifest_path = out / MANIFEST_FILE
    write_file_atomically(manifest_path, lambda handle: _write_manifest(store, handle))
    complete = counts["pending"] == 0 and counts["fetched"] == 0
    summary = {
        "format": "gpt2lab.corpus",
        "version": 1,
        "fingerprint": fingerprint,
        "fingerprint_method": "sha256 of 'url\\0content_hash\\n' per document, idx order",
        "n_documents": n_documents,
        "complete": complete,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": DATASET_DIR,
        "manifest": MANIFEST_FILE,
        "counts": counts,
    }
    corpus_path = out / CORPUS_FILE
    write_file_atomically(corpus_path, json.dumps(summary, indent=2) + "\n")
    return ExportResult(
        dataset_path=dataset_path,
        manifest_path=manifest_path,
        corpus_path=corpus_path,
        fingerprint=fingerprint,
        n_documents=n_documents,
        complete=complete,
    )


def _write_manifest(store: CorpusStore, handle: IO[str]) -> None:
    for record in store.fates():
        handle.write(json.dumps(dataclasses.asdict(record), ensure_ascii=False) + "\n")


def _dataset_features() -> Any:
    from datasets import Features, Value

    return Features(
        {
            "url": Value("string"),
            "title": Value("string"),
            "text": Value("string"),
            "karma": Value("int64"),
            "subreddit": Value("string"),
            "fetched_at": Value("string"),
            "content_hash": Value("string"),
        }
    )


def _generate_rows(folder: str) -> Iterator[dict[str, Any]]:
    """The dataset's rows, read from the store in a fresh connection (datasets may call this
    outside our process's objects, and a generator must be picklable)."""
    with CorpusStore(folder) as store:
        for doc in store.iter_documents():
            yield {
                "url": doc.url,
                "title": doc.title,
                "text": doc.text,
                "karma": doc.karma,
                "subreddit": doc.subreddit,
                "fetched_at": doc.fetched_at,
                "content_hash": doc.content_hash,
            }


def _write_dataset(store: CorpusStore, target: Path) -> tuple[str, int]:
    """Save the kept documents to `target` as a Hugging Face dataset; (fingerprint, count).

    `from_generator` streams rows into Arrow files in a private cache folder, so memory stays
    bounded; that cache is deleted after `save_to_disk` has copied it. The fingerprint is read
    back from the saved dataset, so it describes exactly what was written.
    """
    import datasets

    features = _dataset_features()
    cache = Path(tempfile.mkdtemp(prefix=".dataset-cache-", dir=target.parent))
    try:
        if next(store.iter_documents(batch_size=1), None) is not None:
            dataset = datasets.Dataset.from_generator(
                _generate_rows,
                features=features,
                cache_dir=str(cache),
                gen_kwargs={"folder": str(store.folder)},
            )
        else:  # from_generator cannot make a dataset with no rows
            dataset = datasets.Dataset.from_dict({name: [] for name in features}, features)
        # An empty dataset needs one explicit (empty) shard, or it cannot be loaded back.
        dataset.save_to_disk(str(target), num_shards=None if len(dataset) else 1)
        del dataset
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return _dataset_fingerprint(target)


def _dataset_fingerprint(path: Path) -> tuple[str, int]:
    import datasets

    digest = hashlib.sha256()
    dataset = datasets.load_from_disk(str(path)).select_columns(["url", "content_hash"])
    for batch in dataset.iter(batch_size=10_000):
        for url, hash_ in zip(batch["url"], batch["content_hash"], strict=True):
            digest.update(f"{url}\0{hash_}\n".encode())
    return digest.hexdigest(), len(dataset)
