"""Configuration: lookup order, validation messages, round trip, exit codes."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kiosk import config as cfg
from kiosk.cli import main
from kiosk.errors import ConfigError, UsageError

from tests.support.paths import ROOT
EXAMPLE = ROOT / "packaging" / "kiosk.example.toml"

GOOD = """
[local]
ae_title = "KIOSK"
port = 11112

[destinations.pacs]
ae_title = "PACS"
host = "127.0.0.1"
port = 4242
"""


def check(tmp_path: Path, text: str, capsys) -> tuple[int, str]:
    path = tmp_path / "kiosk.toml"
    path.write_text(text, encoding="utf-8")
    code = main(["config", "check", str(path)])
    return code, capsys.readouterr().err


def test_example_config_is_valid_and_complete():
    config = cfg.load_config(EXAMPLE)
    assert config.destinations["pacs"].port == 4242
    assert config.worklist and config.worklist.station_ae_title == "KIOSK"
    text = EXAMPLE.read_text()
    documented = set(tomllib.loads(text.replace("# [destinations.pacs.tls]", "[destinations.pacs.tls]")
                                   .replace("# ca =", "ca =").replace("# cert =", "cert =").replace("# key =", "key =")))
    assert {"local", "destinations", "worklist", "query"} <= documented
    for fields in (cfg.LOCAL_FIELDS, cfg.DESTINATION_FIELDS, cfg.STOW_FIELDS, cfg.WORKLIST_FIELDS, cfg.TLS_FIELDS):
        for key in fields:
            assert f"{key} =" in text, f"{key} is not documented in {EXAMPLE.name}"
    for section, cls in cfg.SECTIONS.items():
        assert f"[{section}]" in text, f"[{section}] is not documented in {EXAMPLE.name}"
        for key in cfg.schema(cls):
            assert f"{key} =" in text, f"{section}.{key} is not documented in {EXAMPLE.name}"


def test_good_config_checks_ok(tmp_path, capsys):
    path = tmp_path / "kiosk.toml"
    path.write_text(GOOD)
    assert main(["config", "check", str(path)]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[local\nae_title = 'X'", "not valid TOML"),
        ("[local]\naetitle = 'X'", "local.aetitle: unknown key; did you mean 'ae_title'?"),
        ("[lokal]\nae_title = 'X'", "lokal: unknown section; did you mean 'local'?"),
        ("[local]\nport = '104'", "local.port: is '104', must be a whole number"),
        ("[local]\nae_title = 'ABCDEFGHIJKLMNOPQ'", "local.ae_title: is 17 characters long"),
        ("[local]\nae_title = 'A\\\\B'", "local.ae_title: contains a backslash"),
        ("[local]\nae_title = ''", "local.ae_title: is empty"),
        ("[local]\nport = 0", "local.port: is 0; use a TCP port between 1 and 65535"),
        ("[destinations.pacs]\nae_title='P'\nhost='h'\nport=70000", "destinations.pacs.port: is 70000"),
        ("[destinations.pacs]\nae_title='P'\nport=104", "destinations.pacs.host: missing"),
        ("[destinations.pacs]\nae_title='P'\nhost='h'\nport=104\nstorage_commitment='yes'",
         "destinations.pacs.storage_commitment: is 'yes', must be true or false"),
        ("[destinations.pacs]\nae_title='P'\nhost='h'\nport=104\n[destinations.pacs.tls]\nca='/nonexistent/ca.pem'",
         "destinations.pacs.tls.ca: names '/nonexistent/ca.pem', which does not exist"),
        ("[worklist]\nae_title='W'\nhost='bad host'\nport=104", "worklist.host: is not a host name"),
        ("[local]\nuid_root = '1.02.3'", "local.uid_root: is not a UID root"),
        ("destinations = 3", "destinations: must be tables"),
        ("[outbox]\nretry = 3", "outbox.retry: unknown key; did you mean 'retry_count'?"),
        ("[network]\nfastpath = true", "network.fastpath: unknown key; did you mean 'fast_path'?"),
        ("[network]\nfast_path = 'no'", "network.fast_path: is 'no', must be true or false"),
        ("[presets]\n' x' = { dpi = 100 }", "presets. x: a preset name must not be empty or start or end with spaces"),
    ],
)
def test_bad_config_gives_one_clear_line_and_exit_2(tmp_path, capsys, text, expected):
    code, err = check(tmp_path, text, capsys)
    assert code == 2
    assert expected in err
    assert "Traceback" not in err


def test_every_problem_is_reported_once(tmp_path, capsys):
    text = "[local]\nae_title = 'A\\\\B'\nport = 99999\ncolour = 'red'\n"
    code, err = check(tmp_path, text, capsys)
    lines = [line for line in err.splitlines() if line.startswith("kiosk: error:")]
    assert code == 2
    assert len(lines) == 3
    assert all(str(tmp_path) in line for line in lines)


def test_missing_named_file_is_an_error(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "nope.toml"
    assert main(["--config", str(missing), "config", "show"]) == 2
    assert "configuration file not found" in capsys.readouterr().err
    monkeypatch.setenv("KIOSK_CONFIG", str(missing))
    assert main(["config", "check"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_unreadable_files(tmp_path, capsys):
    assert main(["config", "check", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00[local]")
    assert main(["config", "check", str(binary)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_lookup_order(tmp_path, monkeypatch):
    explicit, env = tmp_path / "a.toml", tmp_path / "b.toml"
    monkeypatch.setenv("KIOSK_CONFIG", str(env))
    assert cfg.find_config_path(explicit) == (explicit, True)
    assert cfg.find_config_path(None) == (env, True)
    monkeypatch.delenv("KIOSK_CONFIG")
    path, named = cfg.find_config_path(None)
    assert not named and path.name == "kiosk.toml" and "kiosk" in str(path.parent)
    assert cfg.load_config(None).path is None  # no file there: built-in defaults


def test_built_in_defaults_are_the_validated_defaults():
    """No file, an empty file and a file naming every section give one and the same configuration."""
    empty = cfg.parse_config({})
    assert cfg.Config() == empty == cfg.parse_config({name: {} for name in cfg.SECTIONS})
    assert empty.network.fast_path is True and empty.outbox.retry_count == 10 and empty.presets.tables() == {
        "Document": {}, "Film": {}, "Photo": {}}


def test_each_default_is_declared_once_in_its_dataclass(capsys, tmp_path):
    """The schema (validation, config show) reads its defaults from the section dataclasses."""
    from kiosk.outbox.core import OutboxSettings

    for cls in (*cfg.SECTIONS.values(), cfg.LocalConfig, cfg.TLSConfig):
        assert {k: f.default for k, f in cfg.schema(cls).items()} == cfg.values_of(cls()), cls.__name__
    node = cfg.NodeConfig("pacs", "PACS", "h", 104)
    assert {k: f.default for k, f in cfg.DESTINATION_FIELDS.items() if f.default is not None} == {
        k: getattr(node, k) for k in cfg.DESTINATION_FIELDS if k not in ("ae_title", "host", "port")}
    resolved = OutboxSettings.from_config(cfg.parse_config({"outbox": {"spool_dir": str(tmp_path)}}))
    assert resolved == OutboxSettings(spool_dir=tmp_path)  # the outbox's own settings take the same defaults
    empty = tmp_path / "kiosk.toml"
    empty.write_text("")
    assert main(["--config", str(empty), "config", "show"]) == 0
    shown = tomllib.loads(capsys.readouterr().out)
    for name, cls in cfg.SECTIONS.items():
        assert shown[name] == cfg.values_of(cls()), name


def test_sections_are_typed():
    config = cfg.parse_config({"outbox": {"retry_interval": 5}, "network": {"fast_path": False},
                               "presets": {"Film": {"dpi": 600}, "Quick": {"dpi": 40}}})
    assert isinstance(config.outbox, cfg.OutboxConfig) and config.outbox.retry_interval == 5.0
    assert isinstance(config.outbox.retry_interval, float)  # TOML's 5 is a number of seconds
    assert config.network == cfg.NetworkConfig(fast_path=False)
    assert config.presets.Film == {"dpi": 600} and config.presets.own == {"Quick": {"dpi": 40}}
    assert list(config.presets.tables()) == ["Document", "Film", "Photo", "Quick"]


def test_show_round_trips(tmp_path, capsys):
    source = cfg.load_config(EXAMPLE)
    assert main(["--config", str(EXAMPLE), "config", "show"]) == 0
    shown = capsys.readouterr().out
    again = cfg.parse_config(tomllib.loads(shown))
    assert again.local == source.local
    assert again.destinations == source.destinations
    assert again.worklist == source.worklist and again.query == source.query
    assert all(getattr(again, name) == getattr(source, name) for name in cfg.SECTIONS)


def test_path_command(tmp_path, capsys):
    target = tmp_path / "x.toml"
    assert main(["--config", str(target), "config", "path"]) == 0
    out = capsys.readouterr().out
    assert str(target) in out and "does not exist" in out


def test_resolve_node_by_name_and_url():
    config = cfg.parse_config(tomllib.loads(GOOD))
    assert cfg.resolve_node(config, "pacs").ae_title == "PACS"
    node = cfg.resolve_node(config, "ORTHANC@127.0.0.1:4243")
    assert (node.ae_title, node.host, node.port) == ("ORTHANC", "127.0.0.1", 4243)
    v6 = cfg.resolve_node(config, "PACS@[::1]:104")
    assert v6.host == "::1"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("nowhere", "unknown destination 'nowhere' (configured: pacs)"),
        ("PACS@host", "neither a configured node nor AET@host:port"),
        ("PACS@host:0", "the port is 0"),
        ("ABCDEFGHIJKLMNOPQR@host:104", "the AE title is 18 characters long"),
    ],
)
def test_resolve_node_errors(text, expected):
    config = cfg.parse_config(tomllib.loads(GOOD))
    with pytest.raises(UsageError) as error:
        cfg.resolve_node(config, text)
    assert expected in str(error.value)
    assert error.value.exit_code == 2


def test_config_error_lists_problems():
    with pytest.raises(ConfigError) as error:
        cfg.parse_config({"local": {"port": -1, "ae_title": 5}})
    assert len(error.value.problems) == 2


def test_bad_config_from_a_real_process_has_no_traceback(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text("[local]\nport = 'x'\n")
    result = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(path), "config", "show"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "local.port" in result.stderr
    assert "Traceback" not in result.stderr


def test_docs_show_the_example_verbatim():
    docs = (ROOT / "docs" / "configuration.md").read_text()
    block = docs.split("<!-- example:begin -->\n```toml\n")[1].split("```\n<!-- example:end -->")[0]
    assert block == EXAMPLE.read_text(), "docs/configuration.md is out of date: paste packaging/kiosk.example.toml"


NODE = "[destinations.pacs]\nae_title='P'\nhost='h'\nport=104\n"


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("connect_timeout = inf", "destinations.pacs.connect_timeout: is inf; use a finite number greater than 0"),
        ("dimse_timeout = nan", "destinations.pacs.dimse_timeout: is nan; use a finite number greater than 0"),
        ("max_pdu = 1", "destinations.pacs.max_pdu: is 1; use 0 (no limit) or a size from 4096"),
        ("max_pdu = 4294967296", "destinations.pacs.max_pdu: is 4294967296;"),
    ],
)
def test_unusable_timeouts_and_pdu_sizes_are_refused(tmp_path, capsys, extra, expected):
    """inf made a traceback at use, max_pdu = 1 an echo that hung for 60 s."""
    code, err = check(tmp_path, NODE + extra, capsys)
    assert code == 2 and expected in err and "Traceback" not in err


def test_pdu_sizes_within_the_range_are_accepted(tmp_path, capsys):
    for value in (0, 4096, 16384, 4294967295):
        assert check(tmp_path, NODE + f"max_pdu = {value}", capsys)[0] == 0


@pytest.fixture(scope="module")
def pem(tmp_path_factory):
    from tests.net.test_net_tls import make_ca, make_cert

    folder = tmp_path_factory.mktemp("pem")
    make_ca(folder, "ca")
    make_cert(folder, "client", "ca", "DNS:kiosk")
    make_cert(folder, "other", "ca", "DNS:other")
    (folder / "notpem.crt").write_bytes(b"\x30\x82\x01\x0a not a PEM file")
    return folder


@pytest.mark.parametrize(
    "tls, expected",
    [
        ("ca = '{d}/notpem.crt'", "destinations.pacs.tls.ca: names '{d}/notpem.crt', which does not hold CA certificates in PEM format"),
        ("ca = '{d}/ca.crt'\ncert = '{d}/notpem.crt'\nkey = '{d}/client.key'",
         "destinations.pacs.tls.cert: names '{d}/notpem.crt', which does not hold a certificate in PEM format"),
        ("ca = '{d}/ca.crt'\ncert = '{d}/client.crt'\nkey = '{d}/other.key'",
         "destinations.pacs.tls.key: cannot be used with '{d}/client.crt'"),
        ("ca = '{d}/ca.crt'\ncert = '{d}/client.crt'",
         "destinations.pacs.tls.cert: cannot be used with '{d}/client.crt'"),  # no key, none in the file
    ],
)
def test_tls_files_must_be_loadable_pem(tmp_path, capsys, pem, tls, expected):
    code, err = check(tmp_path, NODE + "[destinations.pacs.tls]\n" + tls.format(d=pem), capsys)
    assert code == 2 and expected.format(d=pem) in err and "Traceback" not in err


def test_good_tls_files_are_accepted(tmp_path, capsys, pem):
    tls = f"[destinations.pacs.tls]\nca = '{pem}/ca.crt'\ncert = '{pem}/client.crt'\nkey = '{pem}/client.key'"
    assert check(tmp_path, NODE + tls, capsys)[0] == 0


COERCE = NODE + "[destinations.pacs.coerce]\n"


@pytest.mark.parametrize(
    "rules, expected",
    [
        ('set = { InstitutionNme = "X" }',
         "destinations.pacs.coerce.set.InstitutionNme: not a DICOM attribute keyword; did you mean InstitutionName?"),
        ('set = { PatientID = "OTHER" }',
         "destinations.pacs.coerce.set.PatientID: may not be changed: a destination must never put images under "
         "another patient"),
        ('remove = ["PatientName"]', "destinations.pacs.coerce.remove.PatientName: may not be changed: a destination "
                                     "must never put images under another patient"),
        ('remove = ["SOPInstanceUID"]', "destinations.pacs.coerce.remove.SOPInstanceUID: may not be changed"),
        ('set = { PixelData = "x" }', "destinations.pacs.coerce.set.PixelData: may not be changed"),
        ('set = { TransferSyntaxUID = "1.2.840.10008.1.2" }',
         "destinations.pacs.coerce.set.TransferSyntaxUID: may not be changed: the file meta information"),
        ('set = { StudyDate = "2026-01-01" }',
         "destinations.pacs.coerce.set.StudyDate: '2026-01-01' is not a valid DA value (write dates as YYYYMMDD)"),
        ('set = { SeriesNumber = "one" }', "destinations.pacs.coerce.set.SeriesNumber: 'one' is not a valid IS value"),
        ('set = { InstitutionName = "Klinik Süd" }\ncharacter_set = "ISO_IR 6"',
         "destinations.pacs.coerce.set.InstitutionName: does not fit character_set ISO_IR 6"),
        ('require = ["AccesionNumber"]',
         "destinations.pacs.coerce.require.AccesionNumber: not a DICOM attribute keyword; did you mean AccessionNumber?"),
        ('remove = ["AccessionNumber"]\nrequire = ["AccessionNumber"]',
         "destinations.pacs.coerce.require.AccessionNumber: is also in remove"),
        ('character_set = "ISO_IR 10"', "destinations.pacs.coerce.character_set: 'ISO_IR 10' is not a single "
                                        "character set pydicom can write; did you mean 'ISO_IR 110'?"),
        ('character_set = "\\\\ISO 2022 IR 87"', "destinations.pacs.coerce.character_set: give one character set"),
        ('name_format = "{family}^{first}"', "destinations.pacs.coerce.name_format: {first} is not a name part"),
        ('name_format = "{given}"', "destinations.pacs.coerce.name_format: must contain {family}"),
        ('sop_class_fallback = { VideoEndoscopicImageStorag = "SecondaryCaptureImageStorage" }',
         "destinations.pacs.coerce.sop_class_fallback.VideoEndoscopicImageStorag: the key "
         "'VideoEndoscopicImageStorag' is not a SOP class keyword or UID; did you mean VideoEndoscopicImageStorage?"),
        ('sop_class_fallback = { VideoEndoscopicImageStorage = "Verification" }',
         "destinations.pacs.coerce.sop_class_fallback.VideoEndoscopicImageStorage: the value 'Verification' "
         "(Verification SOP Class) is not a storage SOP class"),
        ('unknown = 1', "destinations.pacs.coerce.unknown: unknown key"),
    ],
)
def test_bad_coerce_rules_are_refused_naming_the_key(tmp_path, capsys, rules, expected):
    code, err = check(tmp_path, COERCE + rules, capsys)
    assert code == 2 and expected in err and "Traceback" not in err


def test_good_coerce_rules_are_accepted_and_shown(tmp_path, capsys):
    rules = ('set = { InstitutionName = "Legacy Campus", SeriesNumber = 7, ImageType = ["DERIVED", "SECONDARY"] }\n'
             'remove = ["ReferringPhysicianName"]\nrequire = ["AccessionNumber"]\ncharacter_set = "ISO_IR 100"\n'
             'name_format = "{family}^{given}"\n'
             'sop_class_fallback = { VideoEndoscopicImageStorage = "MultiFrameTrueColorSecondaryCaptureImageStorage", '
             '"1.2.840.10008.5.1.4.1.1.77.1.1" = "1.2.840.10008.5.1.4.1.1.7" }\n')
    assert check(tmp_path, COERCE + rules + "\n" + NODE.replace("pacs", "lossy") + 'transfer_syntax = "jpeg"\n',
                 capsys)[0] == 0
    config = cfg.load_config(tmp_path / "kiosk.toml")
    assert config.destinations["pacs"].coerce.character_set == "ISO_IR 100"
    assert cfg.parse_config(tomllib.loads(cfg.to_toml(config))).destinations == config.destinations
