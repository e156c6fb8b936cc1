"""Load a registered version into memory: the bytes from the database, checked against their
sha256, through the safe loaders, into the predictor that serves it."""

from __future__ import annotations

import logging
from typing import cast

from modelserve.core.db import Database
from modelserve.core.errors import ArtifactIntegrityError
from modelserve.inference.cache import LoadedVersion
from modelserve.inference.column_blocks import (
    VERIFICATION_ROWS,
    verified_blocks,
    verified_nameless,
)
from modelserve.inference.intake import numeric_rules
from modelserve.inference.native import make_predictor
from modelserve.inference.onnx_predictor import OnnxPredictor, open_session
from modelserve.inference.validation import CompiledValidator
from modelserve.registry.loaders import ArtifactFormat, LoadedArtifact, load_artifact
from modelserve.registry.probe import sample_instances
from modelserve.registry.service import RegistryService, ResolvedVersion, sha256_hex

logger = logging.getLogger(__name__)


def load_version(db: Database, version: ResolvedVersion, *, max_rows: int) -> LoadedVersion:
    """Load ``version`` from the database: its ONNX twin when its runtime is ``onnx`` and it has
    one, else its estimator (see ``load_estimator``) with verified column blocks; each checked
    against its recorded sha256 (ArtifactIntegrityError otherwise)."""
    validator = CompiledValidator(version.input_schema, max_rows=max_rows)
    rules = numeric_rules(version.input_schema)
    twin = None
    if version.serving.runtime == "onnx":
        with db.sessions() as session:
            twin = RegistryService(session).onnx_twin(version.version_id)
    if twin is not None:  # served by ONNX Runtime; the scikit-learn artifact is not needed
        content, sha256 = twin
        if sha256_hex(content) != sha256:
            raise ArtifactIntegrityError(
                f"ONNX twin of {version.model_name} v{version.number} does not match its "
                "sha256; refusing to load it.",
                details={"expected_sha256": sha256},
            )
        try:
            predictor = OnnxPredictor(open_session(content), version.input_schema, version.output)
        except Exception as exc:  # e.g. an ONNX Runtime that cannot run it: use scikit-learn
            logger.warning(
                "%s v%s: ONNX twin cannot be loaded (%s: %s); serving with scikit-learn",
                version.model_name,
                version.number,
                type(exc).__name__,
                exc,
            )
        else:
            return LoadedVersion(
                version.version_id, validator, predictor, runtime="onnx", rules=rules
            )
    estimator = load_estimator(db, version).estimator
    sample = sample_instances(version.input_schema, VERIFICATION_ROWS)
    blocks = verified_blocks(estimator, version.input_schema, sample)
    if blocks is None and rules is not None:
        # Fitted on a DataFrame of the schema's numbers: a copy that takes the matrix.
        estimator = verified_nameless(estimator, version.input_schema, sample) or estimator
    return LoadedVersion(
        version_id=version.version_id,
        validator=validator,
        predictor=make_predictor(estimator, version.input_schema, version.output, blocks=blocks),
        rules=rules,
    )


def load_estimator(db: Database, version: ResolvedVersion) -> LoadedArtifact:
    """The version's estimator: from its serving form when it has one (a skops version;
    loads without importing skops), else from its artifact; both checked against their
    sha256 and loaded by the safe loaders."""
    with db.sessions() as session:
        registry = RegistryService(session)
        form = registry.serving_form(version.version_id)
        if form is None:
            data, sha256, fmt = registry.artifact(version.version_id), version.sha256, None
        else:
            (data, sha256), fmt = form, "joblib"
    if sha256_hex(data) != sha256:
        what = "Artifact" if form is None else "Serving form"
        raise ArtifactIntegrityError(
            f"{what} of {version.model_name} v{version.number} does not match its sha256; "
            "refusing to load it.",
            details={"expected_sha256": sha256},
        )
    return load_artifact(data, cast(ArtifactFormat, fmt or version.format))
