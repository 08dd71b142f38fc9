import numpy as np
import pytest

from indad.errors import InputError
from indad.regions import find_regions
from indad.thresholds import (
    Decision,
    Thresholds,
    decision_label,
    f1_thresholds,
    good_quantile_thresholds,
    is_defective,
)


def test_good_quantile_rule():
    scores = np.arange(1, 101, dtype=float)
    maps = np.zeros((100, 4, 4))
    maps[:, 0, 0] = scores * 2
    t = good_quantile_thresholds(scores, maps, 0.9)
    assert t.image == pytest.approx(np.quantile(scores, 0.9)) and t.pixel == pytest.approx(2 * t.image)
    assert (t.rule, t.quantile, t.n_images) == ("good_quantile", 0.9, 100)
    assert good_quantile_thresholds(scores, maps, 1.0).image == 100
    assert Thresholds.from_dict(t.to_dict()) == t
    with pytest.raises(InputError, match="quantile"):
        good_quantile_thresholds(scores, maps, 0)
    with pytest.raises(InputError, match="at least one"):
        good_quantile_thresholds(np.array([]), np.zeros((0, 2, 2)))


def test_f1_rule():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.5, 0.9])
    masks = np.zeros((5, 2, 2), dtype=bool)
    masks[3:, 0, 0] = True
    maps = masks * 5.0 + 1.0
    t = f1_thresholds(labels, scores, masks, maps)
    assert t.image == 0.5 and t.pixel == 6.0 and t.rule == "f1_max"
    with pytest.raises(InputError, match="good and defective"):
        f1_thresholds(np.zeros(3), scores[:3], None, None)


def test_a_score_at_the_threshold_is_defective():
    assert is_defective(0.5, 0.5) is True and is_defective(np.float32(0.49), 0.5) is False
    np.testing.assert_array_equal(is_defective(np.array([[0.4, 0.5], [0.6, 0.1]]), 0.5), [[False, True], [True, False]])
    assert [decision_label(s, 0.5) for s in (0.5, 0.2)] == ["defective", "good"]


def test_the_region_rule_judges_by_the_regions_left_after_min_area():
    t = Thresholds(image=10.0, pixel=1.0, rule="good_quantile", quantile=0.99, n_images=5)
    amap = np.zeros((20, 20))
    amap[2:5, 2:5] = 2.0  # one region of 9 pixels
    regions = find_regions(amap, t.pixel)  # every region: the rule leaves out those below its min_area itself
    for rule, score, expected in [
        (Decision(), 3.0, "good"),  # by score: below the image threshold, whatever the map shows
        (Decision("regions"), 3.0, "defective"),
        (Decision("regions", 10), 3.0, "good"),  # the only region is smaller than min_area
        (Decision("regions", 9), 3.0, "defective"),
        (Decision("score", 10), 12.0, "defective"),
    ]:
        assert rule.label(score, regions, t) == expected, rule
        assert rule.label(score, find_regions(amap, t.pixel, rule.min_area), t) == expected, rule
    with pytest.raises(InputError, match="score, regions"):
        Decision("area")
    with pytest.raises(InputError, match="min_area"):
        Decision("regions", -1)
