"""The architecture registry: ``register(name)``, ``get(name, **options)``, ``names()``.

An architecture is registered as its *config dataclass*: a frozen dataclass whose fields are the
architecture's options (with documented defaults), whose ``__post_init__`` validates them, and
whose ``build()`` returns a :class:`~model_zoo.spec.ZooModel`::

    @register("my-net")
    @dataclasses.dataclass(frozen=True)
    class MyNetConfig(ArchitectureConfig):
        depth: int = 18          # one of 18, 34

        def __post_init__(self):
            check_choice(self, "depth", (18, 34))

        def build(self) -> ZooModel:
            ...

    zoo = get("my-net", depth=34)      # ZooModel
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["ArchitectureConfig", "register", "get", "names", "get_config_class", "check_choice",
           "check_range", "add_loader"]

_REGISTRY: dict[str, type[ArchitectureConfig]] = {}
# Callables that register architectures on first use of the registry (model_zoo/__init__.py adds the
# import of the built-in architectures here, so that importing model_zoo does not import TensorFlow).
_LOADERS: list[Callable[[], None]] = []
_loading = False


def add_loader(loader: Callable[[], None]) -> None:
    """Run ``loader`` (once) before the registry is first read or written."""
    _LOADERS.append(loader)


def _load() -> None:
    global _loading
    if _loading:            # a loader's own @register calls: the registry is being filled
        return
    _loading = True
    try:
        while _LOADERS:
            _LOADERS[0]()
            _LOADERS.pop(0)  # only once it succeeded: a failed import is retried (and fails loudly) next time
    finally:
        _loading = False

C = TypeVar("C", bound="type[ArchitectureConfig]")


class ArchitectureConfig:
    """Base class of the per-architecture option dataclasses (see the module docstring)."""

    #: the registered name, set by :func:`register`
    architecture: str = ""

    def build(self):
        """Return a :class:`~model_zoo.spec.ZooModel` for these options."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The options as a plain dict (what ``config.json`` stores under ``"options"``)."""
        return dataclasses.asdict(self)


def register(name: str) -> Callable[[C], C]:
    """Class decorator: register a config dataclass under ``name`` (e.g. ``'imagenet-resnet'``).

    Raises:
        ValueError: ``name`` is empty or already registered, or the class is not a dataclass
            subclassing :class:`ArchitectureConfig`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register: the architecture name must be a non-empty str, got {name!r}")

    def deco(cls: C) -> C:
        if not (isinstance(cls, type) and issubclass(cls, ArchitectureConfig) and dataclasses.is_dataclass(cls)):
            raise ValueError(f"register({name!r}): expected a dataclass subclassing ArchitectureConfig, got {cls!r}")
        _load()   # the built-in architectures first, so a duplicate of one of them is refused here
        if name in _REGISTRY:
            raise ValueError(f"register: architecture {name!r} is already registered "
                             f"(by {_REGISTRY[name].__qualname__})")
        cls.architecture = name
        _REGISTRY[name] = cls
        return cls

    return deco


def names() -> list[str]:
    """The registered architecture names, sorted."""
    _load()
    return sorted(_REGISTRY)


def get_config_class(name: str) -> type[ArchitectureConfig]:
    """The config dataclass registered under ``name``.

    Raises:
        ValueError: unknown name; the message lists the registered ones.
    """
    _load()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model architecture {name!r}; valid choices: {', '.join(names())}") from None


def get(name: str, **options):
    """Build the :class:`~model_zoo.spec.ZooModel` of architecture ``name`` with ``options``.

    Options not given take the config dataclass' defaults. JSON-friendly spellings are accepted
    where unambiguous (an int ``1`` for a float option, ``"50"`` is *not* accepted for an int).

    Raises:
        ValueError: unknown architecture, unknown option, or an invalid option value; the message
            lists the valid choices.
    """
    cls = get_config_class(name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        valid = ", ".join(f"{k} (default {f.default!r})" for k, f in fields.items()) or "none"
        raise ValueError(f"{name}: unknown option(s) {unknown}; valid options: {valid}")
    return cls(**options).build()


def check_choice(config: ArchitectureConfig, field: str, choices: Iterable) -> None:
    """Raise ``ValueError`` naming the architecture, the option and the valid choices unless
    ``getattr(config, field)`` is one of ``choices`` (an int is accepted for an equal float)."""
    choices = tuple(choices)
    value = getattr(config, field)
    ok = any(type(value) is type(c) and value == c for c in choices) or (
        isinstance(value, int) and not isinstance(value, bool)
        and any(isinstance(c, float) and value == c for c in choices))
    if not ok:
        raise ValueError(f"{config.architecture or type(config).__name__}: invalid {field}={value!r}; "
                         f"valid choices: {', '.join(repr(c) for c in choices)}")


def check_range(config: ArchitectureConfig, field: str, low: float, high: float) -> None:
    """Raise ``ValueError`` unless ``low <= getattr(config, field) <= high`` (a real number)."""
    value = getattr(config, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise ValueError(f"{config.architecture or type(config).__name__}: invalid {field}={value!r}; "
                         f"expected a number in [{low}, {high}]")
