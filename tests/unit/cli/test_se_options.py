"""`fedlake se serve` and `fedlake se cache` check their options the same way, before
anything starts: TLS files, the configuration file, and a warning when nothing may pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedlake.cli.main import app
from fedlake.cli.se_serve import warn_closed
from fedlake.se.config import SEConfig


def _se(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["se", *args], env={"COLUMNS": "400"})
    return result.exit_code, result.output


def _commands(tmp_path: Path) -> list[list[str]]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return [
        ["serve", "--root", str(root), "--allow-anonymous"],
        ["cache", "--origin", f"file://{root}", "--dir", str(tmp_path / "cache")],
    ]


def test_one_tls_option_without_the_other_is_refused(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not started")
    for command in _commands(tmp_path):
        code, out = _se(*command, "--tls-cert", str(cert))
        assert code == 2, out
        assert "give both --tls-cert and --tls-key" in out


def test_tls_files_that_do_not_exist_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such.pem"
    for command in _commands(tmp_path):
        code, out = _se(*command, "--tls-cert", str(missing), "--tls-key", str(missing))
        assert code == 2, out
        assert "no-such.pem" in out
        assert "is not a file" in out


def test_a_bad_config_file_is_refused_with_its_error(tmp_path: Path) -> None:
    bad = tmp_path / "se.toml"
    bad.write_text("[server]\nno_such_key = 1\n")
    for command in _commands(tmp_path):
        code, out = _se(*command, "--config", str(bad))
        assert code == 2, out
        assert "no_such_key" in out


@pytest.mark.parametrize("command", ["serve", "cache"])
def test_a_closed_server_says_every_request_will_be_refused(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    warn_closed(SEConfig(), command)
    err = capsys.readouterr().err
    assert f"fedlake se {command}:" in err
    assert "every request will be refused" in err
    warn_closed(SEConfig(allow_anonymous=True), command)
    assert capsys.readouterr().err == ""
