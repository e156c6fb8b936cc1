"""Any ONNX file (``.onnx``), served by ONNX Runtime: standard operators only (no custom
operator domains, no external data files, which ONNX Runtime would read from the server's
disk). What the graph takes and gives is read from it; ``OnnxFilePredictor`` maps the schema's
features onto its inputs and its outputs onto labels and probabilities or a regression value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelserve.core.errors import InvalidArtifact

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
_CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


@dataclass(frozen=True)
class OnnxFile:
    """A checked ONNX model and its ONNX Runtime session."""

    session: Any
    classes: list[Any] | None
    """Class labels the graph declares (ZipMap or a classifier operator), if any."""
    inputs: list[tuple[str, str, list[Any]]] = field(default_factory=list)
    """(name, type, shape) of each graph input."""
    outputs: list[tuple[str, str]] = field(default_factory=list)
    """(name, type) of each graph output."""

    def predict(self, feeds: dict[str, Any]) -> list[Any]:
        """The graph's outputs for ``feeds`` (input name -> array)."""
        result: list[Any] = self.session.run(None, feeds)
        return result


def looks_like(data: bytes) -> bool:
    """Whether ``data`` parses as an ONNX model with a graph (ONNX has no magic number; its
    first field, the IR version, opens with byte 0x08, which no pickle or archive does)."""
    if not data.startswith(b"\x08"):
        return False
    try:
        return bool(_parse(data).graph.node)
    except InvalidArtifact:
        return False


def load(data: bytes) -> OnnxFile:
    """The checked model; InvalidArtifact when it is not ONNX, uses a custom operator domain or
    external data, or ONNX Runtime cannot open it."""
    from modelserve.inference.onnx_predictor import open_session

    model = _parse(data)
    _refuse_custom(model)
    try:
        session = open_session(data)
    except Exception as exc:
        raise InvalidArtifact(
            "ONNX Runtime cannot open this ONNX file.",
            details={"error": f"{type(exc).__name__}: {exc}"[:300]},
        ) from exc
    return OnnxFile(
        session=session,
        classes=_classes(model),
        inputs=[(i.name, i.type, list(i.shape)) for i in session.get_inputs()],
        outputs=[(o.name, o.type) for o in session.get_outputs()],
    )


def _parse(data: bytes) -> Any:
    import onnx

    try:
        model = onnx.ModelProto.FromString(data)
    except Exception as exc:  # protobuf's DecodeError, or worse
        raise InvalidArtifact("Not a readable ONNX file.", details={"error": str(exc)}) from exc
    if not model.HasField("graph"):
        raise InvalidArtifact("The ONNX file has no graph.")
    return model


def _graphs(graph: Any) -> list[Any]:
    """``graph`` and every subgraph (If/Loop/Scan bodies) inside it."""
    import onnx

    found = [graph]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found += _graphs(attribute.g)
            for sub in attribute.graphs:
                found += _graphs(sub)
    return found


def _refuse_custom(model: Any) -> None:
    import onnx

    graphs = _graphs(model.graph)
    domains = sorted({n.domain for g in graphs for n in g.node} - STANDARD_DOMAINS)
    if domains or model.functions:
        custom = domains or sorted({f.domain for f in model.functions})
        raise InvalidArtifact(
            "The ONNX file uses custom operators, which this server does not run.",
            details={"domains": custom},
        )
    tensors = [t for g in graphs for t in g.initializer]
    tensors += [a.t for g in graphs for n in g.node for a in n.attribute if a.type == a.TENSOR]
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors):
        raise InvalidArtifact(
            "The ONNX file keeps tensors in external data files; save it as one file "
            "(onnx.save_model(model, path, save_as_external_data=False)).",
        )


def _classes(model: Any) -> list[Any] | None:
    nodes = sorted(model.graph.node, key=lambda n: n.op_type != "ZipMap")  # ZipMap first
    for node in nodes:
        for attribute in node.attribute:
            if attribute.name in _CLASS_ATTRIBUTES:
                if attribute.strings:
                    return [s.decode("utf-8") for s in attribute.strings]
                return [int(v) for v in attribute.ints]
    return None
