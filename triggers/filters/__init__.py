"""Trigger filters: the legacy ``filter.attributes`` map and the Subscriptions API ``filters``."""

from triggers.filters.compile import FilterProblem, check_filters, compile_trigger_filter

__all__ = ["FilterProblem", "check_filters", "compile_trigger_filter"]
