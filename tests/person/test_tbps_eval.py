"""`vlzoo-person eval tbps`: the TBPS protocol on a person-toyworld split (queries = captions, gallery = images,
hits by identity), its paper-style table and report, skipped files counted, one AP protocol per table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from vlzoo.core import create_model, get_tokenizer, get_transforms
from vlzoo.core.errors import ConfigError
from vlzoo.core.eval import identity_retrieval
from vlzoo.person.cli import main
from vlzoo.person.data import read_tbps_entries
from vlzoo.person.evaluation import evaluate_tbps, print_tbps_table


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("plip-tiny").eval()


def test_metrics_are_identity_retrieval_of_captions_against_images(
    model, person_toyworld: Path, tmp_path: Path
):
    """The runner's numbers equal identity_retrieval on features computed here from the annotation itself:
    every caption of the test split against every test image, hits by the entry's id."""
    metrics = evaluate_tbps(model, data=str(person_toyworld), out=tmp_path / "report")
    entries = [e for e in read_tbps_entries(person_toyworld) if e["split"] == "test"]
    transform, tokenize = get_transforms(model, train=False), get_tokenizer(model)
    with torch.no_grad():
        images = torch.stack(
            [transform(Image.open(person_toyworld.parent / "imgs" / e["file_path"])) for e in entries]
        )
        gallery = model.encode_image(images)
        queries = model.encode_text(tokenize([c for e in entries for c in e["captions"]]))
    want = identity_retrieval(
        queries, gallery, [e["id"] for e in entries for _ in e["captions"]], [e["id"] for e in entries]
    )
    for key in ("R@1", "R@5", "R@10", "mAP", "mINP"):
        assert metrics[key] == pytest.approx(want[key], abs=1e-3), key
    assert (metrics["queries"], metrics["gallery"], metrics["identities"]) == (8 * 3 * 5, 8 * 3, 8)
    assert metrics["chance_R@1"] == pytest.approx(100 * 3 / 24)
    assert metrics["ap_protocol"] == "tbps" and metrics["skipped"] == 0

    report = tmp_path / "report"
    saved = json.loads((report / "metrics.json").read_text())
    assert saved["R@1"] == pytest.approx(metrics["R@1"]) and saved["split"] == "test"
    table = (report / "tbps_table.md").read_text()
    assert "| model | Rank-1 | Rank-5 | Rank-10 | mAP | mINP |" in table and "AP: tbps" in table
    figure = Image.open(report / "tbps_queries.png")
    assert figure.width > figure.height  # 5 query rows of a caption and 10 images


def test_market1501_protocol_and_skips(model, person_toyworld: Path, tmp_path: Path):
    """A copy with one test image missing: counted as skipped, listed in the report, no figure (it indexes a
    complete gallery); the Market-1501 AP is what the table says it is."""
    root = tmp_path / "copy"
    shutil.copytree(person_toyworld.parent, root)
    missing = next(e for e in read_tbps_entries(root / "reid_raw.json") if e["split"] == "test")["file_path"]
    (root / "imgs" / missing).unlink()
    metrics = evaluate_tbps(
        model, data=str(root / "reid_raw.json"), out=tmp_path / "r", ap="market1501", max_skip_rate=0.1
    )
    assert metrics["skipped"] == 1 and metrics["gallery"] == 23 and metrics["ap_protocol"] == "market1501"
    assert "AP: market1501" in (tmp_path / "r" / "tbps_table.md").read_text()
    assert missing.split("/")[-1] in (tmp_path / "r" / "tbps_table.md").read_text()
    assert not (tmp_path / "r" / "tbps_queries.png").exists()


def test_one_protocol_per_table():
    rows = {"a": {"R@1": 1, "R@5": 2, "R@10": 3, "mAP": 4, "mINP": 5, "ap_protocol": "tbps"}}
    rows["b"] = {**rows["a"], "ap_protocol": "market1501"}
    with pytest.raises(ConfigError, match="one AP protocol"):
        print_tbps_table(rows)


def test_through_the_console_script(person_toyworld: Path, tmp_path: Path, capsys):
    code = main(
        [
            "eval",
            "tbps",
            "--model",
            "plip-tiny",
            "--data",
            str(person_toyworld),
            "--out",
            str(tmp_path),
            "--queries",
            "2",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Rank-1" in printed and "mINP" in printed and "AP: tbps" in printed
    assert (tmp_path / "tbps_queries.png").is_file()


def test_family_rank1_counts_a_top_image_of_the_querys_family_as_a_hit():
    """Gallery: pids 1, 2 (family a) and 3 (family b). Query 0 (pid 1) ranks pid 2 first: a family hit, not
    an identity hit; query 1 (pid 3) ranks pid 1 first: neither; query 2 (pid 2) ranks its own image first."""
    from vlzoo.person.demo import family_rank1
    from vlzoo.person.evaluation import EncodedTBPS

    images = torch.eye(3)
    texts = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.0, 0.2], [0.0, 1.0, 0.0]])
    encoded = EncodedTBPS(images, texts, torch.tensor([1, 2, 3]), torch.tensor([0, 2, 1]), ["q"] * 3, 0)
    assert family_rank1(encoded, {1: "a", 2: "a", 3: "b"}) == pytest.approx(200 / 3)
    assert family_rank1(encoded, {1: "a", 2: "b", 3: "c"}) == pytest.approx(100 / 3)  # = identity Rank-1


def test_within_family_rank1_ranks_only_the_querys_family():
    """The gallery and queries above. Query 0 (pid 1, family a) still ranks pid 2 first: a miss; query 1
    (pid 3, family b) ranks pid 1 first overall, but only its own image is in family b: a hit; query 2 (pid 2)
    ranks its own image first: a hit. With every pid its own family each query has one candidate, its own."""
    from vlzoo.person.demo import within_family_rank1
    from vlzoo.person.evaluation import EncodedTBPS

    images = torch.eye(3)
    texts = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.0, 0.2], [0.0, 1.0, 0.0]])
    encoded = EncodedTBPS(images, texts, torch.tensor([1, 2, 3]), torch.tensor([0, 2, 1]), ["q"] * 3, 0)
    assert within_family_rank1(encoded, {1: "a", 2: "a", 3: "b"}) == pytest.approx(200 / 3)
    assert within_family_rank1(encoded, {1: "a", 2: "b", 3: "c"}) == pytest.approx(100.0)
