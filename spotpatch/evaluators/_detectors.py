"""Detector families by name: builders, class-head declarations and input sizes.

``spotpatch-tiny`` is an SSDLite with a MobileNetV3-Small (width 0.5) backbone at 128x128, made
from torchvision's detection parts; its base weights ship with the package. The torchvision
mobile detectors are available by ``torchvision:<builder name>``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from torch import Tensor, nn

from spotpatch._errors import UserError

__all__ = ["Detector", "register_detector", "get_detector", "list_detectors", "WEIGHTS_DIR"]

WEIGHTS_DIR = Path(__file__).parent / "weights"
_REGISTRY: dict[str, Detector] = {}


@dataclass(frozen=True)
class Detector:
    """A detector family: how to build it for ``num_classes`` (background included).

    Attributes:
        name: registry name, e.g. ``spotpatch-tiny``.
        build: ``build(num_classes) -> nn.Module``, randomly initialized, no downloads.
        class_head: regex patterns of module paths whose tensors depend on the classes.
        image_size: (height, width) images are resized to; ``keep_aspect`` makes it
            (short side, max long side) instead.
        keep_aspect: resize keeping the aspect ratio (two-stage detectors) or to a fixed size.
        default_weights: where the default base weights come from (a shipped file name under
            ``WEIGHTS_DIR``, or ``torchvision`` for torchvision's weights API).
        description: one line for listings.
        cached_prefix: its backbone runs the children of each ``backbone.features.N`` in turn,
            then ``backbone.extra``, handing each ``features.N``'s and each extra layer's output
            to the heads (torchvision's SSDLite extractors): the frozen activations before a
            config's first patched site can be cached (``_prefix``).

    Example:
        >>> get_detector("spotpatch-tiny").image_size
        (128, 128)
    """

    name: str
    build: Callable[[int], nn.Module]
    class_head: tuple[str, ...]
    image_size: tuple[int, int]
    keep_aspect: bool = False
    default_weights: str | None = None
    description: str = ""
    cached_prefix: bool = False
    torchvision_weights: str | None = field(default=None, repr=False)

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) an image of this size is resized to for this detector."""
        if not self.keep_aspect:
            return self.image_size[1], self.image_size[0]
        short, long = self.image_size
        scale = min(short / min(width, height), long / max(width, height))
        return max(1, round(width * scale)), max(1, round(height * scale))

    def is_class_head(self, module_path: str) -> bool:
        return any(re.fullmatch(p, module_path) for p in self.class_head)


def register_detector(detector: Detector) -> Detector:
    """Add a detector family to the registry; names are unique."""
    if detector.name in _REGISTRY:
        raise ValueError(f"detector {detector.name!r} is already registered")
    _REGISTRY[detector.name] = detector
    return detector


def get_detector(name: str) -> Detector:
    """The registered detector family called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(
            f"unknown detector {name!r} (known: {', '.join(sorted(_REGISTRY))})"
        ) from None


def list_detectors() -> list[str]:
    return sorted(_REGISTRY)


# -- spotpatch-tiny ----------------------------------------------------------------------------
class TinyFeatureExtractor(nn.Module):
    """MobileNetV3 features tapped at the C3 and C4 expansion layers and at the end, then two
    SSDLite extra layers: five maps (strides 8 to 128) so that small objects have anchors.

    Follows torchvision's ``SSDLiteFeatureExtractorMobileNet``, with one more tap.
    """

    def __init__(self, features: nn.Sequential, norm_layer, extra_channels=(256, 128)):
        from torchvision.models.detection.ssdlite import _extra_block, _normal_init

        super().__init__()
        strided = [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
        c3, c4 = strided[-2], strided[-1]
        for pos in (c3, c4):
            if features[pos].use_res_connect:
                raise ValueError("a tapped block must not have a residual connection")
        self.features = nn.Sequential(
            nn.Sequential(*features[:c3], features[c3].block[0]),
            nn.Sequential(features[c3].block[1:], *features[c3 + 1 : c4], features[c4].block[0]),
            nn.Sequential(features[c4].block[1:], *features[c4 + 1 :]),
        )
        channels = [features[-1].out_channels, *extra_channels]
        self.extra = nn.ModuleList(
            _extra_block(cin, cout, norm_layer) for cin, cout in itertools.pairwise(channels)
        )
        _normal_init(self.extra)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        output = []
        for block in self.features:
            x = block(x)
            output.append(x)
        for block in self.extra:
            x = block(x)
            output.append(x)
        return {str(i): v for i, v in enumerate(output)}


#: The feature maps' channels of the tiny detector, per image size: fixed by its architecture,
#: measured by a dummy forward (half of a build's time) the first time a size is built.
_TINY_OUT_CHANNELS: dict[int, tuple[int, ...]] = {}


def build_spotpatch_tiny(num_classes: int, *, image_size: int = 128, **kwargs) -> nn.Module:
    """SSDLite with a MobileNetV3-Small (width 0.5) backbone at ``image_size`` x ``image_size``.

    Keyword arguments override the :class:`torchvision.models.detection.SSD` defaults below.
    """
    from torchvision.models import mobilenet_v3_small
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead

    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    backbone = mobilenet_v3_small(weights=None, width_mult=0.5, norm_layer=norm_layer)
    extractor = TinyFeatureExtractor(backbone.features, norm_layer)
    size = (image_size, image_size)
    if image_size not in _TINY_OUT_CHANNELS:  # a dummy forward: once per process and size
        _TINY_OUT_CHANNELS[image_size] = tuple(det_utils.retrieve_out_channels(extractor, size))
    out_channels = list(_TINY_OUT_CHANNELS[image_size])
    anchors = DefaultBoxGenerator([[2, 3]] * len(out_channels), min_ratio=0.1, max_ratio=0.9)
    head = SSDLiteHead(out_channels, anchors.num_anchors_per_location(), num_classes, norm_layer)
    defaults = {
        "score_thresh": 0.01,
        "nms_thresh": 0.5,
        "detections_per_img": 100,
        "topk_candidates": 200,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    return SSD(extractor, anchors, size, num_classes, head=head, **(defaults | kwargs))


def _torchvision_builder(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        from torchvision.models import detection

        # weights_backbone=None: never reach for ImageNet weights over the network.
        return getattr(detection, name)(
            weights=None, weights_backbone=None, num_classes=num_classes
        )

    return build


_SSDLITE_HEAD = (r"head\.classification_head\.module_list\.\d+\.1",)

register_detector(
    Detector(
        name="spotpatch-tiny",
        build=build_spotpatch_tiny,
        class_head=_SSDLITE_HEAD,
        image_size=(128, 128),
        default_weights="spotpatch-tiny.safetensors",
        description="SSDLite, MobileNetV3-Small x0.5, 128x128; base shipped in the package",
        cached_prefix=True,
    )
)
register_detector(
    Detector(
        name="torchvision:ssdlite320_mobilenet_v3_large",
        build=_torchvision_builder("ssdlite320_mobilenet_v3_large"),
        class_head=_SSDLITE_HEAD,
        image_size=(320, 320),
        default_weights="torchvision",
        torchvision_weights="SSDLite320_MobileNet_V3_Large_Weights",
        description="torchvision SSDLite320, MobileNetV3-Large (COCO weights from torchvision)",
        cached_prefix=True,
    )
)
register_detector(
    Detector(
        name="torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
        build=_torchvision_builder("fasterrcnn_mobilenet_v3_large_320_fpn"),
        class_head=(
            r"roi_heads\.box_predictor\.cls_score",
            r"roi_heads\.box_predictor\.bbox_pred",
        ),
        image_size=(320, 640),
        keep_aspect=True,
        default_weights="torchvision",
        torchvision_weights="FasterRCNN_MobileNet_V3_Large_320_FPN_Weights",
        description="torchvision Faster R-CNN, MobileNetV3-Large FPN, 320 px (COCO weights)",
    )
)
