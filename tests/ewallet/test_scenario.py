"""The README's main job: the scripted scenario succeeds on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.ewallet.__main__ import main
from tests.conftest import PG_URL, _ensure_pg_database


def test_scenario_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "qr.png"
    code = main(
        [
            "--database-url",
            f"sqlite:///{tmp_path / 'e.db'}",
            "--deterministic",
            "--qr-png",
            str(png),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "wallet.limit_exceeded" in out
    assert "verified intact" in out


@pytest.mark.postgres
def test_scenario_on_postgres(capsys: pytest.CaptureFixture[str]) -> None:
    _ensure_pg_database(PG_URL)
    assert main(["--database-url", PG_URL]) == 0, capsys.readouterr().out
