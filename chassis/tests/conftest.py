"""Make `chassis` and the repo's shared `tests.support` importable without installing."""

import sys
from pathlib import Path

_CHASSIS_DIR = Path(__file__).resolve().parents[1]
_REPO_ROOT = _CHASSIS_DIR.parent

# pytest's rootdir may be chassis/tests when run on this folder alone, so the
# repo-root conftest is not guaranteed to load; put both roots on the path.
for _path in (_REPO_ROOT, _CHASSIS_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


import pytest  # noqa: E402


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on PostgreSQL and on SQLite (the embedded mode): a fresh database."""
    from chassis.db import normalise_url

    if request.param == "postgresql":
        return normalise_url(request.getfixturevalue("postgres_database"))
    return f"sqlite:///{tmp_path / 'test.db'}"
