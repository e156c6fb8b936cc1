"""Regenerate the vendored KServe schemas from a checkout of kserve/kserve.

    python deploy/kserve/crd/extract.py /path/to/kserve

Keeps each CRD's ``openAPIV3Schema`` without descriptions; for the InferenceService, only
``spec.predictor`` and, inside it, the fields a modelserve predictor uses (``model`` and the
pod-level settings), not the per-framework shortcuts nor workerSpec (multi-node serving)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
CRDS = {
    "clusterservingruntime": "config/crd/full/serving.kserve.io_clusterservingruntimes.yaml",
    "inferenceservice": "config/crd/full/serving.kserve.io_inferenceservices.yaml",
}
DROPPED_PREDICTOR_FIELDS = {
    "containers", "huggingface", "initContainers", "lightgbm", "onnx", "paddle", "pmml",
    "pytorch", "sklearn", "tensorflow", "triton", "volumes", "workerSpec", "xgboost",
}  # fmt: skip


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def schema(crd: dict[str, Any]) -> dict[str, Any]:
    """The served version's schema, and its group/version/kind."""
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return {
        "apiVersion": f"{crd['spec']['group']}/{version['name']}",
        "kind": crd["spec"]["names"]["kind"],
        "schema": _strip(version["schema"]["openAPIV3Schema"]),
    }


def main(checkout: Path) -> None:
    """Write one JSON file per CRD beside this script."""
    for name, path in CRDS.items():
        found = schema(yaml.safe_load((checkout / path).read_text()))
        if name == "inferenceservice":
            spec = found["schema"]["properties"]["spec"]
            predictor = spec["properties"]["predictor"]
            spec["properties"] = {"predictor": predictor}
            for field in DROPPED_PREDICTOR_FIELDS:
                predictor["properties"].pop(field, None)
        text = json.dumps(found, indent=1, sort_keys=True) + "\n"
        (HERE / f"{name}.schema.json").write_text(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
