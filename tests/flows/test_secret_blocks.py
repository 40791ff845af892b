"""Secrets a deployment names by Secret block (`<NAME>_BLOCK`), read by the run itself so they are
never stored in the deployment's job variables; the environment wins."""

from __future__ import annotations

import os
import uuid

import pytest

pytestmark = pytest.mark.prefect


def test_a_setting_named_by_block_is_read_from_it_and_the_environment_wins(
    harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    from flows.tick import SecretBlockMissing, secrets_from_blocks

    block = f"unsubscribe-{uuid.uuid4().hex[:8]}"
    Secret(value="from-the-block").save(block, overwrite=True)
    monkeypatch.delenv("TOUCHFLOW_UNSUBSCRIBE_SECRET", raising=False)
    monkeypatch.delenv("TOUCHFLOW_DATABASE_URL_BLOCK", raising=False)
    monkeypatch.delenv("TOUCHFLOW_SENDGRID_WEBHOOK_KEY_BLOCK", raising=False)
    monkeypatch.setenv("TOUCHFLOW_UNSUBSCRIBE_SECRET_BLOCK", block)

    assert secrets_from_blocks() == ["TOUCHFLOW_UNSUBSCRIBE_SECRET"]
    assert os.environ["TOUCHFLOW_UNSUBSCRIBE_SECRET"] == "from-the-block"

    monkeypatch.setenv("TOUCHFLOW_UNSUBSCRIBE_SECRET", "from-the-environment")
    assert secrets_from_blocks() == []
    assert os.environ["TOUCHFLOW_UNSUBSCRIBE_SECRET"] == "from-the-environment"

    monkeypatch.delenv("TOUCHFLOW_UNSUBSCRIBE_SECRET")
    monkeypatch.setenv("TOUCHFLOW_UNSUBSCRIBE_SECRET_BLOCK", "no-such-block")
    with pytest.raises(SecretBlockMissing, match="'no-such-block', which does not exist"):
        secrets_from_blocks()
    assert "TOUCHFLOW_UNSUBSCRIBE_SECRET" not in os.environ
