"""Corpus charts are real PNG files with the figures drawn (not empty canvases)."""

from __future__ import annotations

from PIL import Image

from reports.corpus_charts import funnel_chart, length_histogram


def _png_has_ink(path) -> bool:
    image = Image.open(path).convert("L")
    assert image.format is None or image.format == "PNG"
    return image.getextrema()[0] < 128  # something dark was drawn


def test_funnel_chart_writes_a_png(tmp_path):
    path = funnel_chart([("links", 10), ("fetched", 7), ("kept", 3)], tmp_path / "funnel.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _png_has_ink(path)


def test_length_histogram_handles_empty_and_single_values(tmp_path):
    for lengths in ([], [120], [50, 500, 5000, 50000]):
        path = length_histogram(lengths, tmp_path / f"h{len(lengths)}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
