"""Fixtures for the storage tests."""

from __future__ import annotations

import pytest

from storage.provenance import Provenance


@pytest.fixture
def provenance() -> Provenance:
    return Provenance(backbone_sha256="ab" * 32, code_version="test", crop_scale=1.2)
