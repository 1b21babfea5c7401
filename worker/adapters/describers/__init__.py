"""Describer registry: a name -> a factory that builds it from Settings (explicit, no scanning)."""

from __future__ import annotations

from collections.abc import Callable

from worker.config import Settings
from worker.core.ports import Describer
from worker.errors import ConfigError


def _local(settings: Settings) -> Describer:
    from worker.adapters.describers.local import LocalDescriber

    return LocalDescriber()


def _dashscope(settings: Settings) -> Describer:
    from worker.adapters.describers.dashscope import build

    return build(settings)


DESCRIBERS: dict[str, Callable[[Settings], Describer]] = {"local": _local, "dashscope": _dashscope}


def register(name: str) -> Callable[[Callable[[Settings], Describer]], Callable[[Settings], Describer]]:
    def deco(factory: Callable[[Settings], Describer]) -> Callable[[Settings], Describer]:
        DESCRIBERS[name] = factory
        return factory

    return deco


def build_describer(name: str, settings: Settings) -> Describer:
    try:
        factory = DESCRIBERS[name]
    except KeyError:
        raise ConfigError(f"unknown describer '{name}'; choose one of {', '.join(sorted(DESCRIBERS))}") from None
    return factory(settings)
