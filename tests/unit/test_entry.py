"""The console entry point of ``ncflow`` (``ncflow/_entry.py``)."""

from __future__ import annotations

import builtins

from ncflow import _entry


def test_interrupt_while_loading_exits_130(monkeypatch, capsys):
    # A Ctrl-C while the command line's modules are imported printed a traceback.
    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "ncflow.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    status = _entry.main()
    err = capsys.readouterr().err
    assert status == 130
    assert err == "ncflow: interrupted\n"


def test_entry_runs_the_command_line(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["ncflow", "train", "--steps", "0"])
    status = _entry.main()
    err = capsys.readouterr().err
    assert status == 2
    assert "--steps=0 is invalid" in err
