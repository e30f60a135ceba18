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


# -- the progress of `run` -------------------------------------------------------------------


def _progress(done: int, total: int = 4, **counts):
    from spotpatch.search import StudyProgress

    found = (1, 0.5, 2048) if done else (0, None, None)
    return StudyProgress(done, total, counts.pop("failed", 0), 0, counts.pop("running", 0),
                         *found, None, **counts)  # fmt: skip


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


FLEET = [f"task-{i:02d}" for i in range(35)]


def test_a_few_studies_print_a_line_per_change_in_a_log(capsys):
    from spotpatch.cli._trials import _ProgressBoard

    board = _ProgressBoard(["pets", "night"], tty=False)
    board.update("pets", _progress(1))
    board.update("night", _progress(0, failed=1))
    board.close()
    assert capsys.readouterr().err.splitlines() == [
        "pets   trials 1/4 | front 1 | best mAP 0.500 | smallest front patch 2.0 KiB",
        "night  trials 0/4, 1 failed | front 0 | best mAP - | smallest front patch -",
    ]


def test_many_studies_in_a_log_print_a_line_when_done_and_a_summary_now_and_then(capsys):
    from spotpatch.cli._trials import _ProgressBoard

    clock = _Clock()
    board = _ProgressBoard(FLEET, tty=False, clock=clock, every=30.0)
    clock.now = 90.0  # opening the studies took this long
    for name in FLEET:  # where each stands once opened
        board.update(name, _progress(0))
    for done in range(1, 5):  # a trial every half second, 140 in all
        for name in FLEET:
            clock.now += 0.5
            board.update(name, _progress(done))
    board.close()
    lines = capsys.readouterr().err.splitlines()
    # 140 trials: a line per study and three summaries (once opened, after 30 s and 60 s),
    # and the last once all is done.
    assert len(lines) == len(FLEET) + 4
    assert lines[0] == "studies 0/35 done | trials 0/140 | 1:30 elapsed"
    # 60 trials in the 30 s since the studies were opened: the 80 left take 40 s at that pace.
    assert "studies 0/35 done | trials 60/140 | 2:00 elapsed, about 0:40 left" in lines
    assert lines[-1] == "studies 35/35 done | trials 140/140 | 2:40 elapsed"
    done = [line for line in lines if line.startswith("task-")]
    assert [line.split()[0] for line in done] == FLEET
    assert done[0].split(" | ") == [
        "task-00  trials 4/4", "front 1", "best mAP 0.500", "smallest front patch 2.0 KiB"
    ]  # fmt: skip


def test_the_time_left_counts_the_confirmation_runs_to_come(capsys):
    from spotpatch.cli._trials import _ProgressBoard

    clock = _Clock()
    board = _ProgressBoard(FLEET, tty=False, clock=clock, every=30.0)
    for name in FLEET:  # searching, each with 4 confirmation runs to come once it is done
        board.update(name, _progress(0, confirm_left=4))
    for done in range(1, 5):  # a trial every half second: 140 in 70 s
        for name in FLEET:
            clock.now += 0.5
            board.update(name, _progress(done, confirm_left=4))
    board.close()
    lines = capsys.readouterr().err.splitlines()
    # 60 trials in 30 s: the 80 trials and 140 confirmation runs left take 110 s at that pace.
    assert "studies 0/35 done | trials 60/140 | 0:30 elapsed, about 1:50 left" in lines
    # Every trial done, the confirmation runs still to come: no study is done yet.
    assert lines[-1] == "studies 0/35 done | trials 140/140 | 1:10 elapsed, about 1:10 left"


def test_many_studies_on_a_terminal_show_a_summary_and_the_studies_in_flight(capsys):
    from spotpatch.cli._trials import IN_FLIGHT, _ProgressBoard

    clock = _Clock()
    board = _ProgressBoard(FLEET, tty=True, size=lambda: (60, 40), clock=clock)
    for name in FLEET:
        board.update(name, _progress(0))
    clock.now = 75.0
    board.update("task-03", _progress(1, running=1, confirmed=2, confirming=1))
    board.update("task-30", _progress(2, running=1))
    board.update("task-10", _progress(3))
    capsys.readouterr()
    board.update("task-20", _progress(1, failed=1))
    frame = capsys.readouterr().err
    # The block climbs to its first line, redraws, and clears what is below it.
    climb = f"\033[{IN_FLIGHT}F\r"
    assert frame.startswith(climb) and frame.endswith("\033[J")
    lines = [line.removesuffix("\033[K") for line in frame[len(climb) : -3].split("\n")]
    # Each line cut to the terminal's width: one that wrapped would break the climb.
    assert len(lines) == 1 + IN_FLIGHT and all(len(line) <= 59 for line in lines), lines
    summary = "studies 0/35 done | trials 7/140 (1 failed, 2 running) | confirmation runs 2"
    assert lines[0] == summary[:59]
    # Those running first, then the latest to change, in the order given.
    shown = [line.split()[0] for line in lines[1:]]
    assert shown[:4] == ["task-03", "task-10", "task-20", "task-30"]
    assert len(shown) == IN_FLIGHT
    board.close()
    assert capsys.readouterr().err == "\n"


def test_a_few_studies_taller_than_the_terminal_get_the_compact_view():
    from spotpatch.cli._trials import _ProgressBoard

    names = ["a", "b", "c", "d", "e"]
    assert _ProgressBoard(names, tty=True, size=lambda: (80, 6)).compact
    assert not _ProgressBoard(names, tty=True, size=lambda: (80, 40)).compact
    assert not _ProgressBoard(names, tty=False, size=lambda: (80, 6)).compact
    assert _ProgressBoard(FLEET, tty=False).compact


def test_the_progress_of_many_studies_ends_as_one_aligned_table():
    from spotpatch.cli._trials import _ProgressBoard

    states = {name: _progress(i % 5, failed=i % 2, confirmed=i) for i, name in enumerate(FLEET)}
    rows = _ProgressBoard(FLEET, tty=False).final(states).splitlines()
    assert len(rows) == len(FLEET) + 2 and len({len(row) for row in rows}) == 1
    assert rows[0].split("  ")[0] == "study" and rows[12].split() == [
        "task-10", "0/4", "0", "0", "0", "-", "-", "10"
    ]  # fmt: skip
