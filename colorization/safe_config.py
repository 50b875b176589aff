"""Building objects from configs we do not trust: the run config stored in a checkpoint.

A checkpoint is a file users download and share. ``torch.load(weights_only=True)`` keeps
pickle from running code, but the config it carries would still run any callable if it
went to ``hydra.utils.instantiate`` (``_target_: pathlib.Path.write_text``, a call hidden in
an integer field, ``${oc.env:...}`` reading the environment). So a checkpoint's config is
never given to Hydra or OmegaConf: :func:`check` walks it against :data:`REGISTRY` (the
project's own classes, and which of their arguments hold another object of which kind) and
:func:`build` calls those classes itself. Everything else must be a plain value (None,
bool, int, float, str, lists of them); anything more is refused with one line naming the
key. Configs the user writes (``conf/``, overrides) are trusted and go through Hydra.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class UnsafeConfig(ValueError):
    """A config from a file that asks for more than the project allows; names the key."""


@dataclass(frozen=True)
class Kind:
    """Objects a config node may build: ``targets`` (name in a config -> "module:attr") and
    the arguments that may hold a nested object (argument -> kind name; a plain value there,
    such as the digits data's ``source: sklearn``, is checked as a plain value)."""

    targets: dict[str, str]
    children: dict[str, str] = field(default_factory=dict)
    required: frozenset[str] = frozenset()  # children that must be a nested object


def _targets(module: str, *names: str, alias: str | None = None) -> dict[str, str]:
    """Both spellings a config uses: ``alias.Name`` (the package export) and ``module.Name``."""
    found = {f"{module}.{n}": f"{module}:{n}" for n in names}
    if alias:
        found.update({f"{alias}.{n}": f"{module}:{n}" for n in names})
    return found


#: What a checkpoint may build. A new model, network or data class joins here (and its test
#: in tests/test_untrusted_checkpoints.py checks that the project's checkpoints still load).
REGISTRY: dict[str, Kind] = {
    "task": Kind(
        {
            **_targets("colorization.tasks.colorization", "ColorizationModule", alias="colorization.tasks"),
            **_targets("colorization.tasks.vae", "VAEColorizationModule", alias="colorization.tasks"),
            **_targets("colorization.tasks.restoration", "RestorationModule", alias="colorization.tasks"),
            **_targets("colorization.tasks.reconstruction", "ReconstructionModule", alias="colorization.tasks"),
        },
        {"net": "net", "degradation": "degradation"},
        frozenset({"net"}),
    ),
    "net": Kind(
        {
            **_targets(
                "colorization.models.baselines",
                "GrayBaseline",
                "MeanAbBaseline",
                "NeighbourhoodLinear",
                "NeighbourhoodMLP",
                "PCABaseline",
                alias="colorization.models",
            ),
            **_targets("colorization.models.cae", "StackedCAE", alias="colorization.models"),
            **_targets("colorization.models.fusion", "FusionColorizer", alias="colorization.models"),
            **_targets("colorization.models.linear_ae", "LinearAE", "LinearVAE", alias="colorization.models"),
            **_targets("colorization.models.skip_cae", "SkipCAE", alias="colorization.models"),
            **_targets("colorization.models.unet", "EffNetUNet", alias="colorization.models"),
            **_targets("colorization.models.vae", "ConditionalVAE", alias="colorization.models"),
        }
    ),
    "degradation": Kind(_targets("colorization.data.degrade", "Degradation")),
    "datamodule": Kind(
        {
            **_targets("colorization.data.datamodule", "LabDataModule", alias="colorization.data"),
            **_targets("colorization.data.digits", "DigitsDataModule"),
        },
        {"source": "source", "augment": "augment"},
    ),
    "source": Kind(
        {
            **_targets(
                "colorization.data.sources",
                "ImageFolder",
                "SamplePhotos",
                "TorchvisionImages",
                alias="colorization.data",
            ),
            **_targets("colorization.data.shards", "ShardSource"),
        }
    ),
    "augment": Kind(_targets("colorization.data.augment", "DeviceAugmentation", alias="colorization.data")),
}

#: modules of the user's own models (comma-separated), imported before a stored config is
#: checked so that their ``@register``-ed classes may be built: code the user trusts, named
#: by the user, never by the checkpoint. Installed packages can declare theirs as entry points
#: of the group ``colorization.plugins``.
PLUGINS_ENV = "COLORIZATION_PLUGINS"


def register(kind: str):
    """Class decorator: allow ``cls`` to be built from stored configs as a ``kind`` ("net",
    "task", "source", ...), under the name a config gives it (``module.Class``)::

        @register("net")
        class MyNet(nn.Module): ...
    """

    def add(cls):
        name = f"{cls.__module__}.{cls.__qualname__}"
        REGISTRY[kind].targets[name] = f"{cls.__module__}:{cls.__qualname__}"
        return cls

    return add


@functools.cache
def load_plugins() -> tuple[str, ...]:
    """Import the user's model modules (:data:`PLUGINS_ENV`, entry points); returns their names."""
    from importlib.metadata import entry_points

    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    names += [ep.value.split(":")[0] for ep in entry_points(group="colorization.plugins")]
    for name in names:
        importlib.import_module(name)
    return tuple(names)


#: keys Hydra gives a meaning; of them a stored config may use only these two
_ALLOWED_SPECIAL = {"_target_", "_partial_"}


def _check_plain(value: Any, key: str) -> None:
    if value is None or isinstance(value, (bool, int, float)):
        return
    if isinstance(value, str):
        if "${" in value:
            raise UnsafeConfig(f"{key}: interpolation {value[:60]!r} is not allowed in a stored config")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{key}[{i}]")
        return
    if isinstance(value, Mapping):
        if "_target_" in value:
            raise UnsafeConfig(f"{key}: a call ({str(value['_target_'])[:80]}) is not allowed here, only plain values")
        raise UnsafeConfig(f"{key}: a mapping is not allowed here, only plain values (numbers, strings, lists)")
    raise UnsafeConfig(f"{key}: a {type(value).__name__} is not a plain config value")


def check(node: Any, kind: str, key: str) -> None:
    """Raise :class:`UnsafeConfig` naming the key unless ``node`` builds only what
    ``REGISTRY[kind]`` allows (the user's plugins loaded first), with plain values everywhere else."""
    load_plugins()
    _check(node, kind, key)


def _check(node: Any, kind: str, key: str) -> None:
    if not isinstance(node, Mapping):
        raise UnsafeConfig(f"{key}: expected a config with a _target_, got a {type(node).__name__}")
    spec = REGISTRY[kind]
    target = node.get("_target_")
    if not isinstance(target, str) or target not in spec.targets:
        shown = str(target)[:80] if target is not None else "no _target_"
        raise UnsafeConfig(
            f"{key}._target_: {shown} is not a {kind} this project builds from a stored config "
            f"(a model of your own: @register it and set {PLUGINS_ENV}=<its module>)"
        )
    for name, value in node.items():
        where = f"{key}.{name}"
        if not isinstance(name, str) or not name.isidentifier():
            raise UnsafeConfig(f"{key}: key {str(name)[:40]!r} is not an argument name")
        if name.startswith("_"):
            if name not in _ALLOWED_SPECIAL:
                raise UnsafeConfig(f"{where}: not allowed in a stored config")
            if name == "_partial_" and (not isinstance(value, bool) or (value and kind != "source")):
                raise UnsafeConfig(f"{where}: only a data source may be partial (true or false)")
        elif name in spec.children and isinstance(value, Mapping):
            _check(value, spec.children[name], where)
        elif name in spec.required:
            raise UnsafeConfig(f"{where}: expected a config with a _target_, got a {type(value).__name__}")
        else:
            _check_plain(value, where)


def _resolve(target: str, kind: str) -> Any:
    module, attr = REGISTRY[kind].targets[target].split(":")
    return getattr(importlib.import_module(module), attr)


def build(node: Mapping, kind: str, key: str, forced: Mapping[str, Any] | None = None) -> Any:
    """Check ``node`` (:func:`check`), then build it by calling the registered classes
    directly: no Hydra, no OmegaConf, no resolvers. ``forced`` sets arguments on every class
    that takes them, whatever the config says (e.g. never download from a stored config)."""
    check(node, kind, key)
    return _build(node, kind, key, forced or {})


def _build(node: Mapping, kind: str, key: str, forced: Mapping[str, Any]) -> Any:
    spec = REGISTRY[kind]
    kwargs = {}
    for name, value in node.items():
        if name in _ALLOWED_SPECIAL:
            continue
        if name in spec.children and isinstance(value, Mapping):
            kwargs[name] = _build(value, spec.children[name], f"{key}.{name}", forced)
        else:
            kwargs[name] = list(value) if isinstance(value, tuple) else value
    cls = _resolve(node["_target_"], kind)
    takes = inspect.signature(cls).parameters
    kwargs.update({name: value for name, value in forced.items() if name in takes or name in kwargs})
    if node.get("_partial_"):
        return functools.partial(cls, **kwargs)
    return cls(**kwargs)
