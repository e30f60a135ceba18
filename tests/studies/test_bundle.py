"""A bundle of two tiny real studies with different class counts, run through the runtime.

Study ``glyphs`` answers with a patch of LoRA factors and full class convs, ``shapes-subset``
with its class head alone (a tolerance of 100 points makes each one's smallest trial its
answer). The runtime's raw outputs and detections are checked against PyTorch's patched
detector on the same images.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch
from PIL import Image

from spotpatch import UserError
from spotpatch.cli import main
from spotpatch.evaluators import load_base, predict
from spotpatch.runtime import Fleet
from spotpatch.studies import (
    RawSSD,
    answer_patch,
    load_study,
    open_storage,
    study_space,
    write_bundle,
)


@pytest.fixture(scope="module")
def fleet(head_side_study, head_gates, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    url, _, glyphs, _ = head_side_study(
        folder, [head_gates.lora | head_gates.full], full=True, tolerance=100.0
    )
    _, _, shapes, made = head_side_study(
        folder, [{}], full=True, task="shapes-subset", tolerance=100.0
    )
    empty = optuna.create_study(
        study_name="empty", storage=open_storage(url), directions=["maximize", "minimize"]
    )
    empty.set_user_attr("spotpatch", made.user_attrs["spotpatch"])
    out = folder / "bundle"
    manifest = write_bundle(out, storage=url, studies=["glyphs", "shapes-subset"])
    return SimpleNamespace(
        url=url,
        out=out,
        manifest=manifest,
        tasks={"glyphs": glyphs.task, "shapes-subset": shapes.task},
    )


def _patched(fleet, name):
    study = load_study(name, open_storage(fleet.url))
    patch, _, _ = answer_patch(study, fleet.url)
    base = load_base("spotpatch-tiny", device="cpu")
    from spotpatch.search import study_meta

    return patch, base.apply_stored(patch, study_space(base, study_meta(study))).model


def test_the_bundle_holds_the_base_once_and_each_answer(fleet):
    m = fleet.manifest
    assert set(m["tasks"]) == {"glyphs", "shapes-subset"}
    glyphs, shapes = m["tasks"]["glyphs"], m["tasks"]["shapes-subset"]
    assert "lora4" in glyphs["sites"].values() and shapes["sites"] == {}
    assert len(glyphs["classes"]) != len(shapes["classes"])
    files = sorted(str(p.relative_to(fleet.out)) for p in fleet.out.rglob("*") if p.is_file())
    assert files == sorted(
        ["manifest.json", "base.onnx", "base.safetensors", glyphs["file"], shapes["file"]]
    )
    for name in ("glyphs", "shapes-subset"):
        patch, _ = _patched(fleet, name)
        entry = m["tasks"][name]
        assert entry["payload_bytes"] == patch.payload_bytes
        assert entry["bytes"] == (fleet.out / entry["file"]).stat().st_size
        assert entry["trial"] == patch.study["trial"] and entry["files"] == [entry["file"]]
        assert (
            entry["sha256"] == hashlib.sha256((fleet.out / entry["file"]).read_bytes()).hexdigest()
        )
    assert m["base"]["files"] == ["base.onnx", "base.safetensors"]


def _assert_same_detections(got: list[dict], want: list[dict]) -> None:
    """The same COCO detections up to float rounding, each matched once (detections of equal
    score may come in either order)."""
    assert len(got) == len(want) > 0
    left = list(got)
    for w in want:
        match = next(
            (
                g
                for g in left
                if (g["image_id"], g["category_id"]) == (w["image_id"], w["category_id"])
                and abs(g["score"] - w["score"]) <= 1e-4
                and max(abs(a - b) for a, b in zip(g["bbox"], w["bbox"], strict=True)) <= 1e-2
            ),
            None,
        )
        assert match is not None, f"no detection like {w}"
        left.remove(match)


@pytest.mark.parametrize("name", ["glyphs", "shapes-subset"])
def test_the_runtime_gives_pytorchs_outputs_and_detections(fleet, name):
    patch, model = _patched(fleet, name)
    detector = Fleet(fleet.out).detector(name)
    images = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    got = detector.raw(images.numpy())
    with torch.no_grad():
        want = RawSSD(model, (128, 128))(images)
    for g, w in zip(got, want, strict=True):
        assert g.shape == tuple(w.shape)
        assert np.abs(g - w.numpy()).max() <= 1e-4
    # Detections on the task's test images: what predict (PyTorch) gives, box for box.
    split = fleet.tasks[name].test
    picked = list(range(8))
    sub = replace(
        split,
        **{
            k: tuple(getattr(split, k)[i] for i in picked)
            for k in ("image_ids", "file_names", "sizes", "images", "boxes", "labels")
        },
    )
    expected = predict(model, sub, fleet.tasks[name].category_ids)
    arrays = [sub.images[i].permute(1, 2, 0).numpy() for i in range(len(picked))]
    found = detector(arrays)
    results = [
        {"image_id": sub.image_ids[i], "category_id": int(c), "bbox": b, "score": float(s)}
        for i, f in enumerate(found)
        for b, s, c in zip(f["boxes"].tolist(), f["scores"], f["category_ids"], strict=True)
    ]
    _assert_same_detections(results, expected)


def test_an_int8_bundle_runs_the_int8_patch(fleet, tmp_path):
    """At ``--dtype int8`` each task file is its patch stored at int8 (norms as their affine
    map, LoRA factors with their scales): the runtime computes what PyTorch computes with that
    int8 patch applied."""
    from safetensors.torch import load_file

    out = tmp_path / "int8"
    manifest = write_bundle(out, storage=fleet.url, studies=["glyphs"], dtype="int8")
    entry = manifest["tasks"]["glyphs"]
    assert entry["dtype"] == "int8"
    assert entry["payload_bytes"] <= 0.3 * fleet.manifest["tasks"]["glyphs"]["payload_bytes"]
    patch, _ = _patched(fleet, "glyphs")
    stored = load_file(out / entry["file"])
    assert any(t.dtype == torch.int8 for t in stored.values())
    base = load_base("spotpatch-tiny", device="cpu")
    model = base.apply_stored(replace(patch, tensors=stored, dtype="int8")).model
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    got = Fleet(out).detector("glyphs").raw(images.numpy())
    with torch.no_grad():
        want = RawSSD(model, (128, 128))(images)
    for g, w in zip(got, want, strict=True):
        assert np.abs(g - w.numpy()).max() <= 1e-4


def test_the_runtime_never_imports_torch(fleet):
    code = (
        "import sys, numpy as np\n"
        "from spotpatch.runtime import Fleet\n"
        f"d = Fleet({str(fleet.out)!r}).detector('glyphs')\n"
        "d([np.zeros((90, 120, 3), np.uint8)])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def _error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_predict_bundle_writes_what_predict_does(fleet, tmp_path, capsys):
    split = fleet.tasks["glyphs"].test
    images = [split.images_dir / f for f in split.file_names[:4]]
    base_out, bundle_out = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["export", "glyphs", "--out", str(tmp_path / "p"), "--storage", fleet.url]) == 0
    argv = [*map(str, images), "--score-threshold", "0.05"]
    assert (
        main(["predict", str(tmp_path / "p"), *argv, "--out", str(base_out), "--device", "cpu"])
        == 0
    )
    bundle = ["predict", "--bundle", str(fleet.out), "--task", "glyphs", *argv]
    assert main([*bundle, "--out", str(bundle_out)]) == 0
    _assert_same_detections(json.loads(bundle_out.read_text()), json.loads(base_out.read_text()))
    assert "no task 'nope'" in _error_line(capsys, [*bundle[:4], "nope", *argv])


@pytest.mark.parametrize("what", ["task", "base"])
def test_a_tampered_file_is_refused(fleet, tmp_path, capsys, what):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(fleet.out, copy)
    name = fleet.manifest["tasks"]["glyphs"]["file"] if what == "task" else "base.safetensors"
    data = bytearray((copy / name).read_bytes())
    data[-1] ^= 1
    (copy / name).write_bytes(bytes(data))
    image = tmp_path / "i.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    err = _error_line(capsys, ["predict", "--bundle", str(copy), "--task", "glyphs", str(image)])
    assert "changed after the bundle was written" in err and name in err


def test_a_patch_for_another_base_is_refused(fleet, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(fleet.out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["tasks"]["glyphs"]["base_sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="patched for another base"):
        Fleet(copy).detector("glyphs")


def test_bad_bundles_exit_2_with_one_line(fleet, tmp_path, capsys):
    url = fleet.url
    err = _error_line(capsys, ["bundle", "--out", str(tmp_path / "x"), "--storage", url])
    assert "study 'empty'" in err and not (tmp_path / "x").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    err = _error_line(capsys, ["bundle", "--out", str(tmp_path / "full"), "--storage", url])
    assert "not a spotpatch bundle" in err
    assert _error_line(
        capsys, ["bundle", "--out", str(tmp_path / "y"), "--storage", url, "--studies", "nope"]
    )
    twice = ["--studies", "glyphs", "glyphs"]
    err = _error_line(capsys, ["bundle", "--out", str(tmp_path / "y"), "--storage", url, *twice])
    assert "names 'glyphs' twice" in err and not (tmp_path / "y").exists()


@pytest.mark.parametrize("command", ["bundle", "export"])
def test_a_folder_that_cannot_be_written_is_one_line(
    fleet, tmp_path, capsys, monkeypatch, command
):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root writes anyway: the mount refuses instead
        import errno
        import tempfile

        def refuse(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    argv = {
        "bundle": ["bundle", "--studies", "glyphs"],
        "export": ["export", "glyphs"],
    }[command]
    err = _error_line(capsys, [*argv, "--out", str(locked / "out"), "--storage", fleet.url])
    assert "cannot write --out" in err and str(locked / "out") in err
    locked.chmod(0o755)
