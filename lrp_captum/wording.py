"""How the package words a count in what it prints: ``1 tile``, ``2 tiles``, ``1 focus``, ``3 foci``."""
from __future__ import annotations

__all__ = ["counted"]

#: nouns whose plural is not the singular + "s"
IRREGULAR_PLURALS = {"focus": "foci", "class": "classes", "batch": "batches", "index": "indices"}


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` in the number ``n`` asks for: ``counted(1, "slide") == "1 slide"``,
    ``counted(3, "focus") == "3 foci"``, ``counted(12345, "tile") == "12,345 tiles"``.

    ``plural`` overrides the plural (default: :data:`IRREGULAR_PLURALS`, else ``noun + "s"``).
    """
    word = noun if n == 1 else (plural or IRREGULAR_PLURALS.get(noun, noun + "s"))
    return f"{n:,} {word}"
