"""The Inbox's store: held documents as private files that every process sees and that survive restarts."""

from __future__ import annotations

import json
import stat

from kiosk.inbox.store import Inbox, documents_of
from kiosk.capture import EncodedFormat
from tests.inbox.inbox_helpers import text_pdf


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_hold_get_release_and_the_files_are_private(tmp_path):
    source = tmp_path / "K123456_referral.pdf"
    source.write_bytes(text_pdf("Referral"))
    inbox = Inbox(base=tmp_path / "inbox")
    item = inbox.hold(source, source="print", name="K123456 referral", reason="no rule is configured",
                      user="alice", host="ws12")
    assert source.exists()  # the caller moves it
    assert item.path.read_bytes() == source.read_bytes() and item.path.suffix == ".pdf"
    assert _mode(item.path) == 0o600 and _mode(item.path.parent) == 0o700 and _mode(tmp_path / "inbox") == 0o700
    assert _mode(item.path.parent / "item.json") == 0o600
    assert "/" not in item.id and item.received

    again = Inbox(base=tmp_path / "inbox")  # another process, or after a restart
    assert again.held() == [item] and again.get(item.id) == item
    assert (item.source, item.name, item.user, item.host, item.reason) == ("print", "K123456 referral", "alice",
                                                                         "ws12", "no rule is configured")
    [capture] = documents_of(item)
    assert capture.encoded_format is EncodedFormat.PDF and capture.encoded == source.read_bytes()

    again.release(item.id)
    assert inbox.held() == [] and inbox.get(item.id) is None and not item.path.parent.exists()
    again.release(item.id)  # twice: harmless
    assert list((tmp_path / "inbox").iterdir()) == [] or all(p.name.startswith(".") for p in
                                                             (tmp_path / "inbox").iterdir())


def test_held_is_oldest_first_and_unknown_ids_are_none(tmp_path):
    inbox = Inbox(base=tmp_path / "inbox")
    files = []
    for name in ("b.png", "a.pdf", "c.dcm"):
        (tmp_path / name).write_bytes(b"x" * 10)
        files.append(inbox.hold(tmp_path / name, source="folder", name=name, reason="held"))
    # Same second: the order is still that of arrival, kept by the record's time and id.
    for index, item in enumerate(files):
        record = item.path.parent / "item.json"
        data = json.loads(record.read_text())
        data["received"] = f"2026-01-01T10:00:0{index}+01:00"
        record.write_text(json.dumps(data))
    assert [i.name for i in inbox.held()] == ["b.png", "a.pdf", "c.dcm"]
    for bad in ("", "..", "../etc", files[0].id + "/../x", "nonexistent"):
        assert inbox.get(bad) is None
    inbox.release("../../etc")  # no such item: nothing happens
    assert len(inbox.held()) == 3


def test_release_and_discard_move_the_waiting_original(tmp_path):
    watched = tmp_path / "watched"
    (watched / "held").mkdir(parents=True)
    first, second = watched / "held" / "one.pdf", watched / "held" / "two.pdf"
    first.write_bytes(b"%PDF-1 one")
    second.write_bytes(b"%PDF-1 two")
    inbox = Inbox(base=tmp_path / "inbox")
    one = inbox.hold(first, source="folder", name="one.pdf", reason="x", original=str(first))
    two = inbox.hold(second, source="folder", name="two.pdf", reason="x", original=str(second))
    assert inbox.holding(first) == one
    inbox.release(one.id)
    assert (watched / "done" / "one.pdf").read_bytes() == b"%PDF-1 one" and not first.exists()
    inbox.discard(two.id)
    assert (watched / "failed" / "two.pdf").exists()
    assert "discarded" in (watched / "failed" / "two.pdf.reason").read_text()
    assert inbox.held() == []


def test_a_half_made_item_is_not_shown(tmp_path):
    inbox = Inbox(base=tmp_path / "inbox")
    (tmp_path / "inbox" / ".20260101T100000-0123456789ab.new").mkdir()
    (tmp_path / "inbox" / "20260101T100000-0123456789ab").mkdir()  # no record: not an item
    assert inbox.held() == []
