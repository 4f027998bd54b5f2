"""Fixtures the outbox tests share."""

from __future__ import annotations

import pytest
from tests.support.outbox_helpers import outbox_config

from kiosk.outbox import Outbox


@pytest.fixture
def setup(tmp_path):
    """(configuration, outbox, tmp_path): an outbox on a private spool in ``tmp_path``, closed afterwards."""
    config = outbox_config(tmp_path)
    outbox = Outbox.from_config(config)
    yield config, outbox, tmp_path
    outbox.close()
