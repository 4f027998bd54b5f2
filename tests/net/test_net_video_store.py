"""Video objects to a real PACS: Orthanc stores the H.264 and HEVC objects of a clip (split into parts) and
gives each back with the pixel data as it was sent."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.encaps import generate_fragments

from kiosk.config import LocalConfig, parse_node_url
from kiosk.dicomize import BuildOptions, build_datasets, write_dataset
from kiosk.net.store import store_files
from kiosk.study import StudyContext
from tests.support.video import clip_of, make_video

pytest.importorskip("av", reason="PyAV is not installed (pip install kiosk[video])")

STUDY = StudyContext.manual(patient_name="VIDEO^TEST", patient_id="VID1", birth_date="19800101", sex="F")


@pytest.mark.parametrize("kind", ["h264-mp4", "hevc-mp4"])
def test_orthanc_stores_each_part_of_a_clip_and_returns_its_stream_intact(tmp_path, orthanc, kind):
    clip = make_video(tmp_path, kind)
    limit = 64 * 1024 + clip.stat().st_size // 2
    datasets = build_datasets([clip_of(clip)], STUDY, BuildOptions(modality="ES", max_object_bytes=limit))
    files = [write_dataset(ds, tmp_path / f"{n}.dcm") for n, ds in enumerate(datasets)]
    assert len(files) >= 2
    result = store_files(parse_node_url(orthanc.url), LocalConfig(), files)
    assert result.ok, [r.outcome for r in result.results]
    for path in files:
        sent = pydicom.dcmread(path)
        [found] = orthanc.rest("/tools/lookup", method="POST", body=str(sent.SOPInstanceUID).encode())
        stored = orthanc.rest_bytes(f"/instances/{found['ID']}/file")
        (tmp_path / "back.dcm").write_bytes(stored)
        back = pydicom.dcmread(tmp_path / "back.dcm")
        assert back.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert (back.SOPClassUID, back.NumberOfFrames, back.ImageComments) == \
            (sent.SOPClassUID, sent.NumberOfFrames, sent.ImageComments)
        assert list(generate_fragments(back.PixelData)) == list(generate_fragments(sent.PixelData))
