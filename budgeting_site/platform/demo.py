"""Demo data: each app registers a seeder in `ready()`; `manage.py seed_demo` runs them all."""

from collections.abc import Callable

_SEEDERS: list[Callable[[str], None]] = []


def register(seeder: Callable[[str], None]) -> None:
    if seeder not in _SEEDERS:
        _SEEDERS.append(seeder)


def seeders() -> list[Callable[[str], None]]:
    return list(_SEEDERS)
