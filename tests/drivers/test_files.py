"""drivers.file_reader.load_file: every supported format, and one clear error per bad file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.support.dicomize_helpers import gradient, jpeg_bytes, pdf_bytes, pixels_of, with_frame_header
from drivers.device import Settings
from drivers.registry import open_device
from drivers.file_reader import FileLoadError, find_files, load_file
from kiosk.capture import EncodedFormat, SourceKind


def save(tmp_path, name, image: Image.Image, **kw) -> str:
    path = tmp_path / name
    image.save(path, **kw)
    return str(path)


def rgb_image() -> Image.Image:
    return Image.fromarray(pixels_of("rgb8")[0])


def test_baseline_jpeg_is_kept_as_bytes(tmp_path):
    path = save(tmp_path, "a.jpg", rgb_image(), quality=85, dpi=(150, 150))
    [capture] = load_file(path)
    assert capture.pixels is None and capture.encoded_format is EncodedFormat.JPEG
    assert capture.encoded == open(path, "rb").read()
    assert capture.dpi == 150 and capture.kind is SourceKind.FILE_IMPORT


@pytest.mark.parametrize("mode,save_kw,shape", [
    ("RGB", {"progressive": True}, (48, 40, 3)),
    ("CMYK", {}, (48, 40, 3)),
])
def test_non_baseline_jpeg_is_decoded(tmp_path, mode, save_kw, shape):
    path = save(tmp_path, "b.jpg", rgb_image().convert(mode), **save_kw)
    [capture] = load_file(path)
    assert capture.encoded is None and capture.pixels.shape == shape
    assert capture.metadata["lossy_history"][0][1] == "ISO_10918_1"
    # Colours survive (CMYK inversion handled): close to the original.
    assert np.abs(capture.pixels.astype(int) - pixels_of("rgb8")[0]).mean() < 12


def test_grayscale_jpeg_passthrough(tmp_path):
    path = tmp_path / "g.jpg"
    path.write_bytes(jpeg_bytes(gradient()))
    [capture] = load_file(path)
    assert capture.encoded_format is EncodedFormat.JPEG


def test_exif_orientation_is_applied(tmp_path):
    image = rgb_image()
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 clockwise to view
    path = save(tmp_path, "rot.jpg", image, exif=exif, quality=95)
    [capture] = load_file(path)
    assert capture.pixels.shape == (40, 48, 3)


def test_png_8_16_palette_alpha(tmp_path):
    gray8, gray16 = pixels_of("gray8")[0], pixels_of("gray16")[0]
    [c8] = load_file(save(tmp_path, "g8.png", Image.fromarray(gray8)))
    assert np.array_equal(c8.pixels, gray8)
    [c16] = load_file(save(tmp_path, "g16.png", Image.fromarray(gray16)))
    assert c16.pixels.dtype == np.uint16 and np.array_equal(c16.pixels, gray16) and c16.bits_stored == 16
    [pal] = load_file(save(tmp_path, "p.png", rgb_image().convert("P")))
    assert pal.pixels.ndim == 3
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, ..., 3] = 255  # top half opaque red, bottom transparent
    [alpha] = load_file(save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")))
    assert alpha.pixels[0, 0].tolist() == [255, 0, 0] and alpha.pixels[3, 3].tolist() == [255, 255, 255]


def test_bmp_and_gif_first_frame(tmp_path):
    [bmp] = load_file(save(tmp_path, "a.bmp", rgb_image()))
    assert np.array_equal(bmp.pixels, pixels_of("rgb8")[0])
    first, second = Image.new("L", (8, 8), 10), Image.new("L", (8, 8), 200)
    [gif] = load_file(save(tmp_path, "a.gif", first, save_all=True, append_images=[second]))
    assert gif.pixels.ndim == 2 and int(gif.pixels[0, 0]) == 10


def test_tiff_multipage_16_bit_1_bit(tmp_path):
    pages = load_file(save(tmp_path, "m.tif", rgb_image(), save_all=True, append_images=[rgb_image(), rgb_image()]))
    assert [c.index for c in pages] == [0, 1, 2]
    [c16] = load_file(save(tmp_path, "w.tif", Image.fromarray(pixels_of("gray16")[0])))
    assert c16.pixels.dtype == np.uint16 and np.array_equal(c16.pixels, pixels_of("gray16")[0])
    bits = pixels_of("bit1")[0]
    [c1] = load_file(save(tmp_path, "b.tif", Image.fromarray(bits).convert("1"), compression="group4"))
    assert c1.pixels.dtype == np.bool_ and np.array_equal(c1.pixels, bits)


def test_tiff_pages_stored_as_jpeg_say_they_are_lossy(tmp_path, dciodvfy):
    from kiosk.dicomize import build_datasets, write_dataset
    from kiosk.study import StudyContext

    rgb, _ = pixels_of("rgb8")
    Image.fromarray(rgb).save(tmp_path / "jpeg.tif", compression="jpeg")
    Image.fromarray(rgb).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    [lossy] = load_file(tmp_path / "jpeg.tif")
    [lossless] = load_file(tmp_path / "lzw.tif")
    assert "lossy_history" not in lossless.metadata
    [ds] = build_datasets([lossy], StudyContext.manual(patient_name="A^B", patient_id="1"))
    dciodvfy(write_dataset(ds, tmp_path / "out.dcm"))
    assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert "LossyImageCompressionRatio" not in ds  # not known for a TIFF page


def test_pdf_is_kept_as_bytes(tmp_path):
    path = tmp_path / "d.pdf"
    path.write_bytes(pdf_bytes())
    [capture] = load_file(path)
    assert capture.encoded_format is EncodedFormat.PDF and capture.encoded == path.read_bytes()


def _truncated_png(tmp_path):
    data = open(save(tmp_path, "full.png", Image.fromarray(gradient(200, 200))), "rb").read()
    return data[: len(data) // 2]


@pytest.mark.parametrize("name,content,problem", [
    ("zero.jpg", lambda t: b"", "is empty"),
    ("text.png", lambda t: b"just some text\n", "has an image name (.png) but is not a JPEG, PNG"),
    ("trunc.jpg", lambda t: jpeg_bytes(gradient())[:300], "truncated"),
    ("trunc.png", _truncated_png, "truncated or corrupt PNG"),
    ("corrupt.jpg", lambda t: b"\xff\xd8\xff\xe0\x00\x02garbage\xff\xd9", "corrupt"),
    ("trunc.pdf", lambda t: b"%PDF-1.4\nhalf a document", "truncated PDF"),
    ("notes.xyz", lambda t: b"\x00\x01\x02", "is not a JPEG, PNG"),
])
def test_bad_files_name_the_problem(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content(tmp_path))
    with pytest.raises(FileLoadError) as info:
        load_file(path)
    assert str(path) in info.value.message and problem in info.value.message


def test_pixel_limit_checked_before_decoding(tmp_path):
    path = save(tmp_path, "big.png", Image.new("L", (2000, 1000)))
    with pytest.raises(FileLoadError, match="too large: 2000 x 1000"):
        load_file(path, max_pixels=1_000_000)
    big_jpeg = tmp_path / "big.jpg"
    big_jpeg.write_bytes(jpeg_bytes(np.zeros((1000, 2000), np.uint8)))
    with pytest.raises(FileLoadError, match="too large"):
        load_file(big_jpeg, max_pixels=1_000_000)


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("height,width", [(9000, 9000), (24, 20)], ids=["larger", "smaller"])
def test_jpeg_whose_header_lies_about_its_size_is_refused(tmp_path, progressive, height, width):
    """Pillow decodes a 9000 x 9000 header over 48 x 40 data without complaint (gray filler)."""
    path = tmp_path / "lie.jpg"
    path.write_bytes(with_frame_header(jpeg_bytes(pixels_of("rgb8")[0], progressive=progressive), height, width))
    with pytest.raises(FileLoadError) as info:
        load_file(path)
    assert str(path) in info.value.message and "does not match its header" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("where", ["before", "after"])
def test_jpeg_with_two_frame_headers_is_refused(tmp_path, where):
    """A bomb-sized first SOF must not slip past the pixel limit behind a small second one."""
    path = tmp_path / "two.jpg"
    path.write_bytes(with_frame_header(jpeg_bytes(pixels_of("rgb8")[0]), 20000, 20000, where))
    with pytest.raises(FileLoadError) as info:
        load_file(path, max_pixels=1_000_000)
    assert str(path) in info.value.message
    assert ("more than one frame header" if where == "before" else "does not match its header") in info.value.message


def test_pdf_that_does_not_parse_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    real = pdf_bytes()
    body = real.index(b"1 0 obj"), real.index(b"\nxref")
    cases = {
        "random.pdf": b"%PDF-1.4\n" + rng.bytes(4000) + b"\n%%EOF\n",
        # cross-reference table and trailer intact, the objects they point to overwritten
        "objects.pdf": real[:body[0]] + rng.bytes(body[1] - body[0]) + real[body[1]:],
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(FileLoadError) as info:
            load_file(path)
        assert str(path) in info.value.message and "not a readable PDF" in info.value.message, name
        assert info.value.hint


def test_pdf_whose_first_page_does_not_parse_is_refused(tmp_path):
    path = tmp_path / "page.pdf"
    data = pdf_bytes(b"BT /F1 12 Tf 10 10 Td <4869 ZZ> Tj ET")  # not hex: the drawing operators do not parse
    path.write_bytes(data)
    with pytest.raises(FileLoadError, match="not a readable PDF"):
        load_file(path)
    path.write_bytes(data.replace(b"ZZ", b"21"))  # the same document, well formed
    assert load_file(path)[0].encoded == path.read_bytes()


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_password_protected_pdf_is_refused(tmp_path, algorithm):
    import io

    from pypdf import PdfReader, PdfWriter

    def encrypted(user_password: str) -> bytes:
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes())))
        writer.encrypt(user_password, "owner", algorithm=algorithm)
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    path = tmp_path / "locked.pdf"
    path.write_bytes(encrypted("secret"))
    with pytest.raises(FileLoadError, match="password-protected") as info:
        load_file(path)
    assert "without the password" in info.value.hint
    path.write_bytes(encrypted(""))  # restrictions only: every viewer opens it
    assert load_file(path)[0].encoded_format is EncodedFormat.PDF


def test_file_source_refuses_what_does_not_parse(tmp_path):
    """The ``file:`` driver (acquire, UI import) goes through the same checks."""
    jpeg, pdf = tmp_path / "lie.jpg", tmp_path / "random.pdf"
    jpeg.write_bytes(with_frame_header(jpeg_bytes(pixels_of("rgb8")[0]), 9000, 9000))
    pdf.write_bytes(b"%PDF-1.7\n" + np.random.default_rng(2).bytes(2000) + b"\n%%EOF\n")
    for path, problem in ((jpeg, "does not match its header"), (pdf, "not a readable PDF")):
        device = open_device(f"file:{path}")
        device.configure(Settings())
        with pytest.raises(FileLoadError, match=problem):
            device.acquire()


def test_find_files_walks_directories_in_order(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.png", "d/a.png", "d/sub/c.png", "d/.hidden.png", "d/README.txt", "d/Thumbs.db"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "d" / "IMG0001").write_bytes(jpeg_bytes(gradient()))  # a JPEG without extension
    (tmp_path / "notes.txt").write_bytes(b"x")
    found = [p.name for p in find_files([tmp_path / "d", tmp_path / "notes.txt"])]
    assert found == ["IMG0001", "a.png", "b.png", "c.png", "notes.txt"]  # named files are always tried


@pytest.mark.parametrize("process,option,bits", [("12-bit extended", "+ee", 12), ("lossless", "+el", 12),
                                                   ("8-bit lossless", "+el", 8)])
def test_jpeg_beyond_baseline_from_dcmtk(tmp_path, process, option, bits):
    """12-bit and lossless JPEG streams (made by DCMTK dcmcjpeg) decode via pylibjpeg-libjpeg."""
    import shutil
    import subprocess

    import pydicom
    from pydicom.encaps import generate_frames

    from kiosk.capture import Capture
    from kiosk.dicomize import BuildOptions, build_datasets, write_dataset
    from kiosk.study import StudyContext

    if not shutil.which("dcmcjpeg"):
        pytest.skip("dcmcjpeg is not installed")
    pixels = pixels_of("gray12")[0] if bits == 12 else gradient()
    capture = Capture(SourceKind.DIGITIZED_FILM, pixels=pixels, bits_stored=bits if bits == 12 else None)
    study = StudyContext.manual(patient_name="A^B", patient_id="1")
    [ds] = build_datasets([capture], study, BuildOptions(transfer_syntax="explicit"))
    plain = write_dataset(ds, tmp_path / "plain.dcm")
    subprocess.run(["dcmcjpeg", option, str(plain), str(tmp_path / "j.dcm")], check=True, capture_output=True)
    encoded = pydicom.dcmread(tmp_path / "j.dcm")
    [stream] = generate_frames(encoded.PixelData, number_of_frames=1)
    path = tmp_path / "in.jpg"
    path.write_bytes(stream.rstrip(b"\0") if not stream.endswith(b"\xff\xd9") else stream)
    [loaded] = load_file(path)
    assert loaded.pixels.shape == pixels.shape and bits <= loaded.effective_bits <= (8 if bits == 8 else 16)
    if option == "+el":
        assert np.array_equal(loaded.pixels, pixels) and "lossy_history" not in loaded.metadata
    else:
        assert np.abs(loaded.pixels.astype(int) - pixels).mean() < 40
        assert loaded.metadata["lossy_history"][0][1] == "ISO_10918_1"


def _in_thread(action, seconds: float = 10.0):
    """``action()``'s result or exception; fails the test if it is still running after ``seconds``."""
    import threading

    outcome: list = []

    def run():
        try:
            outcome.append(action())
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)  # a blocked one must not hold up pytest
    worker.start()
    worker.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    return outcome[0]


def test_pipes_are_refused_and_skipped_without_waiting_for_a_writer(tmp_path):
    import os

    os.mkfifo(tmp_path / "scan.png")
    os.mkfifo(tmp_path / "camera")
    (tmp_path / "IMG0001").write_bytes(jpeg_bytes(gradient()))
    refused = _in_thread(lambda: load_file(tmp_path / "scan.png"))
    assert isinstance(refused, FileLoadError) and "scan.png: is not a regular file" in refused.message
    found = _in_thread(lambda: [p.name for p in find_files([tmp_path])])
    assert found == ["IMG0001", "scan.png"]  # an image name is tried (and refused); "camera" is skipped


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    import tracemalloc

    from drivers.file_reader import MAX_FILE_BYTES

    path = tmp_path / "huge.pdf"
    with path.open("wb") as handle:
        handle.write(b"%PDF-1.4\n")
        handle.truncate(2 * MAX_FILE_BYTES)  # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(FileLoadError, match=r"huge.pdf: is too large: 2,048 MB, the limit is 1,024 MB"):
            load_file(path)
        assert tracemalloc.get_traced_memory()[1] < 50 << 20
    finally:
        tracemalloc.stop()


def test_images_are_decoded_from_the_file_not_read_whole(tmp_path):
    import tracemalloc

    path = tmp_path / "padded.png"
    Image.fromarray(gradient()).save(path)
    with path.open("r+b") as handle:
        handle.truncate(300 << 20)  # 300 MB of zeros after the image: never needed
    tracemalloc.start()
    try:
        [capture] = load_file(path)
        assert tracemalloc.get_traced_memory()[1] < 50 << 20
    finally:
        tracemalloc.stop()
    assert np.array_equal(capture.pixels, gradient())
