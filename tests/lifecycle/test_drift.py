"""The drift monitor: its statistics, its alarms and the statistic that tripped them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from indad.errors import InputError
from indad.export.model_file import read_header
from indad.lifecycle.drift import DriftLimits, DriftMonitor, DriftReference, ks_statistic


def reference() -> DriftReference:
    scores = np.random.default_rng(0).normal(10.0, 1.0, 2000)
    return DriftReference(100.0, 40.0, np.quantile(scores, np.linspace(0, 1, 101)), threshold=12.5)


def test_ks_statistic_matches_scipy():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, 5000)
    for shift in (0.0, 0.5, 2.0):
        sample = rng.normal(shift, 1, 200)
        want = stats.ks_2samp(sample, ref).statistic
        assert ks_statistic(sample, np.quantile(ref, np.linspace(0, 1, 101))) == pytest.approx(want, abs=0.03)


def test_a_steady_stream_raises_no_alarm_and_a_darker_one_does():
    rng = np.random.default_rng(2)
    monitor = DriftMonitor(reference())
    for _ in range(500):
        status = monitor.observe(rng.normal(10.0, 1.0), rng.normal(100.0, 5.0), rng.normal(40.0, 3.0))
    assert monitor.alarms == 0 and not status.alarm and abs(status.brightness) < 0.02
    darker = [monitor.observe(rng.normal(10.0, 1.0), rng.normal(80.0, 5.0), rng.normal(40.0, 3.0)) for _ in range(100)]
    first = next(n for n, s in enumerate(darker, 1) if s.alarm)
    assert (
        darker[first - 1].tripped == ["brightness"] and first <= 60
    )  # the window turns within about half its length  # the window turns within about half its length


def test_scores_past_the_threshold_trip_ks_and_the_share():
    rng = np.random.default_rng(3)
    monitor = DriftMonitor(reference(), DriftLimits(window=50, min_images=20))
    for _ in range(30):
        status = monitor.observe(rng.normal(13.0, 1.0), 100.0, 40.0)
    assert set(status.tripped) == {"ks", "above_threshold"} and status.ks > 0.5
    text = monitor.exposition()
    assert 'indad_drift_alarm{model="model"} 1' in text and "indad_drift_score_ks" in text


def test_no_alarm_before_min_images_and_limits_are_checked():
    monitor = DriftMonitor(reference())
    for _ in range(29):
        assert not monitor.observe(50.0, 10.0, 1.0).alarm
    assert monitor.observe(50.0, 10.0, 1.0).alarm
    with pytest.raises(InputError, match="min_images"):
        DriftLimits(window=10, min_images=20)


def test_reference_from_a_model_file(tiny_model_file: Path):
    header = read_header(tiny_model_file)
    ref = DriftReference.from_header(header)
    assert ref.threshold == header["thresholds"]["image"] and ref.score_quantiles.size == 101
    assert 0 < ref.brightness < 255
    with pytest.raises(InputError, match="no drift reference"):
        DriftReference.from_header({"thresholds": None})


def test_drift_over_a_record_for_the_app(tiny_model_file: Path, tiny_dataset: Path, tmp_path: Path):
    from indad.app.review import drift_over_time
    from indad.lifecycle.record import PredictionRecord

    record = PredictionRecord(tmp_path / "record.db")
    images = sorted((tiny_dataset / "test").rglob("*.png"))
    for i in range(25):
        record.write({"time": f"2026-12-03T10:00:{i:02d}Z", "source": str(images[i % len(images)]), "score": 10.0})
    rows = drift_over_time(record, str(tiny_model_file))
    assert [r["images"] for r in rows] == [10, 20] and all(abs(r["brightness"]) < 0.2 for r in rows)
