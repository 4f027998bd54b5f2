"""Outbox jobs' objects written as a PDI File-set, and burned to a disc (the touch UI's Burn CD).

The outbox keeps one spool file per object, whatever its destinations, until ``[outbox]
retention_hours`` after it was delivered: that file is what goes on the medium, checked against
the SHA-256 recorded when it was queued (as every destination does before sending it).
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Callable, Sequence

from kiosk.checksum import FileChanged, open_checked
from kiosk.errors import KioskError
from kiosk.media.iso import burn, check_drive
from kiosk.media.pdi import ExportError, ExportResult, write_file_set
from kiosk.media.profiles import Profile
from kiosk.outbox.core import Outbox
from kiosk.private import private_dir

log = logging.getLogger(__name__)


def export_jobs(outbox: Outbox, job_ids: Sequence[int], folder: Path, profile: Profile, *, web_content: bool = True,
                progress: Callable[[int, int], None] | None = None,
                cancel: threading.Event | None = None) -> ExportResult:
    """Write the objects of the jobs ``job_ids`` (each once, in the order queued) into the File-set in
    ``folder`` following ``profile``. Jobs no longer in the outbox are left out; a spool file that
    changed or cannot be read is in ``failed``, with its reason."""
    jobs = sorted(outbox.journal.jobs_by_id(list(job_ids)), key=lambda job: job.id)
    files: list[Path] = []
    failed: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for job in jobs:
        if job.spool_name in seen:
            continue  # the same object for another destination
        seen.add(job.spool_name)
        path = outbox.spool.path(job.spool_name)
        try:
            open_checked(path, outbox.prepare(job).sha256).close()
        except KioskError as exc:
            failed.append((path, exc.message))
            continue
        except FileChanged as exc:
            failed.append((path, str(exc)))
            continue
        except OSError as exc:
            failed.append((path, f"cannot be read: {exc.strerror or exc}"))
            continue
        files.append(path)
    result = write_file_set(folder, files, profile, web_content=web_content, progress=progress,
                            cancel=cancel)
    result.failed[:0] = failed
    return result


def burn_jobs(outbox: Outbox, job_ids: Sequence[int], device: str, profile: Profile, *, web_content: bool = True,
              progress: Callable[[int, int], None] | None = None) -> ExportResult:
    """Burn the objects of the jobs ``job_ids`` to the disc in ``device`` as a File-set following ``profile``.

    The File-set and its ISO image are made in ``burn/`` beside the spool (on disk, not in a /tmp that
    may be RAM; private), removed afterwards whatever happens, and at the next burn if the kiosk was
    killed during one."""
    check_drive(device)  # before writing anything: no drive, no point
    scratch = Path(outbox.settings.spool_dir) / "burn"
    shutil.rmtree(scratch, ignore_errors=True)
    folder = scratch / "medium"
    try:
        private_dir(folder)
        result = export_jobs(outbox, job_ids, folder, profile, web_content=web_content, progress=progress)
        if not result.written:
            if result.failed:
                raise ExportError(f"none of the {len(result.failed)} image(s) can go on a disc: {result.failed[0][1]}",
                                  "send them to the PACS; export them from there")
            raise ExportError("these images are no longer in the outbox (delivered files are kept for "
                              "[outbox] retention_hours)", "export them from the PACS")
        burn(folder, device, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("burned %d object(s) to %s (%s), %d left out", len(result.written), device, profile.name,
             len(result.failed))
    return result
