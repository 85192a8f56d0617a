"""Image and data decoding is bounded for every format (issue 13, class 2).

Each hostile file is read in its own subprocess, which reports its peak memory; the files are
small but claim (or inflate to) huge sizes. Run this module as a script to print the table of
time and peak memory per file that README's reliability section quotes:

    python tests/test_reliability_decode.py
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgedigits.errors import UserError
from edgedigits.image import decode, gray, headers

ROOT = Path(__file__).resolve().parents[1]
PEAK_LIMIT_MB = 600

# --------------------------------------------------------------------------------------------
# Hostile files, one per format the project could be handed


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, depth: int = 8, color: int = 0, idat: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _encoded(extension: str, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(extension, image)
    assert ok, extension
    return data.tobytes()


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


def many_scans_jpeg(side: int, scans: int) -> bytes:
    """A gray progressive JPEG (``side`` x ``side``) with ``scans`` more AC refinement scans after
    its own: each is ~20 bytes (one end-of-band run over every block, from a Huffman table added
    for it) and costs the decoder a pass over every block (2000 x 2000, 2,000 scans: 56 KB,
    ~8 s of CPU here before the fix)."""
    image = np.full((side, side), 200, np.uint8)
    cv2.putText(image, "7", (side // 3, side * 3 // 4), cv2.FONT_HERSHEY_SIMPLEX, side / 50, 0,
                max(1, side // 16))
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    component = data[data.index(b"\xff\xc2") + 10]
    blocks = ((side + 7) // 8) ** 2
    bits = ""
    while blocks >= 16384:  # symbol 0xE0, code 0: a run of 2^14 + (14 bits) blocks
        run = min(blocks, 32767)
        bits += "0" + format(run - 16384, "014b")
        blocks -= run
    rest = max(blocks.bit_length() - 1, 0)  # symbol r<<4, code 10: 2^r + (r bits) blocks
    if blocks:
        bits += "10" + (format(blocks - (1 << rest), f"0{rest}b") if rest else "")
    bits += "1" * (-len(bits) % 8)
    entropy = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
    table = (b"\xff\xc4" + struct.pack(">HB", 21, 0x11) + bytes([1, 1] + [0] * 14)
             + bytes([0xE0, rest << 4]))
    # SOS: one component, DC table 0 / AC table 1, coefficients 1-63, Ah=1 Al=0 (refinement)
    scan = (b"\xff\xda" + struct.pack(">HBBBBBB", 8, 1, component, 0x01, 1, 63, 0x10)
            + entropy.replace(b"\xff", b"\xff\x00"))
    end = data.rindex(b"\xff\xd9")
    return data[:end] + table + scan * scans + data[end:]


def hostile_images(folder: Path) -> dict[str, Path]:
    """name -> file. Every one must be refused (UserError) cheaply."""
    small = np.zeros((64, 64, 3), np.uint8)
    gray = np.zeros((64, 64), np.uint8)
    files: dict[str, bytes] = {}
    # formats refused by name of their bytes (their decoders allocate before any check)
    files["jpeg2000.jp2"] = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 1400
    files["radiance.hdr"] = _encoded(".hdr", small.astype(np.float32))
    files["pfm.pfm"] = _encoded(".pfm", small.astype(np.float32))
    files["avif.avif"] = b"\x00\x00\x00\x20ftypavif" + b"\x00" * 100
    # accepted formats whose header claims a bomb
    files["png-60000.png"] = _png(60000, 60000)
    files["png-16bit-rgba-9000.png"] = _png(9000, 9000, depth=16, color=6)
    files["png-rgb-9000.png"] = _png(9000, 9000, color=2)  # 243 MB to inflate: too slow
    forged = _encoded(".png", gray)  # a PNG of normal size whose IDAT length is a lie
    idat = forged.index(b"IDAT") - 4
    files["png-forged-idat-length.png"] = _patch(forged, idat, b"\xff\xff\xff\xf0")
    jpeg = _encoded(".jpg", gray)
    sof = jpeg.index(b"\xff\xc0")
    files["jpeg-60000.jpg"] = _patch(jpeg, sof + 5, struct.pack(">HH", 60000, 60000))
    gif = _encoded(".gif", small)
    files["gif-65535.gif"] = _patch(gif, 6, struct.pack("<HH", 65535, 65535))
    bmp = _encoded(".bmp", small)
    files["bmp-40000.bmp"] = _patch(bmp, 18, struct.pack("<ii", 40000, 40000))
    webp = _encoded(".webp", small)
    files["webp-16384.webp"] = _patch(webp, 21, struct.pack("<I", 0x3FFF | (0x3FFF << 14)))
    files["sun-raster-32000.ras"] = _patch(_encoded(".ras", small), 4,
                                           struct.pack(">II", 32000, 32000))
    files["pgm-30000.pgm"] = b"P5\n30000 30000\n255\n" + b"\x00" * 1000
    tiff = _encoded(".tiff", small)
    files["tiff-header-only.tiff"] = tiff[:12]
    files["text-named.png"] = b"this is not an image\n"
    # cheap to send, expensive to decode: CPU time, not memory
    files["jpeg-2000-scans.jpg"] = many_scans_jpeg(2000, 2000)
    png = _encoded(".png", gray)
    files["png-200000-chunks.png"] = (png[:33] + _png_chunk(b"tEXt", b"a\0b") * 200_000
                                      + png[33:])
    paths = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    huge = folder / "sparse-1.5GB.png"  # a huge file named .png: refused before reading it
    with huge.open("wb") as handle:
        handle.write(_png(64, 64))
        handle.truncate(1_500_000_000)
    paths[huge.name] = huge
    return paths


# Peak memory of the process itself: VmHWM starts again at exec (ru_maxrss would carry over
# the RSS of the forked test runner, TensorFlow and all).
PEAK = ("int(next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))"
        ".split()[1]) / 1024")

_PROBE = """
import json, sys, time
from edgedigits.image import decode
from edgedigits.errors import UserError
started = time.perf_counter()
try:
    image = decode.read(sys.argv[1])
    outcome = f"read {image.original_size[0]}x{image.original_size[1]}"
except UserError as error:
    outcome = "refused: " + str(error).split(": ", 1)[-1]
print(json.dumps({"seconds": time.perf_counter() - started, "outcome": outcome,
                  "peak_mb": PEAK}))
""".replace("PEAK", PEAK)


def probe(path: Path) -> dict:
    """Read one file in a fresh process: its outcome, time and peak memory (RSS, MB)."""
    result = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # OpenCV's own log lines stay off the console
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return hostile_images(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("name", [
    "jpeg2000.jp2", "radiance.hdr", "pfm.pfm", "avif.avif", "png-60000.png",
    "png-16bit-rgba-9000.png", "png-rgb-9000.png", "png-forged-idat-length.png",
    "jpeg-60000.jpg", "gif-65535.gif",
    "bmp-40000.bmp", "webp-16384.webp", "sun-raster-32000.ras", "pgm-30000.pgm",
    "tiff-header-only.tiff", "text-named.png", "sparse-1.5GB.png", "jpeg-2000-scans.jpg",
    "png-200000-chunks.png",
])
def test_a_hostile_image_is_refused_in_bounded_memory(hostile, name):
    measured = probe(hostile[name])
    assert measured["outcome"].startswith("refused"), measured
    assert measured["peak_mb"] < PEAK_LIMIT_MB, measured


def test_jpeg_scans_are_counted_and_ordinary_progressive_jpegs_read(tmp_path):
    assert headers.jpeg_scans(many_scans_jpeg(64, 0)) == 6  # OpenCV's gray progressive script
    assert headers.jpeg_scans(many_scans_jpeg(64, 100)) == 106
    color = np.zeros((3000, 4000, 3), np.uint8)
    cv2.putText(color, "42", (900, 2200), cv2.FONT_HERSHEY_SIMPLEX, 60, (255, 255, 255), 200)
    progressive = cv2.imencode(".jpg", color, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert headers.jpeg_scans(progressive) == 10
    # a 12 MP progressive photo is read, by the command line and by the server's pixel limit
    assert decode.decode(progressive, "photo.jpg").original_size == (4000, 3000)
    assert decode.decode(progressive, "photo.jpg", max_pixels=25_000_000).format == "JPEG"
    # the server's 25 MP limit allows 10 scans at 25 MP, 20 at 12 MP: 21 here are refused
    twenty_one = many_scans_jpeg(3500, 15)
    with pytest.raises(UserError, match="in 21 scans, over the limit of 20 at that size"):
        decode.decode(twenty_one, "x.jpg", max_pixels=25_000_000)


def test_classify_refuses_a_jpeg_of_thousands_of_scans_in_one_line(ir_models_dir, tmp_path):
    from conftest import run_command
    from edgedigits import contract

    path = tmp_path / "scans.jpg"
    path.write_bytes(many_scans_jpeg(2000, 2000))
    assert path.stat().st_size < 100_000
    result = run_command("infer/classify.py", str(path),
                         env={contract.MODELS_DIR_ENV: str(ir_models_dir)})
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    said = [line for line in (result.stdout + result.stderr).splitlines() if "scans" in line]
    assert len(said) == 1 and "2006 scans, over the limit of 32" in said[0], result


def _write_big_images(folder: Path) -> dict[str, Path]:
    """Real images at the edge of what is accepted (written by a child: they are big)."""
    code = f"""
import cv2, numpy as np
folder = {str(folder)!r}
rgba = np.full((3800, 3800, 4), 255, np.uint8); rgba[800:3000, 1800:2000, 3] = 0
cv2.imwrite(folder + "/rgba-14mp.png", rgba); del rgba
sixteen = np.full((3000, 3000, 3), 65535, np.uint16); sixteen[500:2500, 1400:1600] = 0
cv2.imwrite(folder + "/rgb16-9mp.png", sixteen); del sixteen
gray = np.full((10000, 9000), 255, np.uint8); gray[2000:8000, 4000:5000] = 0
cv2.imwrite(folder + "/gray-90mp.jpg", gray)
cv2.imwrite(folder + "/gray-progressive-20mp.jpg", gray[:5000, :4000],
            [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    return {path.name: path for path in folder.iterdir()}


@pytest.fixture(scope="module")
def big_images(tmp_path_factory):
    return _write_big_images(tmp_path_factory.mktemp("big"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rgba-14mp.png", "rgb16-9mp.png", "gray-90mp.jpg",
                                  "gray-progressive-20mp.jpg"])
def test_a_big_real_image_is_read_in_bounded_memory(big_images, name):
    measured = probe(big_images[name])
    assert measured["outcome"].startswith("read"), measured
    assert measured["peak_mb"] < PEAK_LIMIT_MB, measured


@pytest.mark.slow
def test_threads_do_not_multiply_peak_memory(big_images, tmp_path):
    """classify reads a folder on up to 8 threads: the decodes share one memory budget."""
    folder = tmp_path / "many"
    folder.mkdir()
    for copy in range(6):
        (folder / f"copy{copy}.png").symlink_to(big_images["rgba-14mp.png"])
    code = (
        "import json, sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from pathlib import Path\n"
        "from edgedigits.image import decode\n"
        "paths = sorted(Path(sys.argv[1]).iterdir())\n"
        "with ThreadPoolExecutor(8) as pool:\n"
        "    shapes = [d.gray.shape for d in pool.map(decode.read, paths)]\n"
        f"peak = {PEAK}\n"
        "print(json.dumps({'shapes': shapes, 'peak_mb': peak}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                            text=True, timeout=300)
    measured = json.loads(result.stdout)
    assert len(measured["shapes"]) == 6
    assert measured["peak_mb"] < PEAK_LIMIT_MB, measured


def test_decoded_image_says_its_original_size_and_scale(tmp_path):
    image = np.full((1500, 3000), 255, np.uint8)
    image[500:1000, 1000:1200] = 0
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), image)
    decoded = decode.read(path)
    assert decoded.original_size == (3000, 1500) and decoded.format == "PNG"
    assert decoded.gray.shape == (256, 512) and decoded.scale == pytest.approx(512 / 3000)
    from_bytes = decode.decode(path.read_bytes(), name="upload")
    assert np.array_equal(from_bytes.gray, decoded.gray)
    with pytest.raises(UserError, match="upload"):
        decode.decode(path.read_bytes()[:100], name="upload")


# --------------------------------------------------------------------------------------------
# MNIST data files: the header first, then no more than it promises


def test_an_idx_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    from edgedigits.data.mnist import IDX_IMAGES_MAGIC, read_idx

    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as handle:  # header says 60000 images...
        handle.write(struct.pack(">IIII", IDX_IMAGES_MAGIC, 60000, 28, 28))
        block = b"\0" * (1 << 20)
        for _ in range(1024):  # ...then 1 GiB of zeros follow
            handle.write(block)
    assert bomb.stat().st_size < 2_000_000
    code = ("import sys\nfrom edgedigits.data.mnist import read_idx\n"
            "from edgedigits.errors import UserError\n"
            "try:\n    read_idx(sys.argv[1], int(sys.argv[2]))\n"
            "except UserError as error:\n    print(error)\n"
            f"print({PEAK})\n")
    result = subprocess.run([sys.executable, "-c", code, str(bomb), str(IDX_IMAGES_MAGIC)],
                            capture_output=True, text=True, timeout=120)
    message, peak = result.stdout.strip().splitlines()
    assert "longer than its header says" in message
    assert float(peak) < 300
    promise = tmp_path / "lies.gz"  # a header promising more images than any digit set has
    with gzip.open(promise, "wb") as handle:
        handle.write(struct.pack(">IIII", IDX_IMAGES_MAGIC, 50_000_000, 28, 28))
    with pytest.raises(UserError, match="more than"):
        read_idx(promise, IDX_IMAGES_MAGIC)


@pytest.mark.parametrize("damage", ["truncated", "flipped-byte", "not-a-zip", "object-array"])
def test_a_corrupt_mnist_npz_is_one_line_exit_2(mnist, tmp_path, damage):
    from conftest import run_command

    path = tmp_path / "mnist.npz"
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=mnist.x_train[:2000], y_train=mnist.y_train[:2000],
                        x_test=mnist.x_test[:500], y_test=mnist.y_test[:500])
    data = buffer.getvalue()
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped-byte":  # a CRC error inside x_train's compressed data
        data = _patch(data, 5000, bytes([data[5000] ^ 0xFF]))
    elif damage == "not-a-zip":
        data = b"<html>504 Gateway Timeout</html>"
    else:
        buffer = io.BytesIO()
        np.savez(buffer, x_train=np.array([object()] * 3), y_train=mnist.y_train[:3],
                 x_test=mnist.x_test[:3], y_test=mnist.y_test[:3], allow_pickle=True)
        data = buffer.getvalue()
    path.write_bytes(data)
    result = run_command("train/train.py", "--data-dir", str(path), "--epochs", "1",
                         "--output", str(tmp_path / "models"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "mnist.npz" in result.stderr
    assert not (tmp_path / "models" / "model.keras").exists()


# --------------------------------------------------------------------------------------------
# Fuzz: damaged files of every accepted format raise only the project's own error


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    seeds = [_encoded(ext, image) for ext in (".png", ".jpg", ".bmp", ".gif", ".tiff", ".webp",
                                              ".ras")]
    seeds.append(_encoded(".png", np.dstack([image, image[:, :, :1]]).astype(np.uint16) * 257))
    seeds.append(b"P5\n32 24\n255\n" + image[:, :, 0].tobytes())
    return seeds


SEEDS = _seeds()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), data=st.data())
def test_fuzz_damaged_files_raise_only_user_error(seed, data):
    damaged = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(damaged) - 1))
        damaged[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(damaged)))
    try:
        decoded = decode.decode(bytes(damaged[:cut]), name="fuzz")
    except UserError:
        return
    assert decoded.gray.dtype == np.uint8 and decoded.gray.ndim == 2
    assert max(decoded.gray.shape) <= gray.WORKING_MAX_SIDE


if __name__ == "__main__":  # the table for README: time and peak memory per file
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        files = {**hostile_images(Path(scratch)), **_write_big_images(Path(scratch))}
        print("| file | outcome | time | peak memory |\n|---|---|---|---|")
        for name, path in files.items():
            m = probe(path)
            outcome = m["outcome"] if len(m["outcome"]) < 90 else m["outcome"][:87] + "..."
            print(f"| {name} | {outcome} | {m['seconds']:.2f} s | {m['peak_mb']:.0f} MB |")
