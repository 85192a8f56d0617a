"""Check KServe manifests against KServe's own Python SDK models, without a cluster.

    python infer/deploy/check_manifests.py                     # infer/deploy/kserve/*.yaml
    python infer/deploy/check_manifests.py my-isvc.yaml

Each document is built into ``kserve.V1beta1InferenceService`` the way the SDK's ``ApiClient``
deserializes the API server's answers (field by field through ``openapi_types`` and
``attribute_map``, into KServe's models and the Kubernetes core types such as ``V1Container``,
whose constructors check required fields and enums), and every key is checked against the model
class it lands in: a misspelt or misplaced field, which a deserializer silently drops, is an
error. Also checked: apiVersion/kind, the required fields the models enforce,
that each component names an image or a model format, and that a canary rollout
(``canaryTrafficPercent``) is a percentage in a Serverless service (KServe splits traffic
between revisions with Knative only; in RawDeployment mode the field does nothing).
Exit status 0 all valid, 2 otherwise.
This is what the tests run; it does not replace a dry run against a real cluster.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DEFAULT_FOLDER = Path(__file__).resolve().parent / "kserve"
API_VERSION = "serving.kserve.io/v1beta1"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
NO_CANARY_MODES = ("RawDeployment", "Standard")  # plain Deployments: no revisions to split


def _model_class(type_name: str):
    import kserve.models
    import kubernetes.client.models

    return (getattr(kserve.models, type_name, None)
            or getattr(kubernetes.client.models, type_name, None))


def unknown_keys(data: object, type_name: str, where: str) -> list[str]:
    """Keys in ``data`` that the SDK model ``type_name`` (and its field types) does not have."""
    problems: list[str] = []
    list_of = re.fullmatch(r"list\[(.+)\]", type_name)
    dict_of = re.fullmatch(r"dict\(([^,]+), (.+)\)", type_name)
    if list_of:
        if not isinstance(data, list):
            return [f"{where}: expected a list"]
        for index, item in enumerate(data):
            problems += unknown_keys(item, list_of.group(1), f"{where}[{index}]")
        return problems
    if dict_of:
        if not isinstance(data, dict):
            return [f"{where}: expected a mapping"]
        for key, value in data.items():
            problems += unknown_keys(value, dict_of.group(2), f"{where}.{key}")
        return problems
    klass = _model_class(type_name)
    if klass is None or not getattr(klass, "openapi_types", None):
        return problems  # a primitive, object, or quantity: nothing below to check
    if not isinstance(data, dict):
        return [f"{where}: expected a mapping for {type_name}"]
    by_json_name = {json_name: attr for attr, json_name in klass.attribute_map.items()}
    for key, value in data.items():
        if key not in by_json_name:
            problems.append(f"{where}.{key}: not a field of {type_name}")
            continue
        problems += unknown_keys(value, klass.openapi_types[by_json_name[key]],
                                 f"{where}.{key}")
    return problems


def build(data: object, type_name: str) -> object:
    """``data`` as the SDK model ``type_name`` (KServe's or Kubernetes'), recursively."""
    list_of = re.fullmatch(r"list\[(.+)\]", type_name)
    dict_of = re.fullmatch(r"dict\(([^,]+), (.+)\)", type_name)
    if data is None:
        return None
    if list_of:
        return [build(item, list_of.group(1)) for item in data]
    if dict_of:
        return {key: build(value, dict_of.group(2)) for key, value in data.items()}
    klass = _model_class(type_name)
    if klass is None or not getattr(klass, "openapi_types", None):
        return data  # str, int, bool, object, quantities
    return klass(**{attr: build(data[json_name], klass.openapi_types[attr])
                    for attr, json_name in klass.attribute_map.items() if json_name in data})


def check_document(document: dict, name: str) -> list[str]:
    if not isinstance(document, dict):
        return [f"{name}: not a mapping"]
    problems = []
    if document.get("apiVersion") != API_VERSION or document.get("kind") != "InferenceService":
        problems.append(f"{name}: expected apiVersion {API_VERSION}, kind InferenceService")
    problems += [f"{name}: {p}" for p in unknown_keys(document, "V1beta1InferenceService", "")]
    try:
        service = build(document, "V1beta1InferenceService")
    except (ValueError, TypeError, AttributeError) as error:  # required fields, enums, shapes
        return [*problems, f"{name}: {error}"]
    if not (service.metadata and service.metadata.name):
        problems.append(f"{name}: metadata.name is required")
    spec = service.spec
    if spec is None or spec.predictor is None:
        return [*problems, f"{name}: spec.predictor is required"]
    for role in ("predictor", "transformer"):
        component = getattr(spec, role)
        if component is None:
            continue
        model = getattr(component, "model", None)
        containers = component.containers or []
        if model is None and not any(c.image for c in containers):
            problems.append(f"{name}: {role} needs a model (modelFormat + storageUri) or a "
                            "container image")
        if model is not None and not (model.model_format and model.model_format.name):
            problems.append(f"{name}: {role}.model.modelFormat.name is required")
        canary = component.canary_traffic_percent
        if canary is not None:
            mode = (service.metadata.annotations or {}).get(DEPLOYMENT_MODE, "Serverless")
            if not isinstance(canary, int) or not 0 <= canary <= 100:
                problems.append(f"{name}: {role}.canaryTrafficPercent must be 0-100, "
                                f"got {canary!r}")
            if mode in NO_CANARY_MODES:
                problems.append(f"{name}: {role}.canaryTrafficPercent needs the Serverless "
                                f"deployment mode (KServe does not split traffic in {mode})")
    return problems


def main(argv: list[str]) -> int:
    import yaml

    paths = [Path(a) for a in argv] or sorted(DEFAULT_FOLDER.glob("*.yaml"))
    if not paths:
        print("check_manifests.py: error: no manifests to check", file=sys.stderr)
        return 2
    failed = False
    for path in paths:
        try:
            documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except (OSError, yaml.YAMLError) as error:
            print(f"{path}: cannot read: {str(error).splitlines()[0]}", file=sys.stderr)
            failed = True
            continue
        problems = [p for d in documents for p in check_document(d, path.name)]
        for problem in problems:
            print(problem, file=sys.stderr)
        failed |= bool(problems) or not documents
        if documents and not problems:
            print(f"{path.name}: valid V1beta1InferenceService "
                  f"({', '.join(d['metadata']['name'] for d in documents)})")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
