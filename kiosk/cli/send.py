"""``kiosk send FILE|DIR... [--to NODE [--to NODE2]] [--commit] [--wait] [--explain]``: queue in the outbox.

Without ``--to`` the ``[routing]`` rules choose the destinations; ``--explain``
prints what would happen, per destination, and sends nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from kiosk.config import Config

POLL = 0.25  # seconds between looks at the journal while waiting
HELPER_MIN = 200  # files; fewer are accepted here (a helper process takes ~0.2 s to start)
HELPER_POLL = 0.1  # seconds between pointing the delivery at the journal while the helper accepts
# The helper imports from this process's sys.path (sent first), not from its working directory.
HELPER = ("import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
          "from kiosk.cli.send import helper_main; helper_main()")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
HELPER_NICENESS = 5


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("send", help="queue DICOM files in the outbox for delivery (survives crashes and outages)")
    parser.add_argument("paths", nargs="+", metavar="FILE|DIR", help="DICOM files, or folders searched recursively")
    parser.add_argument("--to", action="append", metavar="NODE",
                        help="a configured destination, AET@host:port, or folder:PATH (DICOMDIR File-set); repeatable; "
                             "without it the [routing] rules choose")
    parser.add_argument("--commit", action="store_true",
                        help="ask DICOM destinations for storage commitment (also done when storage_commitment = true)")
    parser.add_argument("--wait", action="store_true",
                        help="wait until every job is delivered or failed, showing progress (delivers itself if no "
                             "'kiosk outbox run' is running)")
    parser.add_argument("--explain", action="store_true",
                        help="print, per destination, whether it gets the files, which rules apply and what is "
                             "changed on the copy it receives; send nothing")
    parser.set_defaults(run=run, needs_config=True)


def run(args: argparse.Namespace, config: Config) -> int:
    from kiosk.errors import KioskError
    from kiosk.net.store import collect_files
    from kiosk.outbox import Outbox
    from kiosk.station import OutboxOutput, Station

    files = collect_files(args.paths, lambda text: print(f"note: {text}", file=sys.stderr))
    if not files:
        raise KioskError("no files to send", "name DICOM files or folders that contain them")
    if args.explain:
        from kiosk.explain import explain

        print("\n".join(explain(config, routed_files(files), args.to)))
        return 0
    destinations, commitment = parse_destinations(config, args.to or routed_destinations(config, files), args.commit)
    outbox = Outbox.from_config(config)
    # With --wait and no delivery service, deliver here, starting while files are still being accepted.
    delivery = claim_delivery(outbox, config) if args.wait else None
    station = Station()
    try:
        output = OutboxOutput(outbox, destinations, commitment)
        if delivery is not None and len(files) >= HELPER_MIN:
            jobs = station.queue_files(files, output, lambda chunk: _accept_in_helper(
                outbox, delivery, chunk, destinations, commitment))
        else:
            if delivery is not None:
                delivery.start()
            jobs = station.queue_files(files, output)
        print_queued(jobs, commitment)
        return follow(outbox, station, args.wait)
    except BaseException:
        station.abandon()  # nothing to keep: what was queued stays queued
        raise
    finally:
        if delivery is not None:
            delivery.stop()
        outbox.close()


def routed_files(files: list) -> list:
    """How routing sees each file (its header only)."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    from kiosk.errors import KioskError
    from kiosk.routing import of_dataset

    routed = []
    for path in files:
        try:
            routed.append(of_dataset(dcmread(path, stop_before_pixels=True,
                                             specific_tags=["Modality", "ConversionType", "SOPClassUID"])))
        except (InvalidDicomError, OSError, ValueError) as exc:
            raise KioskError(f"{path}: cannot be read as DICOM ({exc})", "remove it from the files to send") from None
    return routed


def routed_destinations(config: Config, files: list) -> list[str]:
    """The destinations the [routing] rules choose for ``files`` (no ``--to``)."""
    from kiosk.errors import UsageError
    from kiosk.routing import route

    if not config.routing.rules and not config.routing.default:
        raise UsageError("no destination: name one with --to NODE",
                         "or configure [routing] rules (docs/configuration.md) to choose them")
    names = list(route(config, routed_files(files)))
    if not names:
        raise UsageError("the [routing] rules choose no destination for these files", "name one with --to NODE")
    for name in names:
        print(f"routing: {name}", flush=True)
    return names


def parse_destinations(config: Config, texts: list[str], commit: bool) -> tuple[dict[str, dict], set[str]]:
    """``--to`` values -> (name -> spec, the names asked for storage commitment)."""
    from kiosk.outbox.destinations import parse_destination

    destinations: dict[str, dict] = {}
    commitment: set[str] = set()
    for text in texts:
        name, spec = parse_destination(config, text)
        destinations[name] = spec
        # A DICOM node confirms itself; a STOW-RS one only through its commitment_node.
        confirms = spec["kind"] == "dicom" or (spec["kind"] == "stow" and spec.get("commitment_node"))
        if confirms and (commit or spec.get("storage_commitment")):
            commitment.add(name)
    return destinations, commitment


def print_queued(jobs: dict[str, list[int]], commitment: set[str]) -> None:
    for name, ids in jobs.items():
        extra = ", with storage commitment" if name in commitment else ""
        numbers = f"job {ids[0]}" if len(ids) == 1 else f"jobs {ids[0]}-{ids[-1]}"
        print(f"queued {len(ids)} instance(s) for {name}{extra}: {numbers}", flush=True)


def follow(outbox, station, wait_too: bool, step: bool = False) -> int:  # noqa: ANN001 - Outbox, Station
    """After queueing: with ``wait_too`` wait for the station's jobs (and, with ``step``, its MPPS
    messages) and report, else say who delivers."""
    if not wait_too:
        if not outbox.delivery_running():
            print("note: no delivery service is running; start 'kiosk outbox run' (or send with --wait)",
                  file=sys.stderr)
        station.finish()
        return 0
    station.finish()  # every object is queued: the step's N-SET goes with them
    code = wait(outbox, [i for ids in station.jobs.values() for i in ids])
    if step and code != 130:
        code = max(code, wait_for_step(outbox, station.performed_step().uid))
    return code


def wait_for_step(outbox, step_uid: str) -> int:  # noqa: ANN001 - Outbox
    """Wait until the step's MPPS messages are sent or failed; 0 if all were sent, else 1 (each failure named)."""
    from kiosk.outbox.steps import FAILED, SENT

    try:
        while True:
            messages = outbox.steps.messages(step_uid)
            if all(m.state in (SENT, FAILED) for m in messages):
                break
            time.sleep(POLL)
    except KeyboardInterrupt:
        print("interrupted: the performed procedure step messages stay in the outbox ('kiosk outbox list')",
              file=sys.stderr)
        return 130
    failed = [m for m in messages if m.state == FAILED]
    for m in failed:
        print(f"kiosk: error: MPPS {m.action} ({m.step_status}) of {m.label} to {m.node}: {m.reason}", file=sys.stderr)
    if messages and not failed:
        print(f"MPPS: {', '.join(f'{m.action} {m.step_status}' for m in messages)} sent to {messages[0].node}")
    return 1 if failed else 0


def _accept_in_helper(outbox, delivery, files: list, destinations: dict,  # noqa: ANN001 - Outbox
                      commitment: set[str]) -> dict[str, list[int]]:
    """``accept_files`` in a helper process while this one delivers (``delivery``, a
    ``kiosk.station.BackgroundDelivery``, is started here).

    In one process, copying and sending thousands of small files take turns
    at Python's interpreter lock: on two cores, 10,000 files of 50 KB were
    delivered ~0.7 s (5 %) sooner with the copying in a process of its own.
    The helper ignores Ctrl-C: files it has begun to queue end up queued. It
    dies with this process and holds none of its descriptors, so a killed
    ``kiosk send`` leaves no process behind and ``$(kiosk send ...)`` returns.
    """
    import pickle
    import subprocess

    request = pickle.dumps(sys.path) + pickle.dumps((outbox.settings, files, destinations, commitment))
    # A plain child with pipes, not multiprocessing: its pool and resource tracker outlived a killed parent.
    # The request goes through a pipe of our own, written whole before waiting: communicate() with a
    # timeout stops writing its input after the first timeout (a request over the 64 KB a pipe holds,
    # 10,000 file names, then never arrived and both processes waited for ever).
    reader, writer = os.pipe()
    try:
        helper = subprocess.Popen([sys.executable, "-P", "-c", HELPER, str(os.getpid())],
                                  stdin=reader, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        os.close(reader)
    delivery.start()  # while the helper starts up
    try:
        try:
            view = memoryview(request)
            while view:  # the helper reads it first thing: this waits for its start-up at most
                view = view[os.write(writer, view):]
        except BrokenPipeError:
            pass  # it ended before reading: its code and stderr say why, below
        finally:
            os.close(writer)
        while True:
            try:
                out, err = helper.communicate(timeout=HELPER_POLL)
                break
            except subprocess.TimeoutExpired:
                # The helper's events do not reach this process: point the delivery at the journal meanwhile.
                delivery.wake()
    except KeyboardInterrupt:
        helper.communicate()  # it ignores Ctrl-C: what it has begun to queue ends up queued
        raise
    if helper.returncode != 0:
        problem = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the helper process accepting the files ended with code {helper.returncode}: {problem[0]}")
    accepted, outcome = pickle.loads(out)
    if not accepted:
        raise outcome
    return outcome


def helper_main() -> None:
    """The helper process: accept the files pickled on stdin, write the outcome pickled to stdout."""
    import pickle
    import signal
    import traceback

    _die_with(int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Delivering is the critical path; accepting only has to stay ahead of it. On two cores both
    # wanted the CPU at once: 10,000 files went 13 % sooner on average with the helper yielding.
    os.nice(HELPER_NICENESS)
    settings, files, destinations, commitment = pickle.load(sys.stdin.buffer)
    try:
        outcome = (True, _accept_files(settings, files, destinations, commitment))
    except Exception as error:  # noqa: BLE001 - the parent reports it (a KioskError to the user, others as bugs)
        error.add_note(f"in the accepting helper process:\n{traceback.format_exc()}")
        outcome = (False, error)
    pickle.dump(outcome, sys.stdout.buffer)


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` ends (Linux); end now if it already has.

    Killed, like its parent: the files being copied stay ``.part`` files that are
    never sent and that recovery deletes; the chunks already journaled stay queued.
    Elsewhere the helper ends when it has accepted the files and finds no one to tell.
    """
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _accept_files(settings, files: list, destinations: dict, commitment: set[str]) -> dict[str, list[int]]:  # noqa: ANN001
    from kiosk.outbox import Outbox

    outbox = Outbox(settings)
    try:
        return outbox.accept_files(files, destinations, commitment)
    finally:
        outbox.close()


def claim_delivery(outbox, config: Config):  # noqa: ANN001, ANN201 - Outbox -> BackgroundDelivery | None
    """A delivery loop for this process (not started yet), or None if another process delivers."""
    from kiosk.station import BackgroundDelivery

    return BackgroundDelivery.claim(outbox, config, poll=0.5)


def wait(outbox, job_ids: list[int]) -> int:  # noqa: ANN001 - Outbox
    """Wait until every job is delivered or failed, showing progress; 0 if all were delivered."""
    from kiosk.outbox.events import StateChanged
    from kiosk.outbox.journal import SENDING
    from kiosk.outbox.worker import wait_for

    line = ProgressLine(outbox, job_ids)
    done = wait_for(outbox, job_ids)
    # A delivery in this process says when jobs finish; a service in another one is polled.
    finished = threading.Event()
    unsubscribe = outbox.events.subscribe(
        lambda event: finished.set() if isinstance(event, StateChanged) and event.new != SENDING else None)
    try:
        while not done():
            line.show()
            finished.wait(POLL)
            finished.clear()
    except KeyboardInterrupt:
        line.close()
        print("interrupted: the jobs stay in the outbox ('kiosk outbox list')", file=sys.stderr)
        return 130
    finally:
        unsubscribe()
    line.close()
    return report(outbox, job_ids)


class ProgressLine:
    """Counts of the watched jobs by state, on one terminal line."""

    def __init__(self, outbox, job_ids: list[int]) -> None:  # noqa: ANN001 - Outbox
        self.outbox = outbox
        self.job_ids = job_ids
        self.tty = sys.stderr.isatty()

    def show(self) -> None:
        if not self.tty:
            return
        counts = self.outbox.journal.state_counts(self.job_ids)
        text = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        print(f"\r{text} of {len(self.job_ids)} job(s)\033[K", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def report(outbox, job_ids: list[int]) -> int:  # noqa: ANN001 - Outbox
    counts = outbox.journal.state_counts(job_ids)
    failed = outbox.journal.jobs_by_id(job_ids, state="failed") if counts.get("failed") else []
    for job in failed:
        print(f"FAILED job {job.id} ({job.destination}, {job.sop_instance_uid}): {job.reason}")
    committed = counts.get("committed", 0)
    delivered = counts.get("sent", 0) + committed
    print(f"{delivered} of {sum(counts.values())} job(s) delivered" + (f", {committed} committed" if committed else "")
          + (f", {len(failed)} failed (see 'kiosk outbox list --state failed')" if failed else ""))
    return 1 if failed else 0
