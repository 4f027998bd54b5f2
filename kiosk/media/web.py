"""The PDI web content (IHE RAD TF-3 4.47.4.1.2.3, Web Content option): INDEX.HTM at the medium's
root, a plain XHTML page (no scripts) listing patients, studies and series, and in IHE_PDI/ one
small JPEG preview per series (its middle image's middle frame), for people without a DICOM viewer.

Made from the DICOMDIR's records, so an updated File-set gets a page listing everything on it;
previews are made for the series written in this export (a series' preview keeps its name,
derived from the Series Instance UID, and is not made twice). Every text from the objects is
escaped: a patient name is data, never markup.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

from kiosk.display import printable

log = logging.getLogger(__name__)

WEB_FOLDER = "IHE_PDI"
INDEX = "INDEX.HTM"
PREVIEW_SIZE = 256  # pixels, the longer side


def preview_name(series_uid: str) -> str:
    """The preview's file name: 8 upper-case characters from the Series Instance UID (ISO 9660 level 1)."""
    digest = base64.b32encode(hashlib.sha256(series_uid.encode()).digest()).decode()
    return f"{digest[:8]}.JPG"


def write_web_content(folder: Path, instances: Iterable[Any], added: Mapping[str, Any]) -> None:
    """INDEX.HTM and the previews for the File-set in ``folder`` (``instances``: its objects, as
    ``kiosk.media.dicomdir.DicomDir.instances`` gives them); ``added``: SOP Instance UID -> header
    of the objects this export wrote (their series get previews)."""
    web = folder / WEB_FOLDER
    web.mkdir(exist_ok=True)
    instances = list(instances)
    tree = _tree(instances)
    for series_uid, files in _added_series(instances, added).items():
        target = web / preview_name(series_uid)
        if target.exists():
            continue
        image = None
        for path in _middle_first(files):
            image = render_preview(path)
            if image is not None:
                break
        if image is not None:
            image.save(target, "JPEG", quality=85)
    (folder / INDEX).write_text(_page(tree, web), encoding="utf-8")


def _tree(instances: Iterable[Any]) -> dict[tuple[str, str], dict[tuple[str, ...], dict[tuple[str, ...], int]]]:
    """(patient ID, name) -> (study UID, date, description, accession) -> (series UID, number, modality) -> count."""
    tree: dict[Any, Any] = {}
    for instance in instances:
        patient = (_value(instance, "PatientID"), _value(instance, "PatientName"))
        study = (_value(instance, "StudyInstanceUID"), _value(instance, "StudyDate"),
                 _value(instance, "StudyDescription"), _value(instance, "AccessionNumber"))
        series = (_value(instance, "SeriesInstanceUID"), _value(instance, "SeriesNumber"), _value(instance, "Modality"))
        counts = tree.setdefault(patient, {}).setdefault(study, {})
        counts[series] = counts.get(series, 0) + 1
    return tree


def _value(instance: Any, keyword: str) -> str:
    try:
        value = getattr(instance, keyword)
    except (AttributeError, KeyError):
        return ""
    return "" if value is None else str(value)


def _added_series(instances: Iterable[Any], added: Mapping[str, Any]) -> dict[str, list[tuple[int, Path]]]:
    """Series UID -> (instance number, file on the medium) of this export's objects with pixels."""
    out: dict[str, list[tuple[int, Path]]] = {}
    for instance in instances:
        header = added.get(str(instance.SOPInstanceUID))
        if header is None or "Rows" not in header:
            continue
        number = header.get("InstanceNumber")
        out.setdefault(str(header.SeriesInstanceUID), []).append((int(number or 0), Path(instance.path)))
    return out


def _middle_first(instances: list[tuple[int, Path]]) -> list[Path]:
    """The series' files by instance number, the middle one first (a series' preview shows its middle)."""
    ordered = [path for _, path in sorted(instances, key=lambda item: item[0])]
    middle = len(ordered) // 2
    return [ordered[middle], *ordered[:middle], *ordered[middle + 1:]]


def render_preview(path: Path) -> Any:
    """A small PIL image of the object's middle frame (windowed when grey), or None when it has none
    or it cannot be decoded."""
    import numpy as np
    from PIL import Image
    from pydicom import dcmread
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array

    try:
        ds = dcmread(path, stop_before_pixels=True)
        if "Rows" not in ds:
            return None
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        pixels = pixel_array(path, index=frames // 2 if frames > 1 else None, raw=False)
        photometric = str(ds.get("PhotometricInterpretation", ""))
        if photometric.startswith("MONOCHROME"):
            pixels = apply_modality_lut(pixels, ds).astype(np.float64)
            if "WindowCenter" in ds or "VOILUTSequence" in ds:
                pixels = apply_voi_lut(pixels, ds).astype(np.float64)
            low, high = float(pixels.min()), float(pixels.max())
            pixels = (pixels - low) / (high - low or 1.0) * 255.0
            if photometric == "MONOCHROME1":
                pixels = 255.0 - pixels
            image = Image.fromarray(pixels.astype(np.uint8), "L")
        elif pixels.ndim == 3 and pixels.shape[-1] == 3:
            image = Image.fromarray(_to_uint8(pixels), "RGB")
        else:
            return None
    except Exception as exc:  # noqa: BLE001 - a preview is optional: the DICOM object is what counts
        log.info("no preview of %s (%s: %s)", Path(path).name, type(exc).__name__, exc)
        return None
    image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
    return image


def _to_uint8(pixels: Any) -> Any:
    import numpy as np

    if pixels.dtype == np.uint8:
        return pixels
    high = float(pixels.max()) or 1.0
    return (pixels.astype(np.float64) / high * 255.0).astype(np.uint8)


def _text(value: str) -> str:
    return html.escape(printable(value), quote=True)


def _person(value: str) -> str:
    return " ".join(part for part in value.split("=")[0].replace("^", " ").split())


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value


def _page(tree: dict[Any, Any], web: Path) -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">',
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">',
        "<head>",
        '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />',
        "<title>DICOM medium</title>",
        "</head>",
        "<body>",
        "<h1>DICOM medium</h1>",
        "<p>The images on this medium are DICOM objects: open them with a DICOM viewer (the DICOMDIR file "
        'lists them all). The previews below are for orientation only, not for diagnosis. See '
        '<a href="README.TXT">README.TXT</a>.</p>',
    ]
    for (patient_id, name), studies in sorted(tree.items()):
        lines.append(f"<h2>Patient: {_text(_person(name)) or '(no name)'} (ID {_text(patient_id)})</h2>")
        for (_, date, description, accession), series in sorted(studies.items(), key=lambda s: (s[0][1], s[0][0])):
            title = " ".join(filter(None, [_date(date), description]))
            extra = f" (accession {_text(accession)})" if accession else ""
            lines.append(f"<h3>Study {_text(title) or '(no description)'}{extra}</h3>")
            lines.append("<ul>")
            for (series_uid, number, modality), count in sorted(series.items(), key=lambda s: _number(s[0][1])):
                label = _text(f"Series {number} {modality}".strip()) + f": {count} object(s)"
                preview = preview_name(series_uid)
                if (web / preview).exists():
                    src = f"{WEB_FOLDER}/{preview}"
                    label += (f'<br /><a href="{src}"><img src="{src}" alt="{_text(f"Series {number} preview")}" '
                              "/></a>")
                lines.append(f"<li>{label}</li>")
            lines.append("</ul>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def _number(value: str) -> tuple[int, str]:
    return (int(value), value) if value.lstrip("-").isdigit() else (1 << 30, value)
