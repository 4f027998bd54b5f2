"""[routing] rules, ``kiosk send`` without ``--to`` and ``--explain``, a calling AE title and a commitment node
per destination, against DCMTK storescp and Orthanc."""

from __future__ import annotations

import json

import pytest
from pydicom import dcmread
from tests.support.outbox_data import make_instances, received_uids
from tests.support.outbox_helpers import cli, outbox_config

from kiosk.config import ConfigError, parse_config, to_toml
from kiosk.routing import Routed, of_dataset, route


def _write(tmp_path, text: str, local_port: int = 11112):
    """A config file: the outbox part from ``outbox_config`` plus ``text`` (destinations, routing)."""
    config_file = tmp_path / "kiosk.toml"
    base = to_toml(outbox_config(tmp_path)).replace("[routing]\ndefault = []\n", "")
    config_file.write_text(base.replace("port = 11112", f"port = {local_port}") + "\n" + text)
    return cli(config_file)


def _node(name: str, peer, extra: str = "") -> str:
    return f"[destinations.{name}]\nae_title = '{peer.aet}'\nhost = '127.0.0.1'\nport = {peer.port}\n{extra}\n"


def _restyle(paths, **values) -> None:
    for path in paths:
        ds = dcmread(path)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(path)


RULES = """
[routing.endoscopy]
modality = ["ES"]
send_to = ["endo"]
[routing.documents]
source = ["scanner"]
sop_class = ["SecondaryCaptureImageStorage"]
send_to = ["docs"]
"""


def test_send_without_to_goes_where_the_rules_say_and_explain_says_why(tmp_path, storescp_factory):
    endo, docs = storescp_factory("ENDO"), storescp_factory("DOCS", options=["-d"])
    kiosk = _write(tmp_path, _node("endo", endo) + _node("docs", docs, "calling_ae_title = 'KIOSK_DOCS'") + RULES)
    scans = make_instances(tmp_path / "scans", 2)
    _restyle(scans.values(), ConversionType="SD")  # from a scanner

    explained = kiosk("send", str(tmp_path / "scans"), "--explain").stdout
    assert "docs: DOCS@127.0.0.1" in explained
    assert "chosen: rule 'documents' (source scanner; sop class SecondaryCaptureImageStorage)" in explained
    assert "calling AE title KIOSK_DOCS" in explained
    assert "endo: ENDO@127.0.0.1" in explained and "not chosen: no rule sends these objects there" in explained
    assert "queued" not in explained

    result = kiosk("send", str(tmp_path / "scans"), "--wait")
    assert "routing: docs" in result.stdout and "2 of 2 job(s) delivered" in result.stdout
    assert sorted(received_uids(docs.extra["received"])) == sorted(scans)
    assert received_uids(endo.extra["received"]) == []
    # storescp -d names the calling AE title of each association it accepts
    assert "KIOSK_DOCS" in docs.output()

    clips = make_instances(tmp_path / "clips", 1)
    _restyle(clips.values(), Modality="ES", ConversionType="DV")
    kiosk("send", str(tmp_path / "clips"), "--wait")
    assert received_uids(endo.extra["received"]) == list(clips)


def test_without_rules_or_to_send_asks_for_a_destination(tmp_path, storescp):
    kiosk = _write(tmp_path, _node("pacs", storescp))
    make_instances(tmp_path / "in", 1)
    result = kiosk("send", str(tmp_path / "in"), check=2)
    assert "no destination: name one with --to NODE" in result.stderr


def test_default_destinations_take_what_no_rule_matches(tmp_path, storescp_factory):
    endo, docs = storescp_factory("ENDO"), storescp_factory("DOCS")
    kiosk = _write(tmp_path, _node("endo", endo) + _node("docs", docs) + RULES + "[routing]\ndefault = ['docs']\n")
    made = make_instances(tmp_path / "in", 1)  # OT, WSD: no rule matches
    assert "chosen: no rule matches: [routing] default" in kiosk("send", str(tmp_path / "in"), "--explain").stdout
    kiosk("send", str(tmp_path / "in"), "--wait")
    assert received_uids(docs.extra["received"]) == list(made)


def test_a_commitment_node_confirms_what_was_sent_to_another_destination(tmp_path, orthanc, storescp):
    orthanc.clear()
    orthanc_node = f"[destinations.archive]\nae_title = 'ORTHANC'\nhost = '127.0.0.1'\nport = {orthanc.port}\n"
    orthanc_store = orthanc_node.replace("archive", "archive-store") + "storage_commitment = true\ncommitment_node = 'archive'\n"
    stray = _node("stray", storescp, "storage_commitment = true\ncommitment_node = 'archive'")
    kiosk = _write(tmp_path, orthanc_node + orthanc_store + stray, orthanc.extra["kiosk_port"])
    made = make_instances(tmp_path / "in", 2, patient_id="ROUTE1")

    assert "storage commitment asked of archive" in kiosk("send", str(tmp_path / "in"), "--to", "archive-store",
                                                           "--explain").stdout
    kiosk("send", str(tmp_path / "in"), "--to", "archive-store", "--wait")
    jobs = json.loads(kiosk("outbox", "list", "--json").stdout)["jobs"]
    assert {j["state"] for j in jobs if j["destination"] == "archive-store"} == {"committed"}

    # Sent to storescp, commitment asked of Orthanc, which never received them: refused by the commitment node.
    made = make_instances(tmp_path / "others", 2, patient_id="ROUTE2")
    kiosk("send", str(tmp_path / "others"), "--to", "stray", "--wait", check=1)
    jobs = json.loads(kiosk("outbox", "list", "--json").stdout)["jobs"]
    stray_jobs = [j for j in jobs if j["destination"] == "stray"]
    assert len(stray_jobs) == len(made) and {j["state"] for j in stray_jobs} == {"failed"}
    assert all("storage commitment refused" in j["reason"] for j in stray_jobs)


@pytest.mark.parametrize("table, expected", [
    ("[routing.r]\nsend_to = ['nowhere']", "routing.r.send_to: names 'nowhere', which is not a destination"),
    ("[routing.r]\nsend_to = 'pacs'", "routing.r: send_to: must be a list of names"),
    ("[routing.r]\nsource = ['cam']\nsend_to = ['pacs']", "routing.r: source: 'cam' is not a source kind"),
    ("[routing.r]\nsop_class = ['EncapsulatedPdfStorage']\nsend_to = ['pacs']",
     "did you mean 'EncapsulatedPDFStorage'?"),
    ("[routing.r]\nmodality = ['ES']", "routing.r: send_to: missing"),
    ("[routing]\ndefault = ['vna']", "routing.default: names 'vna', which is not a destination"),
    ("[destinations.pacs.x]\n", "destinations.pacs.x: unknown key"),
])
def test_bad_routing_is_refused_by_config_check_naming_the_key(tmp_path, table, expected):
    text = "[destinations.pacs]\nae_title = 'P'\nhost = 'h'\nport = 104\n"
    (tmp_path / "kiosk.toml").write_text(text + table + "\n")
    result = cli(tmp_path / "kiosk.toml")("config", "check", check=2)
    assert expected in result.stderr


@pytest.mark.parametrize("extra, expected", [
    ("commitment_node = 'pacs'", "destinations.pacs.commitment_node: is 'pacs'; name another DICOM destination"),
    ("commitment_node = 'vna'", "destinations.pacs.commitment_node: is 'vna'"),
    ("calling_ae_title = 'A\\\\B'", "destinations.pacs.calling_ae_title:"),
])
def test_bad_commitment_node_or_calling_ae_title_is_refused(extra, expected):
    with pytest.raises(ConfigError) as error:
        parse_config({"destinations": {"pacs": {"ae_title": "P", "host": "h", "port": 104,
                                                **_toml(extra)}}})
    assert any(expected in p for p in error.value.problems), error.value.problems


def _toml(line: str) -> dict:
    import tomllib

    return tomllib.loads(line)


def test_route_unions_the_rules_an_object_matches_in_configuration_order():
    config = parse_config({"destinations": {n: {"ae_title": n.upper(), "host": "h", "port": 104} for n in ("a", "b", "c")},
                           "routing": {"pdf": {"sop_class": ["EncapsulatedPDFStorage"], "send_to": ["c", "a"]},
                                       "es": {"modality": ["es"], "send_to": ["b"]}}})
    pdf = Routed("DOC", "files", "1.2.840.10008.5.1.4.1.1.104.1")
    clip = Routed("ES", "camera", "1.2.840.10008.5.1.4.1.1.7")
    assert list(route(config, [pdf])) == ["a", "c"]
    assert list(route(config, [pdf, clip])) == ["a", "b", "c"]
    assert route(config, [Routed("OT", "scanner", "1.2.3")]) == {"a": ["no rule matches"], "b": ["no rule matches"],
                                                                 "c": ["no rule matches"]}


def test_an_object_the_kiosk_did_not_make_routes_as_import(tmp_path):
    path = next(iter(make_instances(tmp_path, 1).values()))
    ds = dcmread(path)
    assert of_dataset(ds).source == "files"  # Conversion Type WSD
    del ds.ConversionType
    assert of_dataset(ds) == Routed("OT", "import", str(ds.SOPClassUID))


def test_stow_coerce_and_routing_survive_kiosk_config_show(tmp_path):
    """The touch UI's Settings write the file back with to_toml: nothing may be lost."""
    import tomllib

    data = {"destinations": {
        "pacs": {"ae_title": "P", "host": "h", "port": 104, "calling_ae_title": "KIOSK_P", "commitment_node": "pacs2",
                 "coerce": {"set": {"InstitutionName": "Legacy"}, "remove": ["ReferringPhysicianName"],
                            "character_set": "ISO_IR 100"}},
        "pacs2": {"ae_title": "P2", "host": "h", "port": 105},
        "vna": {"stow_url": "https://vna.example.org/dicom-web", "max_request_mb": 10.0}},
        "routing": {"default": ["pacs"], "docs": {"source": ["scanner"], "send_to": ["vna", "pacs"]}}}
    config = parse_config(data)
    again = parse_config(tomllib.loads(to_toml(config)))
    assert again.destinations == config.destinations and again.routing == config.routing
    assert again.destinations["vna"].host == "vna.example.org" and again.destinations["vna"].port == 443
