"""rsyslog as the Audit Record Repository of tests: TLS (RFC 5425) or UDP (RFC 5426), with its own config."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from tests.support.peers import require_binary, wait_for_port

@dataclass(frozen=True)
class Received:
    """One message as rsyslog wrote it: the RFC 5424 header fields and the parsed XML."""

    header: list[str]
    xml: ET.Element

    def event_id(self) -> str:
        return self.xml.find("EventIdentification/EventID").get("csd-code")

    def event_type(self) -> str:
        code = self.xml.find("EventIdentification/EventTypeCode")
        return "" if code is None else code.get("csd-code")

    def outcome(self) -> int:
        return int(self.xml.find("EventIdentification").get("EventOutcomeIndicator"))

    def participants(self) -> list[dict]:
        return [{**p.attrib, "roles": [r.get("csd-code") for r in p.findall("RoleIDCode")]}
                for p in self.xml.findall("ActiveParticipant")]

    def objects(self) -> list[tuple[str, str, str]]:
        """(ParticipantObjectIDTypeCode csd-code, ParticipantObjectID, type code) of each participant object."""
        return [(o.find("ParticipantObjectIDTypeCode").get("csd-code"), o.get("ParticipantObjectID"),
                 o.get("ParticipantObjectTypeCode")) for o in self.xml.findall("ParticipantObjectIdentification")]

    def description(self) -> str:
        return self.xml.findtext("EventIdentification/EventOutcomeDescription") or ""


class Rsyslog:
    """``rsyslogd -n`` with a private config; ``start()``/``stop()`` (by PID) as often as needed, same port."""

    def __init__(self, folder: Path, port: int, pki: Path | None) -> None:
        self.binary = require_binary("rsyslogd")  # fails under CI, skips elsewhere
        self.folder, self.port, self.pki = folder, port, pki
        self.log = folder / "audit.log"
        (folder / "rs").mkdir(parents=True, exist_ok=True)
        self.conf = folder / "rs.conf"
        if pki is not None:
            tls = (f'global(workDirectory="{folder}/rs" maxMessageSize="64k" DefaultNetstreamDriver="gtls"\n'
                   f'       DefaultNetstreamDriverCAFile="{pki}/testca.crt"\n'
                   f'       DefaultNetstreamDriverCertFile="{pki}/server.crt"\n'
                   f'       DefaultNetstreamDriverKeyFile="{pki}/server.key")\n'
                   'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")\n'
                   f'input(type="imtcp" port="{port}")\n')
        else:
            tls = (f'global(workDirectory="{folder}/rs" maxMessageSize="64k")\n'
                   f'module(load="imudp")\ninput(type="imudp" address="127.0.0.1" port="{port}")\n')
        self.conf.write_text(tls + 'template(name="raw" type="string" string="%rawmsg%\\n")\n'
                             f'if $app-name == "kiosk" then {{ action(type="omfile" file="{self.log}" template="raw") }}\n')
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Rsyslog":
        (self.folder / "rs" / "pid").unlink(missing_ok=True)
        out = (self.folder / "rsyslogd.out").open("ab")
        self.proc = subprocess.Popen([self.binary, "-n", "-f", str(self.conf), "-i", str(self.folder / "rs" / "pid")],
                                     stdout=out, stderr=subprocess.STDOUT)
        pid = self.folder / "rs" / "pid"
        deadline = time.monotonic() + 20
        while not pid.exists() and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)  # rsyslogd writes its pid file once its inputs are up
        if self.pki is not None:
            wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def messages(self) -> list[Received]:
        if not self.log.exists():
            return []
        found = []
        for line in self.log.read_bytes().splitlines():
            head, _, xml = line.partition(b"\xef\xbb\xbf")
            found.append(Received(head.decode("ascii").split(" "), ET.fromstring(xml)))
        return found

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.messages()
            if len(got) >= count:
                return got
            time.sleep(0.1)
        return self.messages()
