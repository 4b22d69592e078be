"""Medical evaluation: metric formulas, the report plots (on synthetic inputs with the models' signatures)
and the `vlzoo-medical eval` command on a small med-toyworld."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlzoo.core.errors import DataError
from vlzoo.core.eval import applicable_eval_tasks, eval_tasks
from vlzoo.medical.cli import MEDICAL_EVAL, main
from vlzoo.medical.evaluation import (
    MEDICAL_TEMPLATES,
    auroc,
    itm_metrics,
    plot_concept_maps,
    plot_slice_attention,
)


def test_auroc_is_the_probability_a_positive_outscores_a_negative():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (40,), generator=g).float()  # many ties
    labels = torch.rand(40, generator=g) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).float() + 0.5 * (pos[:, None] == neg[None, :]).float()
    assert auroc(scores, labels) == pytest.approx(100.0 * pairs.mean().item())
    assert auroc(torch.tensor([0.1, 0.9]), torch.tensor([False, True])) == 100.0
    assert np.isnan(auroc(scores, torch.ones(40, dtype=torch.bool)))


def test_itm_metrics_count_matches_at_one_half():
    positive = torch.tensor([0.9, 0.6, 0.4, 0.51])
    negative = torch.tensor([0.1, 0.7, 0.5])
    metrics = itm_metrics(positive, negative)
    assert metrics["positive_accuracy"] == 75.0
    assert metrics["negative_accuracy"] == pytest.approx(200 / 3)
    assert metrics["itm_accuracy"] == pytest.approx(100 * 5 / 7)
    assert (metrics["positives"], metrics["negatives"]) == (4, 3)


def test_slice_attention_plot_has_a_row_per_volume(tmp_path: Path):
    # RadCLIP-3D's encode_volume(..., return_attention=True) gives attention [B, S], 0 on padded slices
    volumes = torch.randn(3, 10, 3, 16, 16)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 7:] = False
    attention = torch.softmax(torch.randn(3, 10), -1) * mask
    one = plot_slice_attention(volumes[:1], attention[:1], tmp_path / "one.png", slice_mask=mask[:1])
    three = plot_slice_attention(
        volumes, attention, tmp_path / "three.png", slice_mask=mask, titles=["a", "b", "c"]
    )
    h1, h3 = Image.open(one).size[1], Image.open(three).size[1]
    assert h3 > 2 * h1  # one row of slices per volume
    with pytest.raises(DataError, match="attention"):
        plot_slice_attention(volumes, attention[:, :5], tmp_path / "bad.png")


def test_concept_map_plot_has_a_column_per_concept(tmp_path: Path):
    # ConceptCLIP's concept_similarity_map(images, concepts) gives [B, C, h, w] on the patch grid
    images = torch.randn(2, 3, 32, 32)
    names = ["solid nodule", "left lung", "liver"]
    maps = torch.rand(2, 3, 4, 4) * 2 - 1
    concepts = [[{"name": "left lung"}], [{"name": "liver"}, {"name": "solid nodule"}]]
    two = plot_concept_maps(images, maps[:, :2], names[:2], tmp_path / "two.png", concepts=concepts)
    three = plot_concept_maps(images, maps, names, tmp_path / "three.png", concepts=concepts)
    assert Image.open(three).size[0] > Image.open(two).size[0]
    with pytest.raises(DataError, match="similarity"):
        plot_concept_maps(images, maps, names[:2], tmp_path / "bad.png")


def _applicable(model: str) -> list[str]:
    return [task.name for task in applicable_eval_tasks(model, eval_tasks(MEDICAL_EVAL).values())]


def test_tasks_follow_what_the_model_can_do():
    assert list(eval_tasks(MEDICAL_EVAL)) == ["retrieval", "retrieval-3d", "zeroshot", "itm", "concepts"]
    assert _applicable("radclip-3d-tiny") == ["retrieval-3d"]
    assert _applicable("radclip-tiny") == ["retrieval", "zeroshot"]
    assert _applicable("ptunifier-tiny") == ["retrieval", "zeroshot", "itm"]
    assert _applicable("conceptclip-tiny") == ["retrieval", "zeroshot", "concepts"]
    assert all("{}" in t for t in MEDICAL_TEMPLATES)


def test_eval_help_lists_the_tasks_with_the_common_flags(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "concepts", "--help"])
    usage = capsys.readouterr().out
    for flag in ("--model", "--data-dir", "--split", "--batch-size", "--workers", "--out", "--n-maps"):
        assert flag in usage


def test_zeroshot_is_the_core_task_with_radiology_prompts_and_med_toyworld(med_toyworld, monkeypatch):
    import vlzoo.medical.evaluation as evaluation

    calls = []
    monkeypatch.setattr(evaluation, "evaluate_zeroshot", lambda model, **options: calls.append(options) or {})
    assert main(["eval", "zeroshot", "--model", "radclip-tiny", "--data-dir", str(med_toyworld.root)]) == 0
    (options,) = calls
    assert options["templates"] == list(MEDICAL_TEMPLATES) and options["batch_size"] == 64
    assert options["data"] == str(med_toyworld.root / "classes")


def _run(*args: str) -> int:
    # the 8 cases of the val split keep these runs short
    return main(["eval", *args, "--split", "val", "--workers", "0", "--batch-size", "8"])


def test_eval_command_writes_the_3d_report(med_toyworld, tmp_path: Path):
    out = tmp_path / "eval3d"
    assert (
        _run("all", "--model", "radclip-3d-tiny", "--data-dir", str(med_toyworld.root), "--out", str(out))
        == 0
    )
    summary = json.loads((out / "metrics.json").read_text())
    assert list(summary) == ["retrieval-3d"]  # a volume model: volume-report retrieval only
    metrics = json.loads((out / "retrieval-3d" / "metrics.json").read_text())
    assert metrics == summary["retrieval-3d"]
    recalls = [metrics[f"{d}_R@{k}"] for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)]
    assert metrics["mean_recall"] == pytest.approx(sum(recalls) / 6)
    assert metrics["skipped"] == 0 and all(0 <= r <= 100 for r in recalls)
    assert metrics["image_to_text_R@1"] <= metrics["image_to_text_R@5"] <= metrics["image_to_text_R@10"]
    for plot in ("slice_attention.png", "recall_curves.png", "similarity_heatmap.png"):
        assert Image.open(out / "retrieval-3d" / plot).size[0] > 100


def test_eval_itm_for_ptunifier(med_toyworld, tmp_path: Path):
    out = tmp_path / "itm"
    assert (
        _run("itm", "--model", "ptunifier-tiny", "--data-dir", str(med_toyworld.root), "--out", str(out)) == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    # every caption (8 slices × 3 reports) is a positive pair; negatives drop same-caption pairs
    assert metrics["positives"] == 24 and 0 < metrics["negatives"] <= 24
    n = metrics["positives"] + metrics["negatives"]
    hits = (
        metrics["positive_accuracy"] * metrics["positives"]
        + metrics["negative_accuracy"] * metrics["negatives"]
    )
    assert metrics["itm_accuracy"] == pytest.approx(hits / n)
    assert (out / "itm_scores.png").is_file()


def test_eval_concepts_scores_every_concept_of_the_split(med_toyworld, tmp_path: Path):
    out = tmp_path / "concepts"
    code = _run(
        "concepts", "--model", "conceptclip-tiny", "--data-dir", str(med_toyworld.root), "--out", str(out)
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    lines = [json.loads(line) for line in med_toyworld.concepts.read_text().splitlines()]
    cuis = {m["umls_cui"] for line in lines if line["split"] == "val" for m in line["umls_meta_info"]}
    assert metrics["concepts"] == len(cuis) and metrics["images"] == 8
    finite = [v for v in metrics["auroc"].values() if v is not None]
    assert metrics["mean_auroc"] == pytest.approx(sum(finite) / len(finite))
    assert (out / "concept_maps.png").is_file()


def test_itm_needs_a_matching_head(med_toyworld, capsys):
    assert _run("itm", "--model", "radclip-tiny", "--data-dir", str(med_toyworld.root)) == 2
    assert "eval itm: model 'radclip-tiny' (RadCLIP) cannot do this: it has no itm_scores()" in (
        capsys.readouterr().err
    )


def test_eval_3d_names_the_unreadable_volumes_and_fails_above_the_threshold(tmp_path: Path, capsys):
    from vlzoo.medical.data import write_med_toyworld

    files = write_med_toyworld(tmp_path / "med", n_train=1, n_val=20, n_test=1, seed=3)
    broken = [files.root / "volumes" / "val" / f"{i:06d}.nii.gz" for i in (3, 9, 15)]
    for path in broken:
        path.write_bytes(b"not a volume")
    argv = ["retrieval-3d", "--model", "radclip-3d-tiny", "--data-dir", str(files.root)]
    assert _run(*argv) == 2  # 3 of 20 is more than the default 1%
    err = capsys.readouterr().err
    assert "3 of 20 samples (15.0%) could not be read" in err
    assert all(f"{path}: DataError" in err and "not a readable NIfTI file" in err for path in broken)

    out = tmp_path / "report"
    assert _run(*argv, "--max-skip-rate", "0.2", "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["images"], metrics["skipped"], metrics["samples_seen"]) == (17, 3, 20)
    assert [e["path"] for e in metrics["skipped_examples"]] == [str(p) for p in broken]
    assert all("not a readable NIfTI file" in e["reason"] for e in metrics["skipped_examples"])
    printed = capsys.readouterr().out
    assert "3 of 20 samples skipped (15.0%), the metrics are over the other 17" in printed
    assert all(str(path) in printed for path in broken)


def test_itm_says_how_many_images_it_could_not_pair(med_toyworld, tmp_path: Path):
    out = tmp_path / "itm7"
    argv = [
        "eval",
        "itm",
        "--model",
        "ptunifier-tiny",
        "--data-dir",
        str(med_toyworld.root),
        "--split",
        "val",
    ]
    assert main([*argv, "--workers", "0", "--batch-size", "7", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # 8 images in batches of 7: the eighth has no other image to be a negative with, and is not scored
    assert metrics["unpaired_images"] == 1 and metrics["positives"] == 7 * 3
    assert (metrics["skipped"], metrics["samples_seen"]) == (0, 8)
