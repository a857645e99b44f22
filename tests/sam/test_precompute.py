"""What ``python -m sam.precompute`` and ``python -m sam.dataset.autolabel`` tell the user about
the images a run could not finish, and the exit status that goes with it."""

from __future__ import annotations

from sam.precompute import report_problems


def test_unreadable_images_are_named_with_why_and_the_run_succeeds(capsys):
    status = report_problems({"b/notes.png": "not an image", "a.jpg": "truncated"}, [])
    out, err = capsys.readouterr()
    assert status == 0 and out == ""
    assert err.splitlines() == [
        "  could not read a.jpg: truncated",
        "  could not read b/notes.png: not an image",
    ]


def test_images_lost_with_a_worker_fail_the_run_and_say_to_rerun(capsys):
    status = report_problems({}, ["x.jpg", "y.jpg"])
    err = capsys.readouterr().err
    assert status == 1
    assert "2 image(s) were in flight on a worker that died" in err
    assert "run the same command again to finish them" in err


def test_a_clean_run_prints_nothing(capsys):
    assert report_problems({}, []) == 0
    assert capsys.readouterr() == ("", "")
