import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from indad.errors import InputError
from indad.methods.anomaly_map import AnomalyMapGenerator, upsample_matrix


@pytest.mark.parametrize(
    "grid, size, sigma",
    [
        ((32, 32), (256, 256), 8.0),
        ((64, 48), (256, 192), 4.0),
        ((5, 7), (20, 28), 4.0),
        ((3, 3), (9, 9), 6.0),
        ((8, 8), (8, 8), 0.0),
    ],
)
def test_map_is_scipy_blur_of_the_bilinear_upsampling(grid, size, sigma):
    scores = torch.rand(2, *grid, generator=torch.Generator().manual_seed(0)) * 5
    up = F.interpolate(scores[:, None].double(), size=size, mode="bilinear", align_corners=False)[:, 0].numpy()
    expected = np.stack([gaussian_filter(m, sigma, mode="reflect") if sigma else m for m in up])
    maps = AnomalyMapGenerator(size, sigma)(scores)
    assert maps.shape == (2, *size) and maps.dtype == torch.float32
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-5)


def test_upsample_matrix_is_torch_linear_interpolation():
    for n_in, n_out in ((4, 16), (7, 20), (5, 5), (16, 4)):
        eye = torch.eye(n_in, dtype=torch.float64)[:, None]
        torch_weights = F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[:, 0].T.numpy()
        np.testing.assert_allclose(upsample_matrix(n_in, n_out), torch_weights, atol=1e-12)


def test_bad_sigma():
    with pytest.raises(InputError, match="sigma"):
        AnomalyMapGenerator((8, 8), -1.0)
