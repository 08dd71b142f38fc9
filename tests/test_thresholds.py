import numpy as np
import pytest

from indad.thresholds import Thresholds, decision_label, f1_thresholds, good_quantile_thresholds, is_defective


def test_good_quantile_rule():
    scores = np.arange(1, 101, dtype=float)
    maps = np.zeros((100, 4, 4))
    maps[:, 0, 0] = scores * 2
    t = good_quantile_thresholds(scores, maps, 0.9)
    assert t.image == pytest.approx(np.quantile(scores, 0.9)) and t.pixel == pytest.approx(2 * t.image)
    assert (t.rule, t.quantile, t.n_images) == ("good_quantile", 0.9, 100)
    assert good_quantile_thresholds(scores, maps, 1.0).image == 100
    assert Thresholds.from_dict(t.to_dict()) == t
    with pytest.raises(ValueError, match="quantile"):
        good_quantile_thresholds(scores, maps, 0)
    with pytest.raises(ValueError, match="at least one"):
        good_quantile_thresholds(np.array([]), np.zeros((0, 2, 2)))


def test_f1_rule():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.5, 0.9])
    masks = np.zeros((5, 2, 2), dtype=bool)
    masks[3:, 0, 0] = True
    maps = masks * 5.0 + 1.0
    t = f1_thresholds(labels, scores, masks, maps)
    assert t.image == 0.5 and t.pixel == 6.0 and t.rule == "f1_max"
    with pytest.raises(ValueError, match="good and defective"):
        f1_thresholds(np.zeros(3), scores[:3], None, None)


def test_a_score_at_the_threshold_is_defective():
    assert is_defective(0.5, 0.5) is True and is_defective(np.float32(0.49), 0.5) is False
    np.testing.assert_array_equal(is_defective(np.array([[0.4, 0.5], [0.6, 0.1]]), 0.5), [[False, True], [True, False]])
    assert [decision_label(s, 0.5) for s in (0.5, 0.2)] == ["defective", "good"]
