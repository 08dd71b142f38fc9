import torch

from tests.memory.reference import coverage_radius


def test_coverage_radius_is_the_largest_distance_to_the_nearest_centre():
    gen = torch.Generator().manual_seed(0)
    points, centres = torch.randn(300, 7, generator=gen), torch.randn(9, 7, generator=gen)
    slow = max(min(float(torch.dist(p, c)) for c in centres) for p in points)
    assert abs(coverage_radius(points, centres) - slow) < 1e-4
    assert coverage_radius(centres, centres) < 1e-2  # sqrt of float32 cancellation
