"""YAML run configurations: which method, with which hyperparameters."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, IndadError, InputError
from .methods import METHODS, AnomalyModel


def builtin_configs() -> dict[str, Path]:
    """The configurations shipped with indad, by name (file stem)."""
    folder = resources.files("indad").joinpath("configs")
    return {Path(f.name).stem: Path(str(f)) for f in folder.iterdir() if f.name.endswith(".yaml")}


def config_path(name_or_path: str | os.PathLike) -> Path:
    """A config file given as a path, or by the name of a shipped config (``patchcore_paper``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = builtin_configs()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise ConfigError(
        f"config {str(name_or_path)!r} not found: not a file, nor a shipped config ({', '.join(sorted(shipped))})"
    )


def load_config(name_or_path: str | os.PathLike, method: str | None = None) -> dict[str, Any]:
    """Read and check a config: ``method`` plus hyperparameters of that method.

    Parameters
    ----------
    name_or_path:
        A YAML file, or the name of a shipped config.
    method:
        The method it is used for; a config naming another method is refused.

    Returns
    -------
    dict
        ``{"method": ..., "params": {...}}`` with only parameter names the
        method accepts; a relative ``roi`` picture path is taken from the
        config's folder.

    Raises
    ------
    ConfigError
        For unreadable YAML, an unknown method, a method mismatch, or an unknown
        key; the message names the file and the offending value.
    """
    path = config_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping of keys to values, got {type(raw).__name__}")
    raw = dict(raw)
    name = raw.pop("method", method)
    if name is None:
        raise ConfigError(f"config {path} does not say which method it is for (key 'method')")
    if name not in METHODS:
        raise ConfigError(f"config {path}: unknown method {name!r}; known: {', '.join(METHODS)}")
    if method is not None and name != method:
        raise ConfigError(f"config {path} is for method {name!r}, not {method!r}")
    check_params(name, raw, str(path))
    if isinstance(raw.get("roi"), str) and not Path(raw["roi"]).is_absolute():
        raw["roi"] = str(path.parent / raw["roi"])  # a region of interest's picture sits beside its config
    return {"method": name, "params": raw}


def check_params(method: str, params: dict[str, Any], where: str = "parameters") -> None:
    """Raise :class:`ConfigError` for any key the method's constructor does not take."""
    defaults = METHODS[method].param_defaults()
    unknown = [k for k in params if k not in defaults]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} for {method}; valid keys: {', '.join(defaults)}"
        )
    for key, value in params.items():
        default = defaults[key]
        if default is None or key in _FREE_FORM:
            continue  # checked by the method itself, with the key in its message
        expected = _KINDS.get(type(default))
        if expected is not None and not _is_kind(value, expected):
            raise ConfigError(f"{where}: {key} must be {_KIND_NAMES[expected]}, got {value!r}")


def resolve_params(method: str, config: str | os.PathLike | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a run: those of ``config`` (none without one), then each override that is not None.

    Parameters
    ----------
    method:
        The method the config must be for.
    config:
        A YAML file or the name of a shipped config, or None.
    overrides:
        Parameter values given apart from the config (command-line options); None
        leaves the config's value, or the method's default.
    """
    params = load_config(config, method)["params"] if config else {}
    params.update({k: v for k, v in overrides.items() if v is not None})
    return params


def build_model(method: str, params: dict[str, Any], where: str = "parameters") -> AnomalyModel:
    """A method instance from checked parameters; bad values raise :class:`ConfigError` naming them.

    ``where`` says where the parameters come from (a config file, ``"options"``)
    in the message; a more specific error of the constructor (an unknown
    backbone, a bad device) passes unchanged.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    check_params(method, params, where)
    try:
        return METHODS[method](**params)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, IndadError) and type(exc) not in (InputError, ConfigError):
            raise  # a more specific error (an unknown backbone, a bad device) says what it is
        raise ConfigError(f"{where}: {exc}") from exc


_FREE_FORM = {"image_size", "crop_size", "strides", "weights", "progress"}  # progress: also a callback
_KINDS = {bool: "bool", int: "int", float: "number", str: "text", tuple: "list", list: "list"}
_KIND_NAMES = {"bool": "true or false", "int": "an integer", "number": "a number", "text": "a string", "list": "a list"}


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "text":
        return isinstance(value, str)
    return isinstance(value, (list, tuple))
