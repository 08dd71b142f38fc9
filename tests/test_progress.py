"""Progress reporting: tqdm bars or events for a callback, from the same loops."""

from __future__ import annotations

import numpy as np
import torch

from indad.methods import PatchCore
from indad.progress import ProgressEvent, progress_bar, track


def test_track_sends_start_each_step_and_total():
    events: list[ProgressEvent] = []
    assert list(track(iter("abc"), "letters", 3, events.append)) == ["a", "b", "c"]
    assert [(e.stage, e.done, e.total) for e in events] == [("letters", i, 3) for i in range(4)]
    assert events[-1].fraction == 1.0


def test_track_takes_the_length_and_passes_items_through_without_callback():
    events: list[ProgressEvent] = []
    list(track([1, 2], "x", progress=events.append))
    assert events[-1].total == 2
    assert list(track(range(3), "quiet", progress=False)) == [0, 1, 2]


def test_progress_bar_counts_units_and_unknown_total():
    events: list[ProgressEvent] = []
    with progress_bar("download", None, events.append) as bar:
        bar.update(10)
        bar.update(5)
    assert [e.done for e in events] == [0, 10, 15]
    assert events[-1].fraction is None


def test_fit_reports_every_stage_the_terminal_bars_show(tiny_root):
    events: list[ProgressEvent] = []
    model = PatchCore(image_size=64, batch_size=4, f_coreset=0.25, progress=events.append).fit(tiny_root)
    stages = list(dict.fromkeys(e.stage for e in events))
    assert stages == ["patchcore: features", "coreset"]
    for stage in stages:
        last = [e for e in events if e.stage == stage][-1]
        assert last.total and last.done == last.total
    assert [e.done for e in events if e.stage == "patchcore: features"] == [0, 1, 2]  # 8 images, batches of 4
    assert model.hparams()["progress"] is True  # plain data in reports and model files
    events.clear()
    pred = model.predict(tiny_root)
    assert events[-1].stage == "patchcore: predict" and events[-1].done == events[-1].total == 1  # 4 test images
    assert np.isfinite(pred.scores).all()
    # Reporting progress changes nothing the model computes.
    quiet = PatchCore(image_size=64, batch_size=4, f_coreset=0.25, progress=False).fit(tiny_root)
    assert torch.equal(model.memory_bank, quiet.memory_bank)
    np.testing.assert_array_equal(pred.scores, quiet.predict(tiny_root).scores)
