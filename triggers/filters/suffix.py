"""The ``suffix`` dialect: every listed attribute exists and ends with the given value."""

from __future__ import annotations

from triggers.filters.affix import AffixFilter


class SuffixFilter(AffixFilter):
    """``suffix: {name: value, ...}``."""

    __slots__ = ()

    @staticmethod
    def test(value: str, wanted: str) -> bool:
        return value.endswith(wanted)
