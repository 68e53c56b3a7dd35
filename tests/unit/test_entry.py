"""The console entry point of ``ncflow`` (``ncflow/_entry.py``)."""

from __future__ import annotations

import builtins
import signal

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


def test_interrupt_after_loading_exits_130(monkeypatch, capsys):
    # A KeyboardInterrupt that no command catches (here while the arguments
    # are parsed) ends with 130 and one line, not a traceback.
    def interrupted(argv=None):
        raise KeyboardInterrupt

    monkeypatch.setattr("ncflow.cli.main", interrupted)
    status = _entry.main()
    err = capsys.readouterr().err
    assert status == 130
    assert err == "ncflow: interrupted\n"


def test_ctrl_c_while_loading_is_held(monkeypatch, capsys):
    # Ctrl-C during the import is recorded, not raised inside it (where a
    # compiled extension turned it into an ImportError); the run then stops.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    real_import = builtins.__import__

    def importing(name, *args, **kwargs):
        if name == "ncflow.cli":
            signal.raise_signal(signal.SIGINT)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", importing)
    try:
        status = _entry.main()
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert status == 130
    assert err == "ncflow: interrupted\n"
