"""The DICOMDIR writer: records in a tree, offsets computed, written once (PS3.10 7.3 and 8, PS3.3 F).

pydicom reads an existing DICOMDIR (``dcmread``) and makes each new directory record (its
``DIRECTORY_RECORDERS``, the record types chosen by its FileSet rules); the tree, the File IDs and
the encoding are here. Adding an object costs the same however many the File-set holds (pydicom's
``FileSet.add`` scans every instance and writes a staging copy of each header), and the DICOMDIR
is encoded once: each record once to learn its length, the offsets patched into the bytes.

An update keeps every record of the DICOMDIR it read (any writer's: pydicom, DCMTK dcmmkdir, the
kiosk) and every File ID as it is. New objects get pydicom's layout, ``PT000000/ST000000/SE000000/
IM000000`` (the leaf prefix from the record type), with the next free number at each level: a new
object of a series already there goes into that series' folder, a new series into its study's.
A name already on the disk is never reused, listed or not.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Iterator

from kiosk.part10 import LONG_VRS, identify

__all__ = ["DicomDir", "Instance"]

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
MAX_COMPONENTS = 8  # of a File ID (PS3.10 8.2)
_NEXT = 0x00041400  # Offset of the Next Directory Record
_LOWER = 0x00041420  # Offset of Referenced Lower-Level Directory Entity
_RECORDS = 0x00041220  # Directory Record Sequence
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
# What a leaf record calls the values an instance has (pydicom's FileInstance does the same).
_IN_FILE = {"SOPInstanceUID": "ReferencedSOPInstanceUIDInFile", "SOPClassUID": "ReferencedSOPClassUIDInFile",
            "TransferSyntaxUID": "ReferencedTransferSyntaxUIDInFile"}
_MISSING = object()


class _Node:
    """A directory record and the records below it (the root has no record)."""

    __slots__ = ("record", "parent", "children", "by_key", "folder", "encoded")

    def __init__(self, record: Any, parent: "_Node | None" = None) -> None:
        self.record = record
        self.parent = parent
        self.children: list[_Node] = []
        self.by_key: dict[str, _Node] = {}
        self.folder: tuple[str, ...] | None = None  # where the files and folders below it go, once known
        self.encoded: tuple[bytearray, int, int] | None = None  # the record encoded (``_encode``), once final

    def adopt(self, child: "_Node") -> "_Node":
        child.parent = self
        self.children.append(child)
        key = _key(child.record)
        if key:
            self.by_key.setdefault(key, child)
        return child

    def file_id(self) -> tuple[str, ...]:
        value = self.record.get("ReferencedFileID") if self.record is not None else None
        if not value:
            return ()
        return (str(value),) if isinstance(value, str) else tuple(str(part) for part in value)


class Instance:
    """One object in the File-set: its leaf record and file. Values are looked up from the leaf up to
    its patient record (``instance.PatientID``, ``"StudyDate" in instance``), as pydicom's FileInstance."""

    __slots__ = ("node", "path")

    def __init__(self, node: _Node, path: Path) -> None:
        self.node = node
        self.path = path

    def get(self, keyword: str, default: Any = None) -> Any:
        keyword = _IN_FILE.get(keyword, keyword)
        node: _Node | None = self.node
        while node is not None and node.record is not None:
            if keyword in node.record:
                return node.record.get(keyword)
            node = node.parent
        return default

    def __contains__(self, keyword: str) -> bool:
        return self.get(keyword, _MISSING) is not _MISSING

    def __getattr__(self, keyword: str) -> Any:
        value = self.get(keyword, _MISSING)
        if value is _MISSING:
            raise AttributeError(keyword)
        return value


class DicomDir:
    """The DICOMDIR of the File-set in ``root``: the one there (read whole), or a new one.

    Raises what pydicom raises for a DICOMDIR it cannot read, ``ValueError`` for records whose
    offsets lead nowhere.
    """

    def __init__(self, root: Path) -> None:
        from pydicom import dcmread
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import generate_uid

        self.root = Path(root)
        self.tree = _Node(None)
        self._uids: set[str] = set()
        self._names: dict[tuple[str, ...], set[str]] = {}  # folder (upper case) -> names taken in it
        self._listed: set[tuple[str, ...]] = set()  # folders whose names on the disk are in _names
        self._counters: dict[tuple[tuple[str, ...], str], int] = {}
        path = self.root / "DICOMDIR"
        self.new = not path.exists()
        if self.new:
            self.dataset = Dataset()
            self.dataset.file_meta = FileMetaDataset()
            self.dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()  # the File-set UID
            self.dataset.FileSetID = ""
            return
        self.dataset = dcmread(path)
        if "DirectoryRecordSequence" not in self.dataset:
            raise ValueError("it has no Directory Record Sequence")
        self._read_tree()

    @property
    def _encoding(self) -> Any:
        return self.dataset.get("SpecificCharacterSet", "iso8859")

    @property
    def uid(self) -> str:
        return str(self.dataset.file_meta.MediaStorageSOPInstanceUID)

    @property
    def file_set_id(self) -> str:
        return str(self.dataset.get("FileSetID", "") or "")

    @file_set_id.setter
    def file_set_id(self, value: str) -> None:
        self.dataset.FileSetID = value

    def __contains__(self, sop_instance_uid: str) -> bool:
        return sop_instance_uid in self._uids

    def instances(self) -> list[Instance]:
        """Every object the File-set lists (leaf records in use with a File ID), in the DICOMDIR's order."""
        out = []
        for node, _ in self._nodes():
            if not node.children and node.file_id() and node.record.get("RecordInUseFlag", 0xFFFF) != 0:
                out.append(Instance(node, self.root.joinpath(*node.file_id())))
        return out

    def add(self, header: Any) -> Instance:
        """Records for the object whose data set (without pixels) is ``header`` (its file meta's Transfer
        Syntax UID the written file's), under the patient, study and series records it belongs to (made
        if new); the returned instance's ``path`` is where to write it. ``ValueError`` if the object
        lacks what its records need (nothing is added then)."""
        from pydicom.fileset import _PREFIXES, _four_level_record_type, _single_level_record_type

        # pydicom's private choice of the record type (by SOP class, PS3.3 F.4) and the File ID prefix for
        # each: the standard's tables, not worth copying; tests/media/test_dicomdir.py notices if they change.
        leaf_type = _single_level_record_type(header)
        levels: list[tuple[str, str]] = []
        if leaf_type == "PATIENT":  # not a single-level record: PATIENT, STUDY, SERIES, then the leaf
            levels = [("PATIENT", "PatientID"), ("STUDY", "StudyInstanceUID"), ("SERIES", "SeriesInstanceUID")]
            leaf_type = _four_level_record_type(header)
        charset = header.get("SpecificCharacterSet") if levels else None
        parent, index = self.tree, 0
        while index < len(levels):  # down the records already there
            kind, keyword = levels[index]
            node = parent.by_key.get(f"{kind}:{header.get(keyword)}")
            if node is None:
                break
            parent, index = node, index + 1
        new = [_record(kind, header, charset) for kind, _ in levels[index:]]  # all made before any is added
        leaf = _record(leaf_type, header, charset)
        leaf.ReferencedSOPClassUIDInFile = header.SOPClassUID
        leaf.ReferencedSOPInstanceUIDInFile = header.SOPInstanceUID
        leaf.ReferencedTransferSyntaxUIDInFile = header.file_meta.TransferSyntaxUID
        place = self._place(parent)
        for record in new:
            node = _Node(record)
            node.folder = place = (*place, self._fresh(place, _PREFIXES[record.DirectoryRecordType]))
            parent = parent.adopt(node)
        file_id = (*place, self._fresh(place, _PREFIXES[leaf_type]))
        if len(file_id) > MAX_COMPONENTS:
            raise ValueError(f"its File ID would have more than {MAX_COMPONENTS} components")
        leaf.ReferencedFileID = list(file_id) if len(file_id) > 1 else file_id[0]
        node = parent.adopt(_Node(leaf))
        self._uids.add(str(header.SOPInstanceUID))
        return Instance(node, self.root.joinpath(*file_id))

    def written(self, instance: Instance, transfer_syntax: str) -> None:
        """The object ``add`` placed is written, in ``transfer_syntax``: its records are final, and encoded
        now (an exporter calls this while its next object is being written, not in ``write``)."""
        instance.node.record.ReferencedTransferSyntaxUIDInFile = transfer_syntax
        node: _Node | None = instance.node
        while node is not None and node.record is not None and node.encoded is None:
            node.encoded = _encode(node.record, self._encoding)
            node = node.parent

    def discard(self, instance: Instance) -> None:
        """Undo ``add`` (the object could not be written): its leaf, and the records left without any."""
        self._uids.discard(str(instance.get("ReferencedSOPInstanceUIDInFile", "")))
        node = instance.node
        while node.parent is not None and not node.children:
            parent = node.parent
            parent.children.remove(node)
            if parent.by_key.get(_key(node.record)) is node:
                del parent.by_key[_key(node.record)]
            node = parent

    def write(self) -> None:
        """Write the DICOMDIR (Explicit VR Little Endian, PS3.10 7.3) under a temporary name, then rename it
        into place: a reader sees the old DICOMDIR or the new one, never part of one."""
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_dataset, write_file_meta_info

        ds = self.dataset
        meta = ds.file_meta
        meta.MediaStorageSOPClassUID = MEDIA_STORAGE_DIRECTORY
        meta.TransferSyntaxUID = EXPLICIT_LE
        identify(meta)  # the kiosk wrote this DICOMDIR, whoever wrote the one it updates
        ds.FileSetConsistencyFlag = 0  # no known inconsistencies (PS3.3 F.3.2.1)
        encoding = self._encoding
        nodes = list(self._nodes())
        items = [node.encoded or _encode(node.record, encoding) for node, _ in nodes]

        def encoded(part: Any) -> bytes:
            fp = DicomBytesIO()
            fp.is_little_endian, fp.is_implicit_VR = True, False
            write_dataset(fp, part, encoding)
            return fp.getvalue()

        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        fp.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(fp, meta, enforce_standard=True)
        for tag in [t for t in ds.keys() if t.element == 0]:
            del ds[tag]  # group lengths are retired (PS3.5 7.2); their values would be stale
        ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
        ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
        head_length = fp.tell() + len(encoded(ds[:_RECORDS])) + 12  # + the sequence's tag, VR and length
        offsets: dict[int, int] = {}
        position = head_length
        for (node, _), (data, _, _) in zip(nodes, items):
            offsets[id(node)] = position
            position += 8 + len(data)
        children = self.tree.children
        if children:
            ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = offsets[id(children[0])]
            ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = offsets[id(children[-1])]
        fp.write(encoded(ds[:_RECORDS]))
        fp.write(struct.pack("<HH2sHI", 0x0004, 0x1220, b"SQ", 0, position - head_length))
        for (node, following), (data, at_next, at_lower) in zip(nodes, items):
            struct.pack_into("<I", data, at_next, offsets[id(following)] if following is not None else 0)
            struct.pack_into("<I", data, at_lower, offsets[id(node.children[0])] if node.children else 0)
            fp.write(_ITEM + struct.pack("<I", len(data)))
            fp.write(data)
        fp.write(encoded(ds[_RECORDS + 1:]))
        target = self.root / "DICOMDIR"
        temporary = self.root / "DICOMDIR.NEW"
        with open(temporary, "wb") as out:
            out.write(fp.getvalue())
        os.replace(temporary, target)
        self.new = False

    # ---- reading ------------------------------------------------------------------------------------

    def _read_tree(self) -> None:
        """The records as the offsets link them (unreachable ones are dropped, as every reader ignores them)."""
        by_offset = {record.seq_item_tell: record for record in self.dataset.DirectoryRecordSequence}
        seen: set[int] = set()
        pending = [(self.dataset.get("OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity", 0), self.tree)]
        while pending:
            offset, parent = pending.pop()
            while offset:
                record = by_offset.get(offset)
                if record is None or offset in seen:
                    raise ValueError(f"a record offset ({offset}) leads to no record, or in a loop")
                seen.add(offset)
                node = parent.adopt(_Node(record))
                pending.append((record.get("OffsetOfReferencedLowerLevelDirectoryEntity", 0), node))
                file_id = node.file_id()
                if file_id:
                    if "ReferencedSOPInstanceUIDInFile" in record and record.get("RecordInUseFlag", 0xFFFF) != 0:
                        self._uids.add(str(record.ReferencedSOPInstanceUIDInFile))
                    upper = tuple(part.upper() for part in file_id)
                    for depth in range(len(upper)):
                        self._names.setdefault(upper[:depth], set()).add(upper[depth])
                offset = record.get("OffsetOfTheNextDirectoryRecord", 0)
        del self.dataset.DirectoryRecordSequence  # the tree holds the records now

    def _nodes(self) -> Iterator[tuple[_Node, _Node | None]]:
        """Every record and the next one at its level, each followed by those below it (the order
        DCMTK and pydicom write)."""
        stack = _pairs(self.tree.children)
        while stack:
            node, following = stack.pop()
            yield node, following
            stack += _pairs(node.children)

    # ---- File IDs -----------------------------------------------------------------------------------

    def _place(self, node: _Node) -> tuple[str, ...]:
        """The folder the files and folders below ``node`` go in: the one its records' File IDs share,
        else a new one in its parent's."""
        if node is self.tree:
            return ()
        if node.folder is None:
            node.folder = _shared(node)
            if node.folder is None:
                from pydicom.fileset import _PREFIXES

                place = self._place(node.parent)
                node.folder = (*place, self._fresh(place, _PREFIXES.get(node.record.DirectoryRecordType, "DR")))
        return node.folder

    def _fresh(self, folder: tuple[str, ...], prefix: str) -> str:
        """The next name ``prefix`` + digits (8 characters) not taken in ``folder``, in the DICOMDIR or on the disk."""
        upper = tuple(part.upper() for part in folder)
        names = self._names.setdefault(upper, set())
        if upper not in self._listed:
            self._listed.add(upper)
            try:
                names.update(name.upper() for name in os.listdir(self.root.joinpath(*folder)))
            except (FileNotFoundError, NotADirectoryError):
                pass
        digits = 8 - len(prefix)
        number = self._counters.get((upper, prefix), 0)
        while f"{prefix}{number:0{digits}d}" in names:
            number += 1
        if number >= 10 ** digits:
            raise ValueError(f"no free File ID {prefix}... is left in its folder")
        name = f"{prefix}{number:0{digits}d}"
        names.add(name)
        self._counters[(upper, prefix)] = number + 1
        return name


def _shared(node: _Node) -> tuple[str, ...] | None:
    """The folder all File IDs below ``node`` say its children are in, or None if they disagree or there are none."""
    places = set()
    for child in node.children:
        if child.children:
            below = _shared(child) if child.folder is None else child.folder
            if not below:
                return None
            places.add(below[:-1])
        else:
            file_id = child.file_id()
            if not file_id:
                return None
            places.add(file_id[:-1])
        if len(places) > 1:
            return None
    return places.pop() if places else None


def _pairs(nodes: list[_Node]) -> list[tuple[_Node, _Node | None]]:
    """(node, the one after it), the last first: what a stack pops in order."""
    return list(reversed(list(zip(nodes, [*nodes[1:], None]))))


def _key(record: Any) -> str:
    """What makes a record unique among its siblings (pydicom's RecordNode.key; PS3.3 F.5)."""
    kind = record.get("DirectoryRecordType", "")
    keyword = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
               "PRIVATE": "PrivateRecordUID"}.get(kind, "ReferencedSOPInstanceUIDInFile")
    value = record.get(keyword) or record.get("ReferencedSOPInstanceUIDInFile")
    return f"{kind}:{value}" if value else ""


def _record(kind: str, header: Any, charset: Any) -> Any:
    """A new directory record of type ``kind`` made by pydicom's recorder (PS3.3 F.5) from ``header``."""
    from pydicom.fileset import DIRECTORY_RECORDERS

    try:
        record = DIRECTORY_RECORDERS[kind](header)
    except (ValueError, AttributeError, KeyError) as exc:
        raise ValueError(f"its {kind} record lacks a value ({exc})") from None
    record.OffsetOfTheNextDirectoryRecord = 0
    record.RecordInUseFlag = 0xFFFF
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    record.DirectoryRecordType = kind
    if charset:
        record.SpecificCharacterSet = charset
    return record


def _encode(record: Any, encoding: Any) -> tuple[bytearray, int, int]:
    """The record in Explicit VR Little Endian, and where the values of its two offsets are in it."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    record.OffsetOfTheNextDirectoryRecord = 0
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    for tag in [t for t in record.keys() if t.element == 0]:
        del record[tag]
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, record, encoding)
    data = bytearray(fp.getvalue())
    found: dict[int, int] = {}
    position = 0
    while len(found) < 2:  # the two come first (group 0004), before any element of another length form
        group, element, vr = struct.unpack_from("<HH2s", data, position)
        if vr in LONG_VRS:
            length, start = struct.unpack_from("<I", data, position + 8)[0], position + 12
        else:
            length, start = struct.unpack_from("<H", data, position + 6)[0], position + 8
        if (group << 16 | element) in (_NEXT, _LOWER):
            found[group << 16 | element] = start
        position = start + length
    return data, found[_NEXT], found[_LOWER]
