"""The ``prefix`` dialect: every listed attribute exists and starts with the given value."""

from __future__ import annotations

from triggers.filters.affix import AffixFilter


class PrefixFilter(AffixFilter):
    """``prefix: {name: value, ...}``."""

    __slots__ = ()

    @staticmethod
    def test(value: str, wanted: str) -> bool:
        return value.startswith(wanted)
