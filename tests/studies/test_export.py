"""Exporting a study's answer, predicting with it, and its ONNX model, on a tiny real study.

The study's first three trials are fixed configs that patch only the detector's head side (the
class head alone, then LoRA on the box regressors, then the class convs in full too), so
training them needs no backward pass through the backbone; the fourth is the full fine-tune the
answer is measured against. The study builds in seconds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from dataclasses import replace
from types import SimpleNamespace

import optuna
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from spotpatch.cli import main
from spotpatch.evaluators import coco_map, load_base, predict
from spotpatch.search import (
    front_points,
    full_point,
    knee_point,
    pareto_front,
    study_meta,
    trial_record,
    trial_records,
)
from spotpatch.spaces import DTYPES, SCALE_SUFFIX, load_patch, payload_bytes
from spotpatch.studies import (
    RawSSD,
    export_patch,
    fleet_plan,
    load_study,
    open_storage,
    predict_images,
    selected_trial,
    trial_patch,
)
from spotpatch.testing import pycocotools_map


@pytest.fixture(scope="module")
def study(head_side_study, head_gates, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    gate_sets = ({}, head_gates.lora, head_gates.lora | head_gates.full)
    url, spec, evaluator, made = head_side_study(folder, gate_sets, full=True)
    storage = open_storage(url)
    # A study with no finished trial yet: same metadata, nothing run.
    empty = optuna.create_study(
        study_name="empty", storage=storage, directions=["maximize", "minimize"]
    )
    empty.set_user_attr("spotpatch", made.user_attrs["spotpatch"])
    return SimpleNamespace(
        url=url,
        spec=spec,
        trials={t.number: t for t in made.trials},
        meta=study_meta(made),
        task=evaluator.task,
        folder=folder,
    )


@pytest.fixture
def no_test_map(monkeypatch):
    """Skip scoring the test split where a test is about something else (it is slow)."""
    monkeypatch.setattr("spotpatch.studies._export._test_map", lambda *args: None)


def _export(study, out, *extra):
    assert (
        main(["export", "glyphs", "--out", str(out), "--storage", study.url, "--json", *extra])
        == 0
    )


def _json_out(capsys) -> dict:
    out = capsys.readouterr().out
    return json.loads(out[out.index("{") :])


def test_an_exported_patch_reproduces_its_trial_exactly(study, tmp_path, capsys):
    _export(study, tmp_path / "p")
    info = _json_out(capsys)
    trial = study.trials[info["study"]["trial"]]
    assert json.loads((tmp_path / "p" / "patch.json").read_text()) == info
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "patch.json",
        "patch.safetensors",
    ]
    assert info["format_version"] == 1
    assert info["base"] == {"model": "spotpatch-tiny", "sha256": study.meta.base_sha256}
    assert info["task"]["name"] == "glyphs"
    assert info["task"]["classes"] == list(study.task.classes)
    assert info["task"]["category_ids"] == list(study.task.category_ids)
    assert info["sites"] == trial.user_attrs["config"]
    assert info["study"] == {
        "name": "glyphs",
        "trial": trial.number,
        "rule": "answer",
        "runs": 1,
        "map_mean": trial.user_attrs["map"],
    }
    assert info["confirmation"] is None  # the study ran without confirmation
    metrics = info["metrics"]
    assert (metrics["map"], metrics["map50"]) == (
        trial.user_attrs["map"],
        trial.user_attrs["map50"],
    )
    assert metrics["patch_bytes"] == trial.user_attrs["patch_bytes"] == int(trial.values[1])
    assert payload_bytes(tmp_path / "p" / "patch.safetensors") == metrics["patch_bytes"]
    # A user's path: a base loaded anew, the patch from disk, val scored by the metrics code.
    fresh = load_base("spotpatch-tiny", device="cpu")
    patch = load_patch(tmp_path / "p")
    model = fresh.apply_stored(patch).model
    assert coco_map(model, study.task.val, study.task.category_ids) == (
        trial.user_attrs["map"],
        trial.user_attrs["map50"],
    )
    # The bench tasks have a test split: pycocotools itself gives the score on it.
    test = pycocotools_map(model, study.task.test, study.task.category_ids)
    assert metrics["test_map"] == test


def _expected(study, rule: str) -> int:
    front = pareto_front(front_points([trial_record(t) for t in study.trials.values()]))
    mid = front[len(front) // 2]
    if rule == "default":  # the answer: the smallest within the tolerance of the full's mean
        records = [trial_record(t) for t in study.trials.values()]
        mark = full_point(records).map - study.meta.tolerance / 100
        return next(p for p in front if p.map >= mark - 1e-12).number
    if rule == "knee":
        return knee_point(front, study.meta.full_bytes).number
    return {"within=0": front[-1], "min-map": mid, "max-bytes": front[0]}[rule].number


@pytest.mark.parametrize("rule", ["default", "knee", "within=0", "min-map", "max-bytes"])
def test_each_rule_picks_its_trial(study, tmp_path, capsys, no_test_map, rule):
    front = pareto_front(front_points([trial_record(t) for t in study.trials.values()]))
    text = {
        "min-map": f"min-map={front[len(front) // 2].map!r}",
        "max-bytes": f"max-bytes={front[0].bytes}",
    }.get(rule, rule)
    _export(study, tmp_path / "p", *([] if rule == "default" else ["--select", text]))
    assert _json_out(capsys)["study"]["trial"] == _expected(study, rule)


def test_out_must_be_new_empty_or_an_earlier_export(study, tmp_path, capsys, no_test_map):
    (tmp_path / "empty").mkdir()
    _export(study, tmp_path / "empty")
    _export(study, tmp_path / "empty", "--select", "knee")  # an earlier export is replaced
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == [
        "patch.json",
        "patch.safetensors",
    ]
    capsys.readouterr()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    argv = ["export", "glyphs", "--out", str(mine), "--storage", study.url]
    assert main(argv) == 2
    assert "not a spotpatch export" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"


def test_a_failed_export_writes_nothing(study, tmp_path, monkeypatch, no_test_map):
    out = tmp_path / "p"
    export_patch("glyphs", out, storage=study.url, rule="max-bytes=1MB")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr("spotpatch.studies._export.export_onnx", broken)
    for target in (out, tmp_path / "new"):
        with pytest.raises(RuntimeError, match="exporter crashed"):
            export_patch("glyphs", target, storage=study.url, onnx=tmp_path / "m.onnx")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old export stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no temp folders, no new ones


@pytest.mark.parametrize("recorded", [True, False])
def test_category_ids_come_from_the_study_or_else_its_spec(study, tmp_path, no_test_map, recorded):
    # A copy of the storage, its spec moved away (the study recorded the ids) or its ids dropped
    # from the study's metadata (a study made before it recorded them: the spec gives them).
    db = tmp_path / "s.db"
    db.write_bytes((study.folder / "s.db").read_bytes())
    url = f"sqlite:///{db}"
    made = load_study("glyphs", open_storage(url))
    assert study_meta(made).category_ids == study.task.category_ids
    if not recorded:
        raw = dict(made.user_attrs["spotpatch"])
        del raw["category_ids"]
        made.set_user_attr("spotpatch", raw)
        assert study_meta(made).category_ids is None
    spec = study.spec.path
    moved = tmp_path / spec.name
    if recorded:
        spec.rename(moved)
    try:
        info = export_patch("glyphs", tmp_path / "p", storage=url)
    finally:
        if recorded:
            moved.rename(spec)
    assert info["task"]["category_ids"] == list(study.task.category_ids)


def test_a_study_whose_file_moved_exports_with_its_stored_spec(study, tmp_path, monkeypatch):
    scored = []

    def test_map(patch, meta, base, spec, progress):
        scored.append(spec)
        return 0.5

    monkeypatch.setattr("spotpatch.studies._export._test_map", test_map)
    spec = study.spec.path
    moved = tmp_path / spec.name
    spec.rename(moved)
    try:
        info = export_patch("glyphs", tmp_path / "p", storage=study.url)
    finally:
        moved.rename(spec)
    assert info["metrics"]["test_map"] == 0.5  # scored on the test split the spec names
    assert scored[0].data.test == study.spec.data.test and scored[0].path == spec


def _bad_patch(study, tmp_path):
    export_patch("glyphs", tmp_path / "p", storage=study.url)
    meta = json.loads((tmp_path / "p" / "patch.json").read_text())
    meta["base"]["sha256"] = "0" * 64
    (tmp_path / "p" / "patch.json").write_text(json.dumps(meta))
    image = sorted((study.spec.data.test_images).iterdir())[0]
    return ["predict", str(tmp_path / "p"), str(image)]


@pytest.mark.parametrize(
    "case, message",
    [
        ("no storage", "no study storage at"),
        ("unknown", "no study named 'nope'"),
        ("empty", "has no completed trial"),
        ("unsatisfiable", "no trial reaches mAP 1"),
        ("too small", "no trial has at most 1 bytes"),
        ("bad rule", "unknown selection rule 'best'"),
        ("another base", "patch was made for another spotpatch-tiny base"),
    ],
)
def test_bad_input_exits_2_with_one_line(study, tmp_path, capsys, no_test_map, case, message):
    out = tmp_path / "out"
    export = ["export", "glyphs", "--out", str(out), "--storage", study.url]
    argv = {
        "no storage": [*export[:4], "--storage", f"sqlite:///{tmp_path}/none.db"],
        "unknown": ["export", "nope", "--out", str(out), "--storage", study.url],
        "empty": ["export", "empty", "--out", str(out), "--storage", study.url],
        "unsatisfiable": [*export, "--select", "min-map=1.0"],
        "too small": [*export, "--select", "max-bytes=1"],
        "bad rule": [*export, "--select", "best"],
    }.get(case) or _bad_patch(study, tmp_path)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spotpatch: error: ") and message in err
    assert not out.exists() and not (tmp_path / "none.db").exists()


def _breakable_copy(study, tmp_path):
    """A copy of the study's storage and artifact folder that a test may break: its URL, the
    default rule's trial and that trial's artifact file."""
    shutil.copy(study.folder / "s.db", tmp_path / "s.db")
    shutil.copytree(study.folder / "s-artifacts", tmp_path / "art")
    url = f"sqlite:///{tmp_path}/s.db"
    made = load_study("glyphs", open_storage(url))
    made.set_user_attr(
        "spotpatch", {**made.user_attrs["spotpatch"], "artifacts": str(tmp_path / "art")}
    )
    record = selected_trial(made)
    return url, record, tmp_path / "art" / record.artifact_id


def _break(file, how: str) -> None:
    if how == "missing":
        file.unlink()
    else:  # the same size, one byte of tensor data changed
        data = bytearray(file.read_bytes())
        data[-1] ^= 0xFF
        file.write_bytes(bytes(data))


def _one_error_line(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spotpatch: error: "), err
    return err


@pytest.mark.parametrize("how", ["changed", "missing"])
@pytest.mark.parametrize("command", ["export", "dashboard"])
def test_a_changed_or_missing_artifact_is_refused(
    study, tmp_path, capsys, no_test_map, how, command
):
    url, record, file = _breakable_copy(study, tmp_path)
    assert record.artifact_sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    _break(file, how)
    out = tmp_path / ("p" if command == "export" else "d.html")
    name = ["glyphs"] if command == "export" else []
    err = _one_error_line(capsys, [command, *name, "--out", str(out), "--storage", url])
    assert f"trial {record.number} of study 'glyphs'" in err
    if how == "changed":
        assert f"changed after the trial stored them: {file} (sha256 " in err
    else:
        assert f"(artifact {record.artifact_id}) not found in {file.parent}" in err
    assert not out.exists()


def test_a_trial_stored_before_the_sha256_was_recorded_reads_unchecked(
    study, tmp_path, no_test_map
):
    url, record, file = _breakable_copy(study, tmp_path)
    with sqlite3.connect(tmp_path / "s.db") as db:  # as a study of an earlier spotpatch stored it
        db.execute("DELETE FROM trial_user_attributes WHERE key = 'artifact_sha256'")
    made = load_study("glyphs", open_storage(url))
    assert all(r.artifact_sha256 is None for r in trial_records(made))
    _break(file, "changed")
    info = export_patch("glyphs", tmp_path / "p", storage=url)
    assert info["study"]["trial"] == record.number
    exported = load_patch(tmp_path / "p").tensors
    assert all(torch.equal(exported[n], t) for n, t in load_file(file).items())


@pytest.mark.parametrize("how", ["changed", "missing"])
def test_predict_refuses_a_changed_or_missing_exported_file(
    study, tmp_path, capsys, no_test_map, how
):
    info = export_patch("glyphs", tmp_path / "p", storage=study.url)
    file = tmp_path / "p" / "patch.safetensors"
    assert info["tensors_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    image = sorted(study.spec.data.test_images.iterdir())[0]
    argv = ["predict", str(tmp_path / "p"), str(image), "--out", str(tmp_path / "r.json")]
    _break(file, how)
    err = _one_error_line(capsys, [*argv, "--device", "cpu"])
    whose = f"(trial {info['study']['trial']} of study 'glyphs')"
    if how == "changed":
        assert f"{file} changed after it was written {whose}: sha256 " in err
    else:
        assert f"not a patch folder: {file} not found {whose}" in err
    assert not (tmp_path / "r.json").exists()


def test_predict_writes_coco_results_of_base_plus_patch(study, tmp_path, no_test_map):
    export_patch("glyphs", tmp_path / "p", storage=study.url)
    images = sorted(study.spec.data.test_images.iterdir())[:6]
    results_file = tmp_path / "r" / "results.json"
    argv = ["predict", str(tmp_path / "p"), *map(str, images), "--out", str(results_file)]
    argv += ["--device", "cpu"]
    assert main([*argv, "--score-threshold", "0.0"]) == 0
    results = json.loads(results_file.read_text())
    assert results and all(set(r) == {"image_id", "category_id", "bbox", "score"} for r in results)
    assert {r["category_id"] for r in results} <= set(study.task.category_ids)
    # The bench's files are named by number, so image_id is the stem; the same detections as
    # the scoring code gives on those images of the test split, batched alike (a batch of
    # another size may round differently).
    split = study.task.test
    picked = [split.file_names.index(p.name) for p in images]
    sub = replace(
        split,
        **{
            key: tuple(getattr(split, key)[i] for i in picked)
            for key in ("image_ids", "file_names", "sizes", "images", "boxes", "labels")
        },
    )
    stem_of = {split.image_ids[i]: int(p.stem) for i, p in zip(picked, images, strict=True)}
    model = load_base("spotpatch-tiny", device="cpu").apply_stored(load_patch(tmp_path / "p"))
    expected = [
        {**r, "image_id": stem_of[r["image_id"]]}
        for r in predict(model.model, sub, study.task.category_ids)
    ]
    assert results == expected
    # A COCO ground truth takes them as detections, once the ids are the split's.
    coco_id = {stem: iid for iid, stem in stem_of.items()}
    renamed = [{**r, "image_id": coco_id[r["image_id"]]} for r in results]
    assert len(split.coco.loadRes(renamed).getAnnIds()) == len(results)
    high = predict_images(tmp_path / "p", images, score_threshold=0.5, device="cpu")
    assert high == [r for r in results if r["score"] >= 0.5]


def test_onnx_matches_pytorch(study, tmp_path, capsys, no_test_map):
    import onnxruntime as ort  # installed with the project's onnx extra, as make test does

    onnx_file = tmp_path / "p" / "model.onnx"  # inside the export folder: it moves with it
    _export(study, tmp_path / "p", "--onnx", str(onnx_file), "--select", "within=0")
    assert "lora4" in _json_out(capsys)["sites"].values()  # LoRA layers export too
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    fresh = load_base("spotpatch-tiny", device="cpu")
    model = fresh.apply_stored(load_patch(tmp_path / "p")).model
    raw = RawSSD(model, (128, 128))
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    got = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        want = raw(images)
    assert [o.name for o in session.get_outputs()] == ["bbox_regression", "cls_logits", "anchors"]
    for g, w in zip(got, want, strict=True):
        assert g.shape == tuple(w.shape)
        torch.testing.assert_close(torch.from_numpy(g), w, atol=1e-4, rtol=1e-4)
    assert want[1].shape[-1] == len(study.task.classes) + 1
    # The raw outputs are what torchvision's own postprocessing decodes into detections.
    with torch.no_grad():
        head = {"bbox_regression": want[0], "cls_logits": want[1]}
        decoded = model.postprocess_detections(head, list(want[2]), [(128, 128)] * 2)
        direct = model(list(images))
    for d, e in zip(decoded, direct, strict=True):
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(d[key], e[key], atol=1e-4, rtol=1e-4)
    # Exporting again replaces the earlier export, ONNX file included.
    _export(study, tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "patch.json",
        "patch.safetensors",
    ]


@pytest.fixture(scope="module")
def int8_study(head_side_study, head_gates, tmp_path_factory):
    """A study storing int8 patches: one trial, with LoRA factors and full convs in its patch."""
    folder = tmp_path_factory.mktemp("export-int8")
    url, spec, evaluator, made = head_side_study(
        folder, [head_gates.lora | head_gates.full], dtype="int8"
    )
    assert evaluator.space.dtype == "int8"
    return SimpleNamespace(
        url=url, spec=spec, trial=made.trials[0], task=evaluator.task, evaluator=evaluator
    )


def test_an_int8_study_exports_plans_and_predicts(int8_study, tmp_path, capsys, no_test_map):
    """The exported int8 patch is the trial's, byte for byte and mAP for mAP: weights int8 with
    float16 scales beside them, 1-D tensors float16; it applies to a fresh base, predicts,
    exports to ONNX, and the fleet plan counts its bytes."""
    trial, out = int8_study.trial, tmp_path / "p"
    argv = ["export", "glyphs", "--out", str(out), "--storage", int8_study.url, "--json"]
    argv += ["--select", "knee"]  # no full fine-tune in this study: no answer
    assert main([*argv, "--onnx", str(out / "model.onnx")]) == 0
    info = _json_out(capsys)
    assert info["dtype"] == "int8" and info["study"]["trial"] == trial.number
    assert "lora4" in info["sites"].values() and "full" in info["sites"].values()
    size = trial.user_attrs["patch_bytes"]
    assert info["metrics"]["patch_bytes"] == size == payload_bytes(out / "patch.safetensors")
    with safe_open(str(out / "patch.safetensors"), framework="pt") as f:
        stored = {name: f.get_tensor(name) for name in f.keys()}
    scales = {n for n in stored if n.endswith(SCALE_SUFFIX)}
    weights = {n for n, t in stored.items() if t.dim() >= 2}
    assert scales == {n + SCALE_SUFFIX for n in weights} and any("lora_B" in n for n in weights)
    assert all(stored[n].dtype == torch.int8 for n in weights)
    assert all(t.dtype == torch.float16 for n, t in stored.items() if n not in weights)
    study = load_study("glyphs", open_storage(int8_study.url))
    read = trial_patch(study, trial_record(trial), int8_study.url).tensors
    assert read.keys() == stored.keys() and all(torch.equal(read[n], stored[n]) for n in read)
    fresh = load_base("spotpatch-tiny", device="cpu")
    model = fresh.apply_stored(load_patch(out)).model
    task = int8_study.task
    assert coco_map(model, task.val, task.category_ids) == (
        trial.user_attrs["map"],
        trial.user_attrs["map50"],
    )
    images = sorted(int8_study.spec.data.val_images.iterdir())[:2]
    results = predict_images(out, images, score_threshold=0.0, device="cpu")
    assert results and {r["image_id"] for r in results} <= {int(p.stem) for p in images}
    assert (out / "model.onnx").stat().st_size > 0
    plan = fleet_plan(open_storage(int8_study.url), size)
    assert plan.total_bytes == size and plan.choices["glyphs"].number == trial.number


def test_a_stored_patch_stored_again_at_each_dtype_scores_as_stored(int8_study):
    """An int8 trial's patch, read back at float32 and stored at every dtype, applies at each:
    its bytes are that dtype's count, and int8 again gives the trial's mAP."""
    evaluator = int8_study.evaluator
    study = load_study("glyphs", open_storage(int8_study.url))
    patch = trial_patch(study, trial_record(int8_study.trial), int8_study.url)
    applied = evaluator.base.apply_stored(patch, evaluator.space)
    sizes = {}
    for dtype in DTYPES:
        stored = replace(patch, tensors=applied.state(dtype), dtype=dtype)
        sizes[dtype] = stored.payload_bytes
        assert sizes[dtype] == evaluator.space.with_options(dtype=dtype).patch_bytes(patch.config)
        value, _ = evaluator.score(stored)
        if dtype == "int8":
            assert value == int8_study.trial.user_attrs["map"]
    assert sizes["int8"] < sizes["float16"] < sizes["float32"] == 2 * sizes["float16"]
