"""Outputs of the original implementations, in shared/fixtures/ beside the repository.

Each folder has a README saying how it was made and which tolerance it justifies. The folder is
found through $SCOREGEN_SHARED_FIXTURES, else as shared/fixtures in the repository's parent or an
ancestor of it (a worktree sits deeper than a clone). A test that needs an absent one is skipped,
or fails under CI (CI=true), so that CI cannot silently lose a parity check.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES_ENV = "SCOREGEN_SHARED_FIXTURES"
REPOSITORY = Path(__file__).resolve().parents[1]


def shared_fixture(name: str) -> Path:
    """The folder shared/fixtures/NAME, or skip the test when it is not on this machine."""
    roots = [Path(os.environ[FIXTURES_ENV])] if os.environ.get(FIXTURES_ENV) else []
    roots += [parent / "shared" / "fixtures" for parent in REPOSITORY.parents]
    for root in roots:
        if (root / name).is_dir():
            return root / name
    reason = f"shared fixture {name!r} not found (set ${FIXTURES_ENV})"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)
