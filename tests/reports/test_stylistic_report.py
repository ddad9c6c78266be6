"""The stylistic experiment's report: the curve in order of comparisons, beside the paper's
86%, and the judge named as a script."""

from __future__ import annotations

from reports.stylistic_report import (
    ANNOTATOR_TAG,
    CURVE_FIELDS,
    SECONDS,
    curve_metric,
    curve_points,
    stylistic_markdown,
)


def _metrics(size: int, rate: float) -> dict[str, float]:
    values = dict.fromkeys(CURVE_FIELDS, 0.5) | {"win_rate": rate, "n": 200, "used": size - 7}
    return {curve_metric(size, field): value for field, value in values.items()}


def test_the_curve_is_read_back_by_number_of_comparisons():
    metrics = _metrics(5000, 0.8) | _metrics(500, 0.6) | {SECONDS: 60.0, "other": 1.0}
    points = curve_points(metrics)
    assert list(points) == [500, 5000]
    assert points[5000]["win_rate"] == 0.8 and points[500]["used"] == 493


def test_the_report_names_the_scripted_judge_and_sits_beside_the_paper():
    metrics = _metrics(1000, 0.7) | _metrics(300, 0.55) | {SECONDS: 90.0}
    report = stylistic_markdown(metrics, {"mistake_rate": "0.1"}, {ANNOTATOR_TAG: "scripted-vader"})
    assert "scripted-vader, a scripted annotator, not people" in report
    assert "10%" in report and "Wall time: 1.5 min" in report
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| 300 (293) | 0.550") and rows[2].startswith("| 1,000 (993) | 0.700")
    assert rows[3].startswith("| paper: 5,000 | 0.86 (people)")
