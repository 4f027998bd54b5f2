"""The worklist matching keys beyond name, ID, accession, date and modality (birth date, sex,
referring physician, requested procedure description, Study Instance UID, start time range),
against Orthanc's worklist plugin, through `kiosk worklist`."""

from __future__ import annotations

import json

import pytest

from kiosk.cli import main
from kiosk.config import parse_config, to_toml
from tests.support.peers import start_orthanc
from tests.support.worklist_data import make_worklist_item

ITEMS = [  # (patient ID, birth date, sex, procedure, referring physician, start time)
    ("K1", "19500101", "F", "Thorax pa", "HOUSE^GREGORY", "081500"),
    ("K2", "19700505", "M", "Knie links", "WILSON^JAMES", "101500"),
    ("K3", "19700505", "F", "Thorax lateral", "CUDDY^LISA", "143000"),
]


@pytest.fixture(scope="module")
def worklist(tmp_path_factory):
    from tests.support.netns import need_isolation

    need_isolation()
    items = []
    for pid, birth, sex, procedure, physician, start in ITEMS:
        item = make_worklist_item(f"KEY^{pid}", pid, f"ACC{pid}", birth_date=birth, sex=sex, procedure=procedure,
                                  date="20261201")
        item.ReferringPhysicianName = physician
        item.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime = start
        items.append(item)
    folder = tmp_path_factory.mktemp("orthanc-keys")
    peer = start_orthanc(folder, items)
    config = parse_config({"worklist": {"ae_title": peer.aet, "host": "127.0.0.1", "port": peer.port,
                                        "station_ae_title": ""}})
    (folder / "kiosk.toml").write_text(to_toml(config))
    yield folder / "kiosk.toml", {pid: item for (pid, *_), item in zip(ITEMS, items)}
    peer.stop()


@pytest.mark.parametrize("flags, expected", [
    (["--birth-date", "19700505"], {"K2", "K3"}),
    (["--birth-date", "19600101-"], {"K2", "K3"}),
    (["--sex", "f"], {"K1", "K3"}),
    (["--referring-physician", "WILSON^*"], {"K2"}),
    (["--procedure", "Thorax*"], {"K1", "K3"}),
    (["--time", "0800-1200"], {"K1", "K2"}),
    (["--time", "1400-"], {"K3"}),
    (["--sex", "F", "--procedure", "*lateral"], {"K3"}),
])
def test_each_key_narrows_the_worklist(worklist, capsys, flags, expected):
    config, _ = worklist
    assert main(["--config", str(config), "worklist", "--date", "20261201", "--json", *flags]) == 0
    found = {item["00100020"]["Value"][0] for item in json.loads(capsys.readouterr().out)}
    assert found == expected


def test_the_study_uid_finds_one_order(worklist, capsys):
    config, items = worklist
    uid = items["K2"].StudyInstanceUID
    assert main(["--config", str(config), "worklist", "--date", "any", "--json", "--study-uid", uid]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["0020000D"]["Value"] == [uid]


@pytest.mark.parametrize("flags, problem", [(["--time", "25:00"], "time '2500' is not understood"),
                                            (["--birth-date", "1970-05-05"], "date '1970-05-05' is not understood")])
def test_a_bad_key_is_named(worklist, capsys, flags, problem):
    config, _ = worklist
    assert main(["--config", str(config), "worklist", *flags]) == 2
    assert problem in capsys.readouterr().err
