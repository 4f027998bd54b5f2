"""Test session set-up: a private network namespace, private user dirs, peer fixtures."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

import pytest

# Kivy reads these at import; set them before anything can import it.
os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
os.environ.setdefault("KIVY_NO_FILELOG", "1")
os.environ.setdefault("KIVY_WINDOW", "sdl2")

# SDL loads libdbus when the first window is made, hundreds of tests into the run. The
# constructors of its dependencies (libgpg-error) call bindtextdomain, which takes glibc's
# locale lock for writing. Two clean-clone CI runs hung on such locks, each left with one
# reader by no live thread: SANE's test backend cancels its reader threads asynchronously
# (see drivers/sane.py). Loaded now, while this process has one thread, libdbus runs no
# constructor later.
try:
    ctypes.CDLL("libdbus-1.so.3")
except OSError:
    pass  # no libdbus: SDL will not load it either

from kiosk.net import fastpath  # noqa: E402
from tests.support import netns  # noqa: E402
from tests.support.benchmark_support import benchmark_leaves_nothing_running, shm  # noqa: E402,F401  (benchmarks only)
from tests.support.netns import need_isolation as _need_isolation  # noqa: E402
from tests.support.peers import dciodvfy as run_dciodvfy  # noqa: E402
from tests.support.peers import start_orthanc, start_storescp, start_wlmscpfs  # noqa: E402
from tests.support.ui_support import kiosk_ui, private_sane, xvfb  # noqa: E402,F401  (fixtures for tests/ui/)

UI_TESTS = Path(__file__).parent / "ui"

#: KIOSK_FAST_PATH=false runs the suite on stock pynetdicom (packaging/test.sh does so for the network tests).
FAST_PATH = fastpath.env_override() is not False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the UI tests first: their window is made while glibc's locale locks are still sound.

    Making the window takes those locks for writing (SDL's X11 set-up calls
    setlocale). Three clean-clone CI runs hung there, hundreds of tests in, on
    a read lock left by no live thread: a SANE reader thread cancelled
    asynchronously inside gettext (see drivers/sane.py ``_settle``). No later
    test needs the locks for writing.
    """
    items.sort(key=lambda item: 0 if item.path.is_relative_to(UI_TESTS) else 1)
    if not FAST_PATH:
        skip = pytest.mark.skip(reason="tests the fast path, which KIOSK_FAST_PATH=false turns off")
        for item in items:
            if item.get_closest_marker("fast_path"):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def fast_path_setting():
    """Each test starts with the fast path as ``$KIOSK_FAST_PATH`` says (on when unset), whatever the last one set.

    CLI subprocesses read the variable themselves (it overrides ``[network] fast_path``).
    """
    fastpath.enable(FAST_PATH)
    yield
    fastpath.enable(FAST_PATH)


@pytest.fixture(autouse=True)
def audit_sender_stopped():
    """No test leaves this process's audit sender running: it holds the queue's sending lock, which a
    ``kiosk audit send`` of a later test would find taken."""
    yield
    from kiosk.audit import trail

    trail.shutdown()


def pytest_configure(config: pytest.Config) -> None:
    netns.isolate()
    # A run started in the background (`cmd &` in a script) has SIGINT ignored, and the kiosk
    # processes tests start would inherit that: the tests' Ctrl-C would then never reach them.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    base = Path(config.rootpath) / ".pytest_cache" / "home"
    if hasattr(config, "workerinput"):
        base = base / config.workerinput["workerid"]
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                     ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache"), ("KIVY_HOME", "kivy")):
        os.environ[var] = str(base / sub)
        (base / sub).mkdir(parents=True, exist_ok=True)  # Kivy expects KIVY_HOME to exist
    os.environ.pop("KIOSK_CONFIG", None)


@pytest.fixture
def storescp(tmp_path):
    """DCMTK storescp accepting uncompressed transfer syntaxes; ``.extra['received']`` holds files."""
    _need_isolation()
    peer = start_storescp(tmp_path / "storescp")
    yield peer
    peer.stop()


@pytest.fixture
def storescp_factory(tmp_path):
    """Start storescp with chosen options, e.g. ``storescp_factory(options=['+xa'])``; ``nodelay=False``
    for DCMTK's default socket behaviour."""
    _need_isolation()
    started = []

    def factory(aet: str = "STORESCP", options=(), nodelay: bool = True):
        peer = start_storescp(tmp_path / f"storescp{len(started)}", aet, options, nodelay=nodelay)
        started.append(peer)
        return peer

    yield factory
    for peer in started:
        peer.stop()


@pytest.fixture
def worklist_items():
    from tests.support.worklist_data import standard_items

    return standard_items()


@pytest.fixture
def wlmscpfs(tmp_path, worklist_items):
    """DCMTK wlmscpfs (AE title WLM) serving ``worklist_items``."""
    _need_isolation()
    peer = start_wlmscpfs(tmp_path / "wlmscpfs", worklist_items)
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """One Orthanc for the session: store, C-FIND, worklist plugin (standard items), storage commitment.

    ``orthanc.extra['kiosk_port']`` is the port Orthanc sends storage commitment
    reports to, for AE title KIOSK.
    """
    _need_isolation()
    from tests.support.worklist_data import standard_items

    peer = start_orthanc(tmp_path_factory.mktemp("orthanc"), standard_items())
    yield peer
    peer.stop()


#: The one user of ``orthanc_web``; tests check that the password never shows in output or logs.
ORTHANC_WEB_USER, ORTHANC_WEB_PASSWORD = "kiosk", "s3cret-Pa55word-7781"


@pytest.fixture(scope="session")
def orthanc_web(tmp_path_factory):
    """One Orthanc for the session with its DICOMweb plugin (``.dicomweb_url``) and HTTP basic authentication
    on, for ``ORTHANC_WEB_USER`` / ``ORTHANC_WEB_PASSWORD`` (``.rest`` uses them); C-STORE too."""
    _need_isolation()
    peer = start_orthanc(tmp_path_factory.mktemp("orthanc-web"), users={ORTHANC_WEB_USER: ORTHANC_WEB_PASSWORD})
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def dicom_cd(tmp_path_factory):
    """A patient's CD from another hospital, made once per run (``tests/support/media_data.py``): two patients,
    four studies, 28 instances of many SOP classes and transfer syntaxes, an ISO 9660 layout and a DICOMDIR
    by DCMTK's dcmmkdir. A ``DicomCd``: ``.root`` and the truth (``.patients``, ``.files``). Shared: copy it
    (``shutil.copytree(dicom_cd.root, ...)``) before changing anything on it."""
    from tests.support.media_data import build_dicom_cd

    return build_dicom_cd(tmp_path_factory.mktemp("media") / "CDROM")


@pytest.fixture
def dciodvfy():
    """``dciodvfy(path)`` fails the test on any error line and returns the output."""
    return run_dciodvfy


@pytest.fixture(scope="session")
def sane_test_backend(tmp_path_factory):
    """SANE's ``test`` backend only, through a private SANE_CONFIG_DIR (devices test:0 and test:1).

    Set before the first ``sane.init()`` of the process; CLI subprocesses inherit it.
    """
    pytest.importorskip("sane", reason="python-sane is not installed (pip install kiosk[scanner])")
    from tests.support.sources import write_sane_config

    os.environ["SANE_CONFIG_DIR"] = str(write_sane_config(tmp_path_factory.mktemp("sane")))
    return os.environ["SANE_CONFIG_DIR"]


@pytest.fixture
def sane_device(sane_test_backend):
    """``sane_device("test:0")`` opens a test-backend scanner (fresh handle); options are reset afterwards."""
    from drivers.registry import open_device
    from tests.support.sources import SANE_TEST_DEFAULTS

    opened = []

    def factory(name: str = "test:0"):
        device = open_device(f"sane:{name}")
        opened.append(device)
        return device

    yield factory
    for device in opened:
        device.close()
    for uri in {device.info.uri for device in opened}:
        with open_device(uri) as device:
            for option, value in SANE_TEST_DEFAULTS.items():
                device.set_option(option, value)


@pytest.fixture(scope="session")
def mjpeg_clip(tmp_path_factory):
    """Four seconds of ffmpeg's testsrc2 at 1080p30 as MJPEG, made once per run."""
    from tests.support.video import make_video

    return make_video(tmp_path_factory.mktemp("mjpeg"), "mjpeg", 4.0, "1920x1080", rate=30, name="testsrc2-1080p30.mkv")


@pytest.fixture
def mjpeg_stream(mjpeg_clip):
    """A live, paced 1080p30 MJPEG stream (the clip in a loop) on a free TCP port (``.url``), stopped by PID."""
    from tests.support.peers import free_port
    from tests.support.sources import Stream

    stream = Stream(free_port(), mjpeg_clip).start()
    yield stream
    if stream.proc is not None and stream.proc.poll() is None:
        stream.resume()
    stream.kill()
