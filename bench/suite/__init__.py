"""The benchmark suite of issue 3: open-loop load, baselines and scenarios S1–S7.

``python -m bench --scenario S1|...|S7|all --backend sqlite|memory [--quick]`` runs it; see
:mod:`bench.suite.runner` for the outputs and :mod:`bench.suite.config` for the knobs.
"""
