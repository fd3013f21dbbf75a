"""The CLI's error contract: the user's mistakes and the machine's (full or read-only disk) exit 2, each on one
line without a traceback (the table of mistakes: tests/test_mistakes.py)."""

import errno

import pytest

from mtkeras._io import disk_error
from mtkeras.cli import main


@pytest.mark.parametrize("reason", [errno.ENOSPC, errno.EROFS])
def test_disk_errors_end_in_one_line(monkeypatch, capsys, tmp_path, reason):
    import mtkeras.export
    import mtkeras.workflow

    def full_disk(*args, **kwargs):
        raise disk_error(OSError(reason, {errno.ENOSPC: "No space left on device",
                                          errno.EROFS: "Read-only file system"}[reason]), "the run", str(tmp_path))

    monkeypatch.setattr(mtkeras.export, "export_saved_model", full_disk)
    monkeypatch.setattr(mtkeras.workflow, "train", full_disk)
    monkeypatch.setattr("mtkeras.config.load_config", lambda *args, **kwargs: {})
    for argv in (["export", str(tmp_path), "--name", "m"], ["train", "config.yaml"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"mtkeras {argv[0]}: error: Could not write the run under")
        assert ("No space left on device" if reason == errno.ENOSPC else "Read-only file system") in err


def test_missing_config_exits_2(capsys, tmp_path):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtkeras train: error: Config file '") and "missing.yaml' does not exist." in err
    assert err.count("\n") == 1


def test_debug_shows_the_traceback_and_bugs_keep_theirs(monkeypatch, capsys, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Config file '.*missing.yaml' does not exist"):
        main(["--debug", "train", str(tmp_path / "missing.yaml")])

    def bug(*args, **kwargs):
        raise RuntimeError("an mtkeras bug")

    monkeypatch.setattr("mtkeras.config.load_config", bug)
    with pytest.raises(RuntimeError, match=r"an mtkeras bug"):  # not a user error: not turned into one line
        main(["train", "config.yaml"])
