"""infer/deploy/: the KServe manifests load into kserve's SDK models; the image stays edge-only.

No Kubernetes or Docker engine here: the manifests are checked by infer/deploy/check_manifests.py
(kserve's own model classes, in a subprocess: kserve and tritonclient.grpc cannot share one
process), and the Dockerfile by what it installs and copies. Neither is built nor deployed.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ROOT, run_command

DEPLOY = ROOT / "infer" / "deploy"


def test_every_manifest_is_a_valid_inference_service():
    result = run_command("infer/deploy/check_manifests.py", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "digits-ovms.yaml: valid V1beta1InferenceService (digits)" in result.stdout
    assert "digit-reader.yaml: valid V1beta1InferenceService (digit-reader)" in result.stdout
    assert "number-reader.yaml: valid V1beta1InferenceService (number-reader)" in result.stdout
    assert "digits-ovms-canary.yaml: valid V1beta1InferenceService (digits)" in result.stdout


def test_the_checker_refuses_misspelt_and_missing_fields(tmp_path):
    ovms = (DEPLOY / "kserve" / "digits-ovms.yaml").read_text()
    reader = (DEPLOY / "kserve" / "digit-reader.yaml").read_text()
    canary = (DEPLOY / "kserve" / "digits-ovms-canary.yaml").read_text()
    cases = {
        "field.yaml": (ovms.replace("storageUri", "storageURI"),
                       "storageURI: not a field of V1beta1ModelSpec"),
        "container.yaml": (reader.replace("readinessProbe", "readynessProbe", 1),
                           "readynessProbe: not a field of V1Container"),
        "format.yaml": (ovms.replace("name: openvino_ir", "version: '1'"),
                        "modelFormat"),
        "kind.yaml": (ovms.replace("kind: InferenceService", "kind: Deployment"),
                      "kind InferenceService"),
        "canary-raw.yaml": (canary.replace("deploymentMode: Serverless",
                                           "deploymentMode: RawDeployment"),
                            "canaryTrafficPercent needs the Serverless deployment mode"),
        "canary-percent.yaml": (canary.replace("canaryTrafficPercent: 10",
                                               "canaryTrafficPercent: 110"),
                                "canaryTrafficPercent must be 0-100"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        result = run_command("infer/deploy/check_manifests.py", str(path), timeout=300)
        assert result.returncode == 2, (name, result.stdout)
        assert message in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.stderr


def test_the_ovms_manifest_serves_the_repository_convert_writes():
    text = (DEPLOY / "kserve" / "digits-ovms.yaml").read_text()
    assert "name: digits\n" in text  # OVMS names the model after the InferenceService
    assert "name: openvino_ir" in text and "protocolVersion: v2" in text
    assert re.search(r"storageUri: \S+/serving/digits\n", text)


def test_the_canary_rolls_a_new_repository_out_to_ovms_digits():
    ovms = (DEPLOY / "kserve" / "digits-ovms.yaml").read_text()
    canary = (DEPLOY / "kserve" / "digits-ovms-canary.yaml").read_text()
    assert "name: digits\n" in canary and "canaryTrafficPercent: 10" in canary
    # the same service and model as the one it updates; only where the model is differs
    old = re.search(r"storageUri: (\S+)", ovms).group(1)
    new = re.search(r"storageUri: (\S+)", canary).group(1)
    assert new != old and new.endswith("/serving/digits")


def test_the_number_reader_service_serves_both_models_from_one_models_folder():
    text = (DEPLOY / "kserve" / "number-reader.yaml").read_text()
    assert '"--number-model", "/mnt/models/number-reader"' in text
    assert "path: /v2/models/number-reader/ready" in text
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert '"--model", "/mnt/models"' in dockerfile  # serving/digits/ inside it is found


def test_the_image_installs_the_serving_requirements_only():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    installs = re.findall(r"pip install [^\n]*", dockerfile)
    assert installs == ["pip install --no-cache-dir -r /app/requirements-serve.txt",
                        "pip install --no-cache-dir --no-deps /app"]
    serve_pins = _pins(DEPLOY / "requirements-serve.txt")
    assert set(serve_pins) == {"openvino", "opencv-python", "numpy", "kserve"}
    project_pins = _pins(ROOT / "requirements.txt")
    assert all(project_pins[name] == version for name, version in serve_pins.items())
    for source in re.findall(r"^COPY (\S+(?: \S+)*) /app", dockerfile, re.MULTILINE):
        for part in source.split():
            assert (ROOT / part).exists(), part
    assert '"--host", "0.0.0.0"' in dockerfile  # reachable from outside the container


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins
