"""Outputs of the original implementations, in shared/fixtures/ beside the repository.

Each folder has a README saying how it was made and which tolerance it justifies. The folder is
found through $SCOREGEN_SHARED_FIXTURES (or $SCOREGEN_FIXTURES, the name issue 24's tests used),
else as shared/fixtures in the repository's parent or an ancestor of it (a worktree sits deeper
than a clone). A test that needs an absent one is skipped, or fails under CI (CI=true), so that
CI cannot silently lose a parity check. Benchmarks look folders up with `find_shared_fixture`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES_ENVS = ("SCOREGEN_SHARED_FIXTURES", "SCOREGEN_FIXTURES")
REPOSITORY = Path(__file__).resolve().parents[1]


def find_shared_fixture(name: str) -> Path | None:
    """The folder shared/fixtures/NAME, or None when it is not on this machine."""
    roots = [Path(os.environ[env]) for env in FIXTURES_ENVS if os.environ.get(env)]
    roots += [parent / "shared" / "fixtures" for parent in REPOSITORY.parents]
    return next((root / name for root in roots if (root / name).is_dir()), None)


def shared_fixture(name: str) -> Path:
    """The folder shared/fixtures/NAME, or skip the test (fail under CI) when it is absent."""
    folder = find_shared_fixture(name)
    if folder is not None:
        return folder
    reason = f"shared fixture {name!r} not found (set ${FIXTURES_ENVS[0]})"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)
