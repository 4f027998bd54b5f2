"""Helpers for the inbox tests: PDFs with real text, a configuration with a watched folder, file drops."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

from kiosk.config import Config, parse_config


def text_pdf(*lines: str, pages: int = 1) -> bytes:
    """A PDF (written by pypdf) whose pages show ``lines`` in Helvetica: text a PDF reader extracts."""
    from pypdf import PdfWriter
    from pypdf.generic import ContentStream, DictionaryObject, NameObject

    writer = PdfWriter()
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    for number in range(pages):
        page = writer.add_blank_page(595, 842)
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject(
            {NameObject("/F1"): writer._add_object(font)})})
        shown = [*lines, f"Page {number + 1}"]
        body = b"".join(f"BT /F1 14 Tf 72 {760 - 24 * i} Td ({line}) Tj ET\n".encode("latin-1")
                        for i, line in enumerate(shown))
        stream = ContentStream(None, writer)
        stream.set_data(body)
        page.replace_contents(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def inbox_config(tmp_path: Path, *, worklist=None, query=None, destinations: dict | None = None,
                 **inbox: object) -> Config:
    """A configuration with a private spool, a watched folder ``tmp_path/watched`` and ``[inbox]`` values."""
    values = {"folder": str(tmp_path / "watched"), "print_folder": str(tmp_path / "print"), "settle_seconds": 0.3}
    values.update(inbox)
    data: dict = {"local": {"ae_title": "KIOSK"}, "destinations": destinations or {}, "inbox": values,
                  "outbox": {"spool_dir": str(tmp_path / "spool"), "min_free_mb": 0, "retry_interval": 0.2,
                             "retry_max_interval": 1.0, "retry_count": 3}}
    if worklist is not None:
        data["worklist"] = {"ae_title": worklist.aet, "host": "127.0.0.1", "port": worklist.port,
                            "station_ae_title": "KIOSK"}
    if query is not None:
        data["query"] = {"ae_title": query.aet, "host": "127.0.0.1", "port": query.port}
    (tmp_path / "watched").mkdir(parents=True, exist_ok=True)
    return parse_config(data)


def drop(folder: Path, name: str, data: bytes) -> Path:
    """A finished file renamed into ``folder`` from beside it (as a copy program finishing does)."""
    import os

    staging = folder.parent / f".staging-{name}"
    staging.write_bytes(data)
    os.rename(staging, folder / name)
    return folder / name


def slow_copy(data: bytes, target: Path, chunks: int = 8, pause: float = 0.15) -> threading.Thread:
    """Write ``data`` to ``target`` in ``chunks`` pieces, ``pause`` s apart, in a thread (started)."""

    def write() -> None:
        size = -(-len(data) // chunks)
        with open(target, "wb") as out:
            for start in range(0, len(data), size):
                out.write(data[start:start + size])
                out.flush()
                time.sleep(pause)

    thread = threading.Thread(target=write)
    thread.start()
    return thread
