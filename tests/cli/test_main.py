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


def test_a_storage_that_cannot_be_reached_says_so_in_one_line_without_its_password(capsys):
    # Nothing listens on port 1: the driver's error, in one line, the password masked.
    url = "postgresql://user:s3cret@127.0.0.1:1/spotpatch"
    assert main(["status", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot open storage" in err, err
    assert "s3cret" not in err and "user:***@127.0.0.1:1" in err, err


def test_help_and_argument_errors_load_no_room():
    # The parser's choices and defaults come from spotpatch._defaults: no torch, no Optuna.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from spotpatch.cli import build_parser\n"
        "parser = build_parser()\n"
        "for argv in (['--help'], ['run', '--help'], ['export']):\n"
        "    try:\n"
        "        parser.parse_args(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'optuna', 'spotpatch.search') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
