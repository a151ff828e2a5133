"""``python -m bench``: run every benchmark that writes to ``bench/RESULTS.md``."""

from __future__ import annotations

from bench import core


def main() -> None:
    core.main()


if __name__ == "__main__":
    main()
