"""``kiosk config check`` on STOW-RS destinations: each problem names its key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.cli import main


def check(tmp_path: Path, text: str, capsys) -> tuple[int, str]:
    path = tmp_path / "kiosk.toml"
    path.write_text(text, encoding="utf-8")
    code = main(["config", "check", str(path)])
    return code, capsys.readouterr().err


def secret(tmp_path: Path, name: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text("secret\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("url, expected", [
    ("pacs.example.org/dicom-web", "destinations.web.stow_url: is 'pacs.example.org/dicom-web'; write the DICOMweb "
                                   "base URL"),
    ("ftp://pacs/dicom-web", "destinations.web.stow_url: is 'ftp://pacs/dicom-web'"),
    ("https://kiosk:pw@pacs/dicom-web", "destinations.web.stow_url: must not hold a user name or password; use "
                                        "username and password_file"),
])
def test_a_bad_stow_url_is_named(tmp_path, capsys, url, expected):
    code, err = check(tmp_path, f'[destinations.web]\nstow_url = "{url}"\n', capsys)
    assert code == 2 and expected in err and "Traceback" not in err


def test_a_world_readable_password_file_is_refused(tmp_path, capsys):
    path = secret(tmp_path, "pw", 0o644)
    code, err = check(tmp_path, f'[destinations.web]\nstow_url = "https://pacs/dicom-web"\nusername = "kiosk"\n'
                                f'password_file = "{path}"\n', capsys)
    assert code == 2 and f"destinations.web.password_file: names '{path}', which others can read; chmod 600" in err


def test_password_file_and_token_file_together_are_refused(tmp_path, capsys):
    password, token = secret(tmp_path, "pw"), secret(tmp_path, "token")
    code, err = check(tmp_path, f'[destinations.web]\nstow_url = "https://pacs/dicom-web"\nusername = "kiosk"\n'
                                f'password_file = "{password}"\ntoken_file = "{token}"\n', capsys)
    assert code == 2 and "destinations.web.token_file: give either username + password_file or token_file" in err


def test_a_good_stow_destination_checks_ok(tmp_path, capsys):
    path = secret(tmp_path, "pw")
    text = (f'[destinations.web]\nstow_url = "https://pacs/dicom-web"\nusername = "kiosk"\npassword_file = "{path}"\n'
            'max_request_mb = 20\n')
    assert check(tmp_path, text, capsys)[0] == 0


def test_a_stow_destination_with_a_ca_only_round_trips_through_to_toml(tmp_path):
    """``kiosk config show`` and the Settings screen write the configuration back with ``to_toml``: unset TLS
    paths must not come back as files that do not exist."""
    import tomllib

    from kiosk.config import parse_config, to_toml
    from tests.net.test_net_tls import make_ca

    make_ca(tmp_path, "ca")
    data = {"destinations": {"web": {"stow_url": "https://pacs/dicom-web", "username": "kiosk",
                                     "password_file": str(secret(tmp_path, "pw")), "max_request_mb": 20,
                                     "tls": {"ca": str(tmp_path / "ca.crt")}}}}
    config = parse_config(data)
    again = parse_config(tomllib.loads(to_toml(config)))
    assert again.destinations == config.destinations
    assert again.destinations["web"].host == "pacs" and again.destinations["web"].port == 443
