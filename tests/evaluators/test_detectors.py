"""Contract tests over every registered detector family."""

from __future__ import annotations

import pytest
import torch

from spotpatch import UserError
from spotpatch.evaluators import get_detector, list_detectors, load_base, save_base
from spotpatch.evaluators._detectors import Detector, register_detector
from spotpatch.spaces import discover_sites


@pytest.fixture(scope="module", params=list_detectors())
def family(request):
    detector = get_detector(request.param)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return detector, detector.build(3)


def test_registry():
    assert {
        "spotpatch-tiny",
        "torchvision:ssdlite320_mobilenet_v3_large",
        "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
    } <= set(list_detectors())
    with pytest.raises(ValueError, match="already registered"):
        register_detector(get_detector("spotpatch-tiny"))
    with pytest.raises(UserError, match="unknown detector"):
        get_detector("yolo")
    assert isinstance(get_detector("spotpatch-tiny"), Detector)


def test_declared_class_head_is_what_depends_on_the_classes(family):
    """The declared class head is exactly the set of modules whose shapes change with the
    number of classes."""
    detector, model = family
    other = detector.build(5)
    shapes = {n: t.shape for n, t in model.state_dict().items()}
    differs = {n.rsplit(".", 1)[0] for n, t in other.state_dict().items() if t.shape != shapes[n]}
    declared = {n for n, _ in model.named_modules() if n and detector.is_class_head(n)}
    assert declared and differs == declared


def test_site_discovery(family):
    detector, model = family
    sites, head = discover_sites(
        model, class_head=detector.class_head, image_size=detector.image_size
    )
    names = [s.name for s in sites]
    assert len(names) == len(set(names)) > 10
    modules = dict(model.named_modules())
    convs = [
        n
        for n, m in modules.items()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear) and not detector.is_class_head(n)
    ]
    assert names == convs  # every conv/linear layer outside the class head, in module order
    assert {h.name.rsplit(".", 1)[0] for h in head} == {
        n for n in modules if n and detector.is_class_head(n)
    }
    assert any(s.depthwise for s in sites) and any(s.norm for s in sites)
    for s in sites:
        if s.norm:
            assert isinstance(modules[s.norm], torch.nn.BatchNorm2d | torch.nn.BatchNorm1d)
            assert modules[s.norm].num_features == s.out_features
        assert s.block and s.stage
    blocks, stages = {s.block for s in sites}, {s.stage for s in sites}
    assert len(stages) < len(blocks) < len(sites)
    # Backbone stages carry their stride, measured by a dummy forward.
    assert any("@s" in st for st in stages)


def test_a_base_for_another_model_is_refused(tmp_path, random_base):
    path = tmp_path / "b.safetensors"
    save_base(random_base.model, "torchvision:ssdlite320_mobilenet_v3_large", path)
    with pytest.raises(UserError, match="not spotpatch-tiny"):
        load_base("spotpatch-tiny", path)


def test_a_checkpoint_roundtrips_with_its_classes(tmp_path, random_base):
    path = tmp_path / "b.safetensors"
    sha = save_base(random_base.model, "spotpatch-tiny", path, classes=["a"])
    again = load_base("spotpatch-tiny", path, device="cpu")
    assert again.sha256 == sha == random_base.sha256
    assert again.classes == ("a",) and again.num_classes == random_base.num_classes


def test_torch_checkpoints_load_weights_only(tmp_path, random_base):
    path = tmp_path / "b.pth"
    torch.save(random_base.model.state_dict(), path)
    assert load_base("spotpatch-tiny", path, device="cpu").sha256 == random_base.sha256
    bad = tmp_path / "bad.pth"
    torch.save({"x": object()}, bad)  # a pickle that weights_only refuses
    with pytest.raises(UserError, match="not a loadable weights-only checkpoint"):
        load_base("spotpatch-tiny", bad)


def test_torchvision_weights_are_not_downloaded(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(UserError, match="no local weights .* download"):
        load_base("torchvision:ssdlite320_mobilenet_v3_large")


@torch.no_grad()
def test_a_cached_prefix_resumes_as_the_backbone_runs(family):
    """Where a family declares ``cached_prefix``, running the backbone from any cut point on,
    given what came before it, gives exactly the backbone's own feature maps."""
    from spotpatch.evaluators._prefix import _run, _steps, cut_points

    detector, model = family
    if not detector.cached_prefix:
        assert not hasattr(model.backbone, "extra")  # no SSD-style extractor left out
        return
    model.eval()
    images, _ = model.transform([torch.rand(3, 90, 70), torch.rand(3, 64, 64)])
    expected = list(model.backbone(images.tensors).values())
    steps = _steps(model)
    assert len(cut_points(model)) == len(steps)
    assert {n for n, p in model.backbone.named_parameters()} == {
        f"{s.path}.{n}".removeprefix("backbone.")
        for s in steps
        for n, _ in s.module.named_parameters()
    }
    taps, x = [], images.tensors
    for cut, step in enumerate(steps):
        resumed, _ = _run(steps[cut:], list(taps), x)
        assert len(resumed) == len(expected)
        assert all(torch.equal(a, b) for a, b in zip(resumed, expected, strict=True)), cut
        x = step.module(x)
        if step.tap:
            taps.append(x)
