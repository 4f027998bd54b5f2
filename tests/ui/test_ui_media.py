"""A patient's CD or USB stick in the touch UI: the tile, the study list, the reconciliation card, the import
and its summary; a medium pulled out before Confirm; Copy to USB and Burn CD from the Send screen.

``[media] mount_points`` is a folder of the test: copying a medium into it is inserting it, removing it
is pulling it out. The medium is the reader's test CD (``dicom_cd``: two patients, four studies, made
by dcmmkdir), copied.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

from kiosk.ui.strings import T
from tests.ui.test_ui_flow import demo, open_source, send_one_page, start_session_by_barcode  # noqa: F401 (fixture)


def _with_mount_point(config, folder):
    folder.mkdir()
    return replace(config, media=replace(config.media, mount_points=[str(folder)]))


def _media_tile(acquire):
    return next((t for t in acquire.ids.tiles.children if t.uri.startswith("media:")), None)


def _row(media, description):
    return next(r for r in media.rows if description in r.text)


def _open_medium(ui, dicom_cd, mount, code="A1003", screenshot="", lost=""):
    """Start a session for ``code``, insert the CD (without the file ``lost``), tap its tile; returns the
    Media screen with the list shown."""
    ui.tap(start_session_by_barcode(ui, code).ids.yes)
    acquire = ui.screen("acquire")
    ui.wait(lambda: acquire.ids.tiles.children, what="source tiles")
    assert _media_tile(acquire) is None
    shutil.copytree(dicom_cd.root, mount / dicom_cd.label)
    if lost:
        (mount / dicom_cd.label / lost).unlink()
    tile = ui.wait(lambda: _media_tile(acquire), what="the Disc or USB tile")
    assert T["media_source"] in tile.text and dicom_cd.label in tile.text
    if screenshot:
        ui.screenshot(screenshot)
    ui.tap(tile)
    media = ui.screen("media")
    ui.wait(lambda: media.stage == "studies", timeout=30, what="the study list")
    return media


def test_a_cd_is_listed_checked_against_the_patient_imported_and_summarised(kiosk_ui, demo, orthanc, dicom_cd,
                                                                           tmp_path):
    from kiosk.config import NodeConfig
    from kiosk.ui.screens.media import ReconcileCard

    peers, config = demo
    orthanc.clear()
    node = NodeConfig(name="orthanc", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.port)
    config = replace(_with_mount_point(config, tmp_path / "mnt"), destinations={"orthanc": node}, query=node)
    ui = kiosk_ui(config, demo=peers)
    media = _open_medium(ui, dicom_cd, tmp_path / "mnt", code="A1001", screenshot="acquire_media")

    # The list: both of the disc's patients, each study with its counts; nothing ticked (another name).
    listed = " ".join(w.text for w in media.ids.studies.children)
    assert "DOE, JANE" in listed and "MÜLLER, HANS" in listed
    assert len(media.rows) == 4 and not any(r.chosen for r in media.rows)
    head = _row(media, "CT HEAD")
    assert "CT, MR" in head.text and "2 series, 9 image(s)" in head.text
    ui.wait(lambda: head.ids.picture.texture is not None, what="the CT study's thumbnail")
    assert media.ids.next.disabled
    ui.screenshot("media_list")

    # One disc patient at a time: ticking Müller's study unticks Doe's.
    ui.tap(head.ids.check)
    chest = _row(media, "CHEST")
    ui.tap(chest.ids.check)
    assert chest.chosen and not head.chosen
    assert media.chosen_text == T["media_chosen"].format(studies=1, images=8)

    # The card: the disc's and the local values side by side, the differences highlighted, the warning.
    ui.tap(media.ids.next)
    card = ui.wait(lambda: ui.modal(ReconcileCard), what="the reconciliation card")
    cells = [c for c in reversed(card.ids.table.children)]
    table = [cells[i:i + 3] for i in range(0, len(cells), 3)]
    name = next(row for row in table if "Patient Name" in row[0].text)
    assert name[1].text == "MÜLLER, HANS" and name[2].text == "MÜLLER, JÜRGEN"
    assert all(cell.differs for cell in name)
    assert all(row[0].differs == (row[1].text != row[2].text) for row in table[1:])  # only differences
    assert card.warning == T["reconcile_warning"]
    assert card.count == T["reconcile_count"].format(images=8, studies=1)
    assert card.checks["orthanc"].active
    assert ui.app.services._outbox is None or not ui.app.services.outbox_jobs()  # nothing queued before Confirm
    ui.screenshot("media_reconcile")

    ui.tap(card.ids.yes)
    ui.wait(lambda: media.stage == "summary", timeout=60, what="the import summary")
    ui.wait(lambda: "stored on orthanc" in media.delivery, timeout=60, what="the delivery")
    assert media.summary.startswith(T["import_queued"].format(count=8, destinations="orthanc"))
    assert media.delivery == T["send_result_ok"].format(done=8, total=8, destination="orthanc")
    tags = [orthanc.tags(i) for i in orthanc.instances()]
    assert len(tags) == 8
    assert {t["PatientID"] for t in tags} == {"DEMO001"}  # the local patient, not the disc's PAT002
    assert {t["PatientName"] for t in tags} == {"MÜLLER^JÜRGEN"}

    # The same study again, and the other one: the archive holds the first now, so it is skipped (and why).
    ui.tap(media.ids.again)
    acquire = ui.screen("acquire")
    ui.wait(lambda: ui.app.manager.current == "acquire" and _media_tile(acquire), what="back on Acquire")
    assert not media.rows and not media.summary  # nothing of the disc stays on the Media screen
    ui.tap(_media_tile(acquire))
    ui.wait(lambda: media.stage == "studies", timeout=30, what="the study list")
    ui.tap(_row(media, "CHEST").ids.check)
    ui.tap(_row(media, "RADIOTHERAPY").ids.check)
    ui.tap(media.ids.next)
    card = ui.wait(lambda: ui.modal(ReconcileCard), what="the reconciliation card")
    ui.tap(card.ids.yes)
    ui.wait(lambda: media.stage == "summary", timeout=60, what="the second summary")
    queued, skipped = media.summary.splitlines()[:2]
    assert queued == T["import_queued"].format(count=5, destinations="orthanc")
    assert skipped.startswith(T["import_skipped"].format(count=8, reason="already on the archive"))
    ui.wait(lambda: "stored on orthanc" in media.delivery, timeout=60, what="the delivery")
    ui.screenshot("media_summary")
    assert len(orthanc.instances()) == 8 + 5

    # Finish ends the session; nothing of the patient or the disc is left on screen.
    ui.tap(media.ids.finish)
    ui.wait(lambda: ui.app.manager.current == "patient", what="the patient screen")
    assert ui.app.session is None and media.medium is None and not media.rows


def test_a_medium_pulled_out_before_confirm_says_so_and_imports_nothing(kiosk_ui, demo, dicom_cd, tmp_path):
    from kiosk.ui.screens.media import ReconcileCard
    from kiosk.ui.widgets.dialogs import MessageCard

    peers, config = demo
    config = _with_mount_point(config, tmp_path / "mnt")
    ui = kiosk_ui(config, demo=peers)
    lost = "DICOM/PAT1/ST1/SE2/IM00003"
    media = _open_medium(ui, dicom_cd, tmp_path / "mnt", lost=lost)
    problems = media.ids.studies.children[0].text  # under the studies: what cannot be imported, and why
    assert T["media_problems"].format(count=1) in problems and f"{lost}: the DICOMDIR lists this file" in problems
    ui.tap(_row(media, "US ABDOMEN").ids.check)
    ui.tap(media.ids.next)
    ui.wait(lambda: ui.modal(ReconcileCard), what="the reconciliation card")

    shutil.rmtree(tmp_path / "mnt" / dicom_cd.label)
    message = ui.wait(lambda: ui.modal(MessageCard), what="the message")
    assert message.body == T["media_removed"].format(label=dicom_cd.label)
    assert ui.app.manager.current == "acquire"
    ui.wait(lambda: ui.modal(ReconcileCard) is None, what="the card closed")
    acquire = ui.screen("acquire")
    ui.wait(lambda: _media_tile(acquire) is None, what="the tile gone")
    assert not list(peers.received.glob("*.dcm"))
    assert ui.app.services._outbox is None or not ui.app.services.outbox_jobs()


def test_copy_to_usb_writes_a_dicom_file_set_on_the_stick(kiosk_ui, demo, tmp_path):
    from pydicom.fileset import FileSet

    peers, config = demo
    mount = tmp_path / "mnt"
    config = _with_mount_point(config, mount)
    ui = kiosk_ui(config, demo=peers)
    send = send_one_page(ui, "A1001")
    assert not send.usb
    (mount / "STICK").mkdir()  # an empty, writable USB stick
    row = ui.wait(lambda: send.usb.get(mount / "STICK"), what="the Copy to USB row")
    assert row.text == T["copy_to_usb"].format(label="STICK") and not row.active
    ui.tap(send.checks["demo-pacs"].ids.check)
    ui.tap(row.ids.check)
    ui.screenshot("send_usb")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=60, what="the copy")
    assert send.result == T["send_result_ok"].format(done=1, total=1, destination="USB stick STICK")
    fileset = FileSet(mount / "STICK" / "DICOMDIR")
    assert [str(i.PatientID) for i in fileset] == ["DEMO001"]
    assert {"README.TXT", "INDEX.HTM"} <= {p.name for p in (mount / "STICK").iterdir()}  # a PDI medium
    assert not list(peers.received.glob("*.dcm"))



def test_burn_cd_is_offered_once_queued_and_says_when_there_is_no_drive(kiosk_ui, demo, tmp_path):
    peers, config = demo
    drive = tmp_path / "no-such-drive"
    ui = kiosk_ui(replace(config, media=replace(config.media, burner=str(drive))), demo=peers)
    send = send_one_page(ui, "A1001")
    burn = send.ids.burn
    assert burn.opacity == 1 and burn.disabled  # nothing queued yet
    ui.tap(send.ids.send)
    ui.wait(lambda: not burn.disabled, timeout=30, what="Burn CD usable")
    ui.tap(burn)
    ui.wait(lambda: not send.busy, timeout=30, what="the burn's outcome")
    assert send.burn_status.startswith(f"there is no disc drive {drive}\n")
    assert not (ui.app.services.outbox().settings.spool_dir / "burn").exists()
    ui.wait(lambda: send.finished, timeout=60, what="the delivery")  # unaffected
    assert send.result.startswith(T["send_result_ok"].format(done=1, total=1, destination="demo-pacs"))
    ui.screenshot("send_burn")


def test_no_burn_cd_without_a_burner(kiosk_ui, demo):
    peers, config = demo
    ui = kiosk_ui(config, demo=peers)
    send = send_one_page(ui, "A1001")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.queued, timeout=30, what="the objects queued")
    assert send.ids.burn.opacity == 0 and send.ids.burn.disabled and send.ids.burn.width == 0

def test_the_idle_timeout_clears_the_card_and_everything_read_from_the_medium(kiosk_ui, demo, dicom_cd, tmp_path):
    from kivy.uix.label import Label

    from kiosk.ui.screens.media import ReconcileCard

    peers, config = demo
    ui = kiosk_ui(_with_mount_point(config, tmp_path / "mnt"), demo=peers)
    media = _open_medium(ui, dicom_cd, tmp_path / "mnt")
    ui.tap(_row(media, "CHEST").ids.check)
    ui.tap(media.ids.next)
    ui.wait(lambda: ui.modal(ReconcileCard), what="the reconciliation card")
    ui.app.ui = replace(ui.app.ui, idle_timeout=1)
    ui.wait(lambda: ui.app.session is None, timeout=10, what="the idle timeout")
    ui.wait(lambda: ui.modal(ReconcileCard) is None, what="the card closed")
    assert ui.app.manager.current == "patient" and media.medium is None and not media.rows

    def texts(widget):
        if isinstance(widget, Label):
            yield widget.text
        for child in widget.children:
            yield from texts(child)

    visible = " ".join(t for screen in ui.app.manager.screens for t in texts(screen))
    assert "PAT002" not in visible and "HANS" not in visible and "CHEST" not in visible
