"""The graph a bundle's tasks share: the base detector up to its raw head outputs, whose class
head comes in with each batch and whose other tensors any task may replace.

``base.onnx`` holds the graph only. Its inputs are ``images`` and the class head's tensors
(named by their state-dict names; their first dimension grows with the task's classes, so one
graph serves every class count). Every other tensor is an initializer named by its state-dict
name, stored as ONNX external data that points into ``base.safetensors``: one weights file that
ONNX Runtime reads at the offsets the graph records and that :mod:`spotpatch.runtime` reads by
name (the base weights a low-rank delta is added to). A task's patch replaces initializers
when its session is made (``SessionOptions.add_external_initializers``, applied before the
graph is optimized, so norm layers still fold into their convolutions).
"""

from __future__ import annotations

import copy
import io
import json
import struct
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spotpatch._errors import UserError
from spotpatch.studies._onnx import ONNX_OPSET, ONNX_OUTPUTS, RawSSD, _need_onnx

__all__ = ["SharedSSD", "export_base_graph", "GRAPH_FILE", "WEIGHTS_FILE"]

GRAPH_FILE = "base.onnx"
WEIGHTS_FILE = "base.safetensors"
#: Names of the wrapper's own tensors in the graph (state-dict names always contain a dot).
_OWN = {"mean": "input_mean", "std": "input_std", "anchors": "anchor_boxes"}
_PREFIX = "model."


class _FedConv(nn.Module):
    """A class-head convolution whose weight and bias are given with each batch."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.weight_in: Tensor | None = None
        self.bias_in: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x, self.weight_in, self.bias_in, self.stride, self.padding, self.dilation, self.groups
        )


class SharedSSD(RawSSD):
    """:class:`RawSSD` with its class head taken as inputs and any class count.

    ``forward(images, *head)`` takes the class-head tensors in :attr:`head_names` order. Each
    head level's output ``(N, A*K, H, W)`` is split by its ``A`` anchors per location (the
    base's), so the number of columns ``K`` follows the given tensors.
    """

    def __init__(self, model: nn.Module, image_size: tuple[int, int], head_names: list[str]):
        model = copy.deepcopy(model)
        super().__init__(model, image_size)
        self.head_names = list(head_names)
        paths = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in self.head_names))
        if [f"{p}.{t}" for p in paths for t in ("weight", "bias")] != self.head_names:
            raise UserError("the class head's tensors must be each convolution's weight and bias")
        modules = dict(self.model.named_modules())
        self._fed: list[_FedConv] = []
        for path in paths:
            conv = modules[path]
            if not isinstance(conv, nn.Conv2d) or conv.bias is None:
                raise UserError(f"bundles need a class head of biased convolutions, not {path}")
            fed = _FedConv(conv)
            parent, _, leaf = path.rpartition(".")
            setattr(modules[parent], leaf, fed)
            self._fed.append(fed)
        self.per_location = list(model.anchor_generator.num_anchors_per_location())

    def forward(self, images: Tensor, *head: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        for i, fed in enumerate(self._fed):
            fed.weight_in, fed.bias_in = head[2 * i], head[2 * i + 1]
        features = self._features((images - self.mean) / self.std)
        outputs = []
        for scoring in (self.model.head.regression_head, self.model.head.classification_head):
            levels = []
            for i, f in enumerate(features):
                r = scoring._get_result_from_module_list(f, i)
                n, _, h, w = r.shape
                r = r.view(n, self.per_location[i], -1, h, w).permute(0, 3, 4, 1, 2)
                levels.append(r.reshape(n, -1, r.shape[-1]))
            outputs.append(torch.cat(levels, dim=1))
        anchors = self.anchors.expand(images.shape[0], -1, -1)
        return outputs[0], outputs[1], anchors


def export_base_graph(
    model: nn.Module, image_size: tuple[int, int], head_names: list[str], out: Path
) -> dict:
    """Write ``out/base.onnx`` and ``out/base.safetensors`` for the base ``model``.

    Args:
        model: the base detector (SSD-style, eval mode); it is not modified.
        image_size: (height, width) of the graph's input.
        head_names: the class head's tensor names (state-dict names, each convolution's weight
            then bias), which become graph inputs after ``images``.
        out: an existing folder.

    Returns:
        ``{"inputs": [...], "outputs": [...], "initializers": n}``.
    """
    onnx = _need_onnx()
    from onnx import numpy_helper
    from safetensors.numpy import save

    shared = SharedSSD(model, image_size, head_names).eval()
    state = model.state_dict()
    head = tuple(state[n].detach().to(shared.anchors.device) for n in head_names)
    dummy = torch.rand(1, 3, *shared.image_size, device=shared.anchors.device)
    inputs = ["images", *head_names]
    dynamic = {"images": {0: "batch"}, "cls_logits": {0: "batch", 2: "classes"}}
    dynamic |= {"bbox_regression": {0: "batch"}, "anchors": {0: "batch"}}
    dynamic |= {n: {0: f"head_{i}"} for i, n in enumerate(head_names)}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # No constant folding and no eval peephole: every tensor keeps its state-dict name and
        # norm layers stay nodes of their own, so a patch can replace exactly what it changed.
        torch.onnx.export(
            shared,
            (dummy, *head),
            buffer,
            dynamo=False,
            input_names=inputs,
            output_names=list(ONNX_OUTPUTS),
            dynamic_axes=dynamic,
            opset_version=ONNX_OPSET,
            do_constant_folding=False,
            training=torch.onnx.TrainingMode.PRESERVE,
        )
    graph_model = onnx.load_from_string(buffer.getvalue())
    graph = graph_model.graph
    _undo_shared_initializers(graph)
    renames = {i.name: _state_name(i.name) for i in graph.initializer}
    for init in graph.initializer:
        init.name = renames[init.name]
    for node in graph.node:
        node.input[:] = [renames.get(x, x) for x in node.input]
    del graph.value_info[:]  # shapes there assume the base's class count
    _shorten_names(graph)
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    data = save(arrays, metadata={"format": "np", "spotpatch": "base"})
    offsets = _data_offsets(data)
    for init in graph.initializer:
        start, end = offsets[init.name]
        init.ClearField("raw_data")
        for field in ("float_data", "int32_data", "int64_data", "double_data"):
            init.ClearField(field)
        init.data_location = onnx.TensorProto.EXTERNAL
        del init.external_data[:]
        for key, value in (("location", WEIGHTS_FILE), ("offset", start), ("length", end - start)):
            entry = init.external_data.add()
            entry.key, entry.value = key, str(value)
    (out / WEIGHTS_FILE).write_bytes(data)
    (out / GRAPH_FILE).write_bytes(graph_model.SerializeToString())
    return {"inputs": inputs, "outputs": list(ONNX_OUTPUTS), "initializers": len(arrays)}


def _state_name(name: str) -> str:
    """The state-dict name of an exported initializer (the wrapper's own tensors by
    :data:`_OWN`; the exporter may suffix those, as ``anchors.1``)."""
    if name.startswith(_PREFIX):
        return name[len(_PREFIX) :]
    root = name.split(".")[0]
    if root in _OWN:
        return _OWN[root]
    raise UserError(f"unexpected tensor {name!r} in the exported graph")


def _undo_shared_initializers(graph) -> None:
    """The exporter keeps one copy of tensors with equal values and makes the others an
    ``Identity`` of it; give each its own initializer again, so a patch can replace one."""
    inits = {i.name: i for i in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            copy_ = graph.initializer.add()
            copy_.CopyFrom(inits[node.input[0]])
            copy_.name = node.output[0]
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def _shorten_names(graph) -> None:
    """Number the intermediate values and drop node names: the exporter's module paths are
    most of the graph's bytes and say nothing a runtime needs."""
    keep = {o.name for o in graph.output}
    names: dict[str, str] = {}
    for node in graph.node:
        node.name = ""
        node.doc_string = ""
        node.input[:] = [names.get(x, x) for x in node.input]
        for i, out in enumerate(node.output):
            if out not in keep:
                names[out] = node.output[i] = f"v{len(names)}"
    for out in graph.output:
        out.doc_string = ""


def _data_offsets(data: bytes) -> dict[str, tuple[int, int]]:
    """Each tensor's (start, end) byte offsets in a safetensors file's bytes."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    return {
        k: (8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1]) for k, v in header.items()
    }
