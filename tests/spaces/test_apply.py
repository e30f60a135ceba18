from __future__ import annotations

import hashlib
import json

import pytest
import torch

from spotpatch import UserError
from spotpatch.spaces import PRESETS, Patch, PatchConfig, load_patch, payload_bytes, save_patch


def _images(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 128, 128, generator=g) for _ in range(n)]


def _targets(n=4):
    box = torch.tensor([[20.0, 20.0, 60.0, 70.0], [70.0, 30.0, 110.0, 90.0]])
    return [{"boxes": box, "labels": torch.tensor([1, 2])} for _ in range(n)]


def _snapshot(base):
    return {k: v.detach().clone() for k, v in base.model.state_dict().items()}


@pytest.mark.parametrize("preset", PRESETS)
def test_shared_tensors_stay_bit_identical(random_base, preset):
    """Training a patch moves its own tensors only: every base parameter and buffer (running
    statistics included) is bit-identical afterwards."""
    before = _snapshot(random_base)
    space = random_base.space(3)
    applied = random_base.apply(space.preset(preset), space, seed=1)
    start = {k: v.clone() for k, v in applied.state().items()}
    optimizer = torch.optim.SGD(applied.parameters(), lr=0.1)
    applied.model.train()
    for _ in range(3):
        loss = sum(applied.model(_images(), _targets()).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = random_base.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    moved = [k for k, v in applied.state().items() if not torch.equal(v, start[k])]
    assert moved, "the patch itself must train"


def test_patched_model_shares_base_storage(random_base):
    space = random_base.space(3)
    one = random_base.apply(space.preset("bn"), space).model.state_dict(keep_vars=True)
    two = random_base.apply(space.preset("full"), space).model.state_dict(keep_vars=True)
    base = random_base.model.state_dict(keep_vars=True)
    conv = "backbone.features.0.0.0.weight"
    norm = "backbone.features.0.0.1.weight"
    assert one[conv] is base[conv]  # shared under bn: the same tensor object, no copy
    assert one[norm] is not base[norm] and torch.equal(one[norm], base[norm])
    assert two[conv] is not base[conv]


@pytest.mark.parametrize("preset", PRESETS)
def test_untrained_patch_computes_like_the_base(random_base, preset):
    """A patch starts at the base (LoRA deltas at zero): features are unchanged."""
    space = random_base.space(3)
    model = random_base.apply(space.preset(preset), space).model.eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        ours = model.backbone(x)
        theirs = random_base.model.backbone(x)
    for key in theirs:
        assert torch.equal(ours[key], theirs[key])


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_saved_payload_equals_reported_bytes(random_base, tmp_path, dtype):
    space = random_base.space(4, dtype=dtype)
    config = space.preset("lora4")
    applied = random_base.apply(config, space, seed=3)
    patch = Patch(
        config=config,
        tensors=applied.state(),
        model=random_base.name,
        base_sha256=random_base.sha256,
        task="t",
        classes=("a", "b", "c"),
        dtype=dtype,
    )
    save_patch(patch, tmp_path / "p")
    assert payload_bytes(tmp_path / "p" / "patch.safetensors") == space.patch_bytes(config)
    loaded = load_patch(tmp_path / "p")
    assert loaded.config == config and loaded.classes == ("a", "b", "c")
    assert all(torch.equal(loaded.tensors[k], v) for k, v in patch.tensors.items())
    again = random_base.apply_stored(loaded, space)
    assert all(torch.equal(again.state()[k], v) for k, v in patch.tensors.items())


def test_patch_for_another_base_is_refused(random_base, tmp_path):
    space = random_base.space(3)
    applied = random_base.apply(space.preset("bn"), space)
    patch = Patch(
        config=space.preset("bn"),
        tensors=applied.state(),
        model=random_base.name,
        base_sha256="0" * 64,
        task="t",
        classes=("a", "b"),
    )
    with pytest.raises(UserError, match="another spotpatch-tiny base"):
        random_base.apply_stored(patch)


def test_tensors_that_do_not_match_the_config_are_refused(random_base):
    space = random_base.space(3)
    applied = random_base.apply(space.preset("bn"), space)
    tensors = applied.state()
    tensors.pop(next(iter(tensors)))
    with pytest.raises(UserError, match="missing tensor"):
        applied.load(tensors)


def test_a_patch_folder_checks_its_tensor_file_against_its_json(random_base, tmp_path):
    space = random_base.space(3)
    patch = Patch(
        config=space.preset("bn"),
        tensors=random_base.apply(space.preset("bn"), space).state(),
        model=random_base.name,
        base_sha256=random_base.sha256,
        task="t",
        classes=("a", "b"),
        study={"name": "pets", "trial": 4},
    )
    save_patch(patch, tmp_path)
    tensors, meta = tmp_path / "patch.safetensors", tmp_path / "patch.json"
    digest = hashlib.sha256(tensors.read_bytes()).hexdigest()
    assert json.loads(meta.read_text())["tensors_sha256"] == digest
    assert load_patch(tmp_path).tensors_sha256 == digest
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 1
    tensors.write_bytes(bytes(data))
    with pytest.raises(
        UserError, match=r"changed after it was written \(trial 4 of study 'pets'\)"
    ):
        load_patch(tmp_path)
    # A folder written before the sha256 was recorded is read unchecked.
    old = json.loads(meta.read_text())
    del old["tensors_sha256"]
    meta.write_text(json.dumps(old))
    assert load_patch(tmp_path).tensors_sha256 is None


def test_bad_patch_folders(tmp_path):
    with pytest.raises(UserError, match="not a patch folder"):
        load_patch(tmp_path)
    (tmp_path / "patch.json").write_text("{nope")
    (tmp_path / "patch.safetensors").write_bytes(b"junk")
    with pytest.raises(UserError, match="malformed JSON"):
        load_patch(tmp_path)


def test_tensor_roles_group_every_trained_tensor(random_base):
    space = random_base.space(3, granularity="site")
    lora = [n for n, k in space.preset("lora4").kinds.items() if str(k) == "lora4"]
    sites = [space.site(n) for n in lora if space.site(n).norm][:3]
    config = PatchConfig({sites[0].name: "bn", sites[1].name: "lora4", sites[2].name: "full"})
    roles = space.tensor_roles(config)
    assert set(roles) == set(space.patch_tensors(config))
    assert roles[f"{sites[0].norm}.weight"] == roles[f"{sites[2].norm}.bias"] == "norm"
    assert roles[f"{sites[1].name}.lora_A"] == roles[f"{sites[1].name}.lora_B"] == "lora"
    assert roles[f"{sites[2].name}.weight"] == "weight"
    assert all(roles[h.name] == "weight" for h in space.head)
    applied = random_base.apply(config, space)
    groups = applied.parameters_by_role()
    assert set(groups) == {"weight", "norm", "lora"}
    flat = [id(p) for ps in groups.values() for p in ps]
    assert sorted(flat) == sorted(id(p) for p in applied.parameters())
