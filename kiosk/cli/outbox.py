"""``kiosk outbox list|show|retry|remove|run|recover``: see and fix queued jobs, run the delivery service."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import signal
import threading

from kiosk.config import Config
from kiosk.display import printable
from kiosk.outbox.journal import STATES  # light: no pydicom, no pynetdicom

log = logging.getLogger(__name__)
PREPARING = "the video object is written out from its clip before it is sent"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("outbox", help="list, inspect, retry or remove queued jobs; run the delivery service")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="jobs with their state, and counts per destination")
    listing.add_argument("--state", choices=STATES, help="only jobs in this state")
    listing.add_argument("--destination", metavar="NAME", help="only jobs for this destination")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=run_list, needs_config=True)

    show = actions.add_parser("show", help="everything about one job")
    show.add_argument("job", type=int, metavar="JOB")
    show.set_defaults(run=run_show, needs_config=True)

    retry = actions.add_parser("retry", help="queue a job again now (after fixing the cause of a failure)")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("job", type=int, nargs="?", metavar="JOB")
    which.add_argument("--all-failed", action="store_true", help="every failed job")
    retry.set_defaults(run=run_retry, needs_config=True)

    remove = actions.add_parser("remove", help="delete a job (its file goes when no other job needs it)")
    remove.add_argument("job", type=int, nargs="+", metavar="JOB")
    remove.add_argument("--force", action="store_true", help="also remove jobs not yet delivered")
    remove.set_defaults(run=run_remove, needs_config=True)

    purge = actions.add_parser("purge", help="delete everything delivered now (spool files, their jobs, sent MPPS "
                               "messages, the offline worklist copy), e.g. before decommissioning the kiosk")
    purge.set_defaults(run=run_purge, needs_config=True)

    service = actions.add_parser("run", help="deliver in the foreground until stopped (the systemd service); "
                                 "listens on [local] port for C-ECHO and storage commitment reports")
    service.add_argument("--exit-when-idle", action="store_true",
                         help="exit once nothing is queued, sending, retrying or awaiting commitment")
    service.add_argument("--poll", type=float, default=1.0, metavar="S",
                         help="seconds between looks for jobs queued by other processes (default 1)")
    service.set_defaults(run=run_service, needs_config=True)

    recover = actions.add_parser("recover", help="rebuild the jobs of the spool's images after the journal was lost "
                                 "or damaged (a damaged journal is kept aside)")
    recover.set_defaults(run=run_recover, needs_config=True)


def _open(config: Config, read_only: bool = False):
    from kiosk.outbox import Outbox, OutboxSettings

    return Outbox(OutboxSettings.from_config(config), read_only)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return dt.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def run_list(args: argparse.Namespace, config: Config) -> int:
    outbox = _open(config, read_only=True)
    try:
        jobs = outbox.journal.jobs(state=args.state, destination=args.destination)
        summary = outbox.summary()
        steps = [m for m in outbox.step_messages() if args.state in (None, m.state)
                 and args.destination in (None, m.node)]
    finally:
        outbox.close()
    if args.json:
        mpps = [{k: v for k, v in dataclasses.asdict(m).items() if k not in ("dataset", "spec")} for m in steps]
        print(json.dumps({"jobs": [job.as_dict() for job in jobs], "summary": summary, "mpps": mpps}, indent=2))
        return 0
    if jobs:
        print(f"{'JOB':>6}  {'STATE':<9}  {'DESTINATION':<24}  {'SOP INSTANCE UID':<64}  REASON")
    for job in jobs:
        reason = job.reason or ("awaiting storage commitment" if job.awaiting_commitment else "") \
            or (PREPARING if job.preparing else "")
        # A reason may quote a peer's error comment: no control characters reach the terminal.
        print(f"{job.id:>6}  {job.state:<9}  {_short(job.destination, 24):<24}  {job.sop_instance_uid:<64}  "
              f"{printable(reason)}")
    if steps:
        print(f"{'MPPS':>6}  {'STATE':<9}  {'NODE':<24}  {'MESSAGE':<24}  {'STEP':<40}  REASON")
    for m in steps:
        status = f" (status 0x{m.status:04X})" if m.status else ""
        print(f"{m.id:>6}  {m.state:<9}  {_short(m.node, 24):<24}  {m.action + ' ' + m.step_status:<24}  "
              f"{_short(m.label, 40):<40}  {printable(m.reason)}{status}")
    if not summary and not steps:
        print("the outbox is empty")
    for destination, counts in summary.items():
        text = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        print(f"{destination}: {text}")
    return 0


def run_show(args: argparse.Namespace, config: Config) -> int:
    outbox = _open(config, read_only=True)
    try:
        job = outbox.job(args.job)
        path = outbox.spool.path(job.spool_name)
    finally:
        outbox.close()
    spool_state = PREPARING if job.preparing else "" if path.exists() else "missing"
    rows = [
        ("job", job.id), ("state", job.state), ("destination", job.destination),
        ("storage commitment", "requested" if job.commitment else "no"),
        ("SOP Class UID", job.sop_class_uid), ("SOP Instance UID", job.sop_instance_uid), ("original file", job.original),
        ("spool file", f"{path} ({job.size} bytes){f' - {spool_state}' if spool_state else ''}"),
        ("attempts", job.attempts), ("next attempt", _when(job.next_attempt)),
        ("status", f"0x{job.status:04X}" if job.status is not None else ""), ("reason", job.reason),
        ("fallback", job.fallback),
        ("queued at", _when(job.created)), ("last change", _when(job.updated)),
    ]
    for label, value in rows:
        if value != "":
            print(f"{label + ':':<20} {printable(value)}")
    return 0


def run_retry(args: argparse.Namespace, config: Config) -> int:
    outbox = _open(config)
    try:
        count = outbox.retry_failed() if args.all_failed else outbox.retry([args.job])
        running = outbox.delivery_running()
    finally:
        outbox.close()
    print(f"{count} job(s) queued again")
    if count and not running:
        print("note: no delivery service is running; start 'kiosk outbox run'")
    return 0


def run_remove(args: argparse.Namespace, config: Config) -> int:
    outbox = _open(config)
    try:
        count = outbox.remove(args.job, force=args.force)
    finally:
        outbox.close()
    print(f"{count} job(s) removed")
    return 0


def run_purge(_args: argparse.Namespace, config: Config) -> int:
    from kiosk import worklist_cache
    from kiosk.outbox.housekeeping import purge
    from kiosk.session import sessions_dir

    outbox = _open(config)
    try:
        purged = purge(outbox)
    finally:
        outbox.close()
    sessions = sessions_dir(config.ui.sessions_dir)
    print(f"deleted {purged.files} delivered file(s) and {purged.step_messages} sent MPPS message(s)"
          + ("; the offline worklist copy" if worklist_cache.forget(sessions) else ""))
    kept = [f"{purged.kept_jobs} job(s) not delivered (see 'kiosk outbox list'; 'kiosk outbox remove --force' "
            "deletes them)"] if purged.kept_jobs else []
    held = [p for p in sessions.iterdir() if p.is_dir()] if sessions.is_dir() else []
    if held:
        kept.append(f"{len(held)} session(s) with unsent captures in {sessions} (send or discard them in the touch UI)")
    for line in kept:
        print(f"kept: {line}")
    return 0


def run_service(args: argparse.Namespace, config: Config) -> int:
    from kiosk.errors import KioskError
    from kiosk.net.listener import Listener
    from kiosk.outbox.worker import Delivery, idle

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    outbox = _open_when_possible(config, stopping)
    if outbox is None:
        return 0
    delivery = Delivery(outbox, config, poll=args.poll)
    inbox_stop = threading.Event()

    def shut_down(*_: object) -> None:
        inbox_stop.set()
        delivery.shutdown()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shut_down)
    lock = outbox.try_lock_delivery()
    if lock is None:
        outbox.close()
        raise KioskError(f"another process is already delivering from {outbox.settings.spool_dir}",
                         "only one 'kiosk outbox run' per spool; stop the other one (systemctl stop kiosk-outbox)")
    inbox = None
    try:
        # Our listener for the service's whole life: C-ECHO from the PACS, and the storage
        # commitment reports for this process's requests (they share it via Listener.running).
        with Listener.from_config(config):
            log.info("outbox: delivering from %s", outbox.settings.spool_dir)
            inbox = None if args.exit_when_idle else _start_inbox(config, outbox, inbox_stop)
            delivery.run(until=(lambda: idle(outbox)) if args.exit_when_idle else None)
    finally:
        inbox_stop.set()
        if inbox is not None:
            inbox.join()
        outbox.unlock_delivery(lock)
        outbox.close()
    log.info("outbox: delivery stopped")
    return 0


def _start_inbox(config: Config, outbox, stop: threading.Event) -> threading.Thread | None:  # noqa: ANN001
    """The watched folder and the print folder, in a thread of the service (when there is one to watch):
    their documents go into this outbox. A failing pass is logged; delivery goes on regardless."""
    from kiosk.inbox.runner import Runner, configured
    from kiosk.outbox.destinations import preload

    if not configured(config):
        return None
    preload()  # pydicom imported here, before a second thread could import it at the same time
    import kiosk.dicomize  # noqa: F401 - likewise the dicomizer the runner builds with

    def watch() -> None:
        try:
            runner = Runner(config, outbox=outbox, remember=True, cancel=stop)
            runner.watch(stop)
        except Exception:  # noqa: BLE001 - the inbox must never stop delivery
            log.exception("inbox: the watcher stopped")

    thread = threading.Thread(target=watch, name="kiosk-inbox", daemon=True)
    thread.start()
    log.info("outbox: watching the inbox too")
    return thread


def _open_when_possible(config: Config, stopping: threading.Event):
    """The outbox, once its disk has room to open the journal (None if stopped first).

    A service that exited on a full disk would only be restarted into the same
    error; waiting loses nothing and resumes by itself once space is freed.
    """
    from kiosk.cli import report
    from kiosk.outbox import OutboxFullError, OutboxSettings

    pause = OutboxSettings.from_config(config).retry_interval
    waited = False
    while True:
        try:
            outbox = _open(config)
        except OutboxFullError as error:
            if not waited:
                report(error)
                log.warning("outbox: delivery waits for disk space, trying again every %g s", pause)
            waited = True
        else:
            if waited:
                log.warning("outbox: there is disk space again; delivery starts")
            return outbox
        if stopping.wait(pause):
            return None


def run_recover(args: argparse.Namespace, config: Config) -> int:
    from kiosk.outbox import OutboxSettings
    from kiosk.outbox.recovery import recover_journal

    result = recover_journal(OutboxSettings.from_config(config))
    if result.moved_to:
        print(f"the damaged journal was moved to {result.moved_to} (kept, not deleted)")
    if result.fresh:
        print("started a new journal")
    for destination, count in result.queued.items():
        print(f"queued {count} job(s) again for {destination}")
    print(f"{result.files} spool file(s) queued again, {result.known} already in the journal")
    if result.recent:
        print(f"{result.recent} file(s) accepted in the last 10 minutes were left alone (another process may be "
              "queueing them): run 'kiosk outbox recover' again later if 'kiosk outbox list' does not show them")
    for name, why in result.unusable:
        print(f"not queued: {name}: {why} (left in the spool)")
    if result.files:
        print("start delivery ('kiosk outbox run') to send them")
    return 0
