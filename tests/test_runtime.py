"""The runtime interface on real converted models: OpenVINO IRs and the Keras original."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import openvino as ov
import pytest

from edgedigits import contract, runtime
from edgedigits.errors import UserError
from edgedigits.runtime import openvino_backend


@pytest.fixture(scope="module")
def test_images(mnist):
    return mnist.x_test[:300], mnist.y_test[:300]


def _ir(models_dir, variant):
    return models_dir / contract.IR_DIR / variant / contract.IR_FILE


def test_default_model_is_the_best_ir_and_reads_mnist(ir_models_dir, test_images, monkeypatch):
    monkeypatch.setenv(contract.MODELS_DIR_ENV, str(ir_models_dir))
    images, labels = test_images
    with runtime.load_classifier() as classifier:  # no arguments: models/ir/int8
        assert classifier.backend == "openvino"
        assert classifier.variant == "int8"
        assert classifier.device == "CPU"
        assert classifier.model_path == _ir(ir_models_dir, "int8")
        assert "int8" in classifier.precision  # read back from the compiled model
        probabilities = classifier.predict(images)
    assert probabilities.shape == (300, 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    assert (probabilities.argmax(1) == labels).mean() > 0.9


def test_folder_search_falls_back_from_int8_to_fp16_to_fp32(ir_models_dir, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(ir_models_dir / contract.IR_DIR, folder / contract.IR_DIR)
    shutil.rmtree(folder / contract.IR_DIR / "int8")
    assert runtime.find_model(folder) == _ir(folder, "fp16")
    shutil.rmtree(folder / contract.IR_DIR / "fp16")
    assert runtime.find_model(folder) == _ir(folder, "fp32")
    # The ir/ folder itself and a variant folder are accepted too.
    assert runtime.find_model(folder / contract.IR_DIR) == _ir(folder, "fp32")
    assert runtime.find_model(folder / contract.IR_DIR / "fp32") == _ir(folder, "fp32")
    assert runtime.find_model(ir_models_dir, "tf") == ir_models_dir / contract.KERAS_FILE


@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8"])
def test_single_batched_and_async_paths_agree(ir_models_dir, test_images, variant):
    images, _ = test_images
    classifier = runtime.load_classifier(ir_models_dir, variant=variant)
    assert classifier.variant == variant
    reference = classifier.predict(images)
    # Batch 1 (static bound request), odd sizes padded to a power of two, > MAX_BATCH split.
    singles = np.concatenate([classifier.predict(images[i : i + 1]) for i in range(20)])
    np.testing.assert_allclose(singles, reference[:20], atol=1e-5)
    for size in (3, 5, 17):
        np.testing.assert_allclose(classifier.predict(images[:size]), reference[:size], atol=1e-5)
    with_channel = classifier.predict(images[:7, :, :, None])
    np.testing.assert_allclose(with_channel, reference[:7], atol=1e-5)
    assert classifier.predict(images[:0]).shape == (0, 10)

    results: dict[int, np.ndarray] = {}
    threads: set[str] = set()

    def collect(result: runtime.AsyncResult) -> None:
        results[result.userdata] = result.probabilities
        threads.add(threading.current_thread().name)
        assert result.latency_ms >= 0

    for start in range(0, 300, 37):
        classifier.predict_async(images[start : start + 37], collect, userdata=start)
    classifier.wait_all()
    merged = np.concatenate([results[start] for start in sorted(results)])
    np.testing.assert_allclose(merged, reference, atol=1e-5)
    assert threading.current_thread().name not in threads  # callbacks ran on workers

    image, output = classifier.bind_single()
    image[0, :, :, 0] = images[0]
    classifier.infer_single()
    np.testing.assert_allclose(output[0], reference[0], atol=1e-5)


def test_f32_can_be_forced_and_matches_keras(ir_models_dir, test_images):
    images, _ = test_images
    fp32 = runtime.load_classifier(ir_models_dir, variant="fp32", inference_precision="f32")
    assert fp32.precision == "f32"
    keras_model = runtime.load_classifier(ir_models_dir, backend="tf")
    assert (keras_model.backend, keras_model.variant, keras_model.precision) == (
        "tensorflow", "keras", "f32")
    expected = keras_model.predict(images)
    np.testing.assert_allclose(fp32.predict(images), expected, atol=1e-4)
    # The generic predict_async of the TensorFlow backend gives the same answers.
    out = {}
    keras_model.predict_async(images[:10], lambda result: out.setdefault("p", result))
    keras_model.wait_all()
    np.testing.assert_allclose(out["p"].probabilities, expected[:10], atol=1e-6)


def test_callback_errors_reach_the_caller(ir_models_dir, test_images):
    classifier = runtime.load_classifier(ir_models_dir)

    def broken(result):
        raise RuntimeError("callback failed")

    classifier.predict_async(test_images[0][:2], broken)
    with pytest.raises(RuntimeError, match="callback failed"):
        classifier.wait_all()
    classifier.wait_all()  # reported once


def test_async_inputs_live_until_inferred_even_when_the_caller_drops_them(ir_models_dir):
    """An ov.Tensor that shares a numpy array does not keep it alive: the array given to
    start_async must be held until the inference has read it (the warm-up did not, and read
    freed memory). Here the caller's array is dropped and its memory reused at once; every
    answer must still be the synchronous one."""
    classifier = runtime.load_classifier(ir_models_dir)
    images = np.random.default_rng(0).integers(0, 256, (256, 28, 28, 1), dtype=np.uint8)
    expected = classifier.predict(images)
    answers = []
    for _ in range(20):
        submitted = images.copy()
        classifier.predict_async(submitted, answers.append)
        del submitted
        np.full((256, 28, 28, 1), 255, np.uint8)  # likely the freed block, overwritten
    classifier.warmup((256,), use_async=True)  # the warm-up's own submissions, then ours
    classifier.wait_all()
    assert len(answers) == 20
    for answer in answers:
        np.testing.assert_allclose(answer.probabilities, expected, atol=1e-5)


def test_images_must_be_uint8_28x28(ir_models_dir):
    classifier = runtime.load_classifier(ir_models_dir)
    with pytest.raises(ValueError, match="28, 28"):
        classifier.predict(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        classifier.predict(np.zeros((2, 28, 28), np.float32))


def _foreign_ir(folder, rt_info: bool, side: int = 28):
    """A real IR that is not ours: a tiny graph, optionally claiming to be a digit classifier."""
    from openvino import opset13 as ops

    image = ops.parameter([-1, side, side, 1], ov.Type.u8, name="images")
    flat = ops.reshape(ops.convert(image, ov.Type.f32), ops.constant(np.array([-1, side * side])),
                       special_zero=False)
    logits = ops.matmul(flat, ops.constant(np.ones((side * side, 10), np.float32)), False, False)
    model = ov.Model([ops.softmax(logits, 1)], [image], "foreign")
    if rt_info:
        model.set_rt_info(contract.MODEL_TYPE, [contract.RT_INFO_SECTION, "model_type"])
    path = folder / "model.xml"
    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, path)
    return path


def test_bad_models_devices_and_backends_are_user_errors(ir_models_dir, tmp_path):
    with pytest.raises(UserError, match="not found"):
        runtime.load_classifier(tmp_path / "missing.xml")
    with pytest.raises(UserError, match="no OpenVINO IR"):
        runtime.load_classifier(tmp_path)
    lonely = tmp_path / "lonely" / "model.xml"
    lonely.parent.mkdir()
    shutil.copy(_ir(ir_models_dir, "int8"), lonely)
    with pytest.raises(UserError, match=r"no weights file model\.bin"):
        runtime.load_classifier(lonely)
    corrupt = tmp_path / "corrupt" / "model.xml"
    corrupt.parent.mkdir()
    corrupt.write_text("<net><layers>")
    corrupt.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(UserError, match="cannot read OpenVINO IR"):
        runtime.load_classifier(corrupt)
    with pytest.raises(UserError, match="not an edgedigits digit classifier"):
        runtime.load_classifier(_foreign_ir(tmp_path / "foreign", rt_info=False))
    with pytest.raises(UserError, match="not a 28x28 digit classifier"):
        runtime.load_classifier(_foreign_ir(tmp_path / "wrong", rt_info=True, side=32))
    with pytest.raises(UserError, match="CPU"):  # lists what this machine has
        runtime.load_classifier(ir_models_dir, device="TPU")
    with pytest.raises(UserError, match="--backend tf"):
        runtime.load_classifier(ir_models_dir / contract.KERAS_FILE)
    with pytest.raises(UserError, match="OpenVINO IR"):
        runtime.load_classifier(_ir(ir_models_dir, "int8"), backend="tf")
    with pytest.raises(UserError, match="unknown backend"):
        runtime.load_classifier(ir_models_dir, backend="caffe")
    with pytest.raises(UserError, match="unknown variant"):
        runtime.load_classifier(ir_models_dir, variant="int4")


def test_latency_model_is_unpinned_and_the_fast_call_matches_the_public_one(
    ir_models_dir, test_images, monkeypatch
):
    images, _ = test_images
    classifier = runtime.load_classifier(ir_models_dir, variant="int8")
    single = classifier._batch(1)
    # Pinning would re-pin the caller's thread around every synchronous batch-1 call.
    assert single.compiled.get_property("ENABLE_CPU_PINNING") is False
    fast = np.stack([classifier.predict(images[i : i + 1])[0] for i in range(10)])
    # The public-API fallback (used when openvino's private class is missing) agrees exactly.
    monkeypatch.setattr(openvino_backend, "_NativeInferRequest", None)
    single.run = openvino_backend._bound_infer(single.request)
    public = np.stack([classifier.predict(images[i : i + 1])[0] for i in range(10)])
    np.testing.assert_array_equal(fast, public)
