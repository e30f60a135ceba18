"""What every command shares: reading commands never create a storage."""

from __future__ import annotations

import pytest

from spotpatch.cli import main


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["plan", "--budget", "1MB"],
        ["dashboard", "--out", "report.html"],
        ["export", "pets", "--out", "patch"],
    ],
)
def test_a_missing_sqlite_storage_is_an_error_not_a_new_database(command, tmp_path, capsys):
    db = tmp_path / "none.db"
    argv = [*command, "--storage", f"sqlite:///{db}"]
    argv = [str(tmp_path / a) if a in ("report.html", "patch") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"spotpatch: error: no study storage at {db} (storage sqlite:///{db})\n"
    assert sorted(tmp_path.iterdir()) == []


def test_a_storage_without_its_database_driver_says_what_to_install(capsys):
    # psycopg2 is no dependency of spotpatch: PostgreSQL users install it.
    assert main(["status", "--storage", "postgresql://user@localhost:1/spotpatch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "its database driver is not installed" in err
    assert "pip install psycopg2-binary" in err
