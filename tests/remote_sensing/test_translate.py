"""`vlzoo-remote-sensing translate`: a Karpathy JSON's captions machine-translated with a tiny random MarianMT
model saved locally (its SentencePiece vocabularies trained here), checked against the model's own
`generate`, and read back by the domain's multilingual caption reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.remote_sensing.cli import main as cli_main
from vlzoo.remote_sensing.data import RSKarpathySplits, caption_languages
from vlzoo.remote_sensing.translate import Seq2SeqTranslator, translate_karpathy

CAPTIONS = [
    ["many planes are parked near the terminal", "an airport with two runways"],
    ["a river runs through green fields", "a lake is surrounded by dense forest", "green fields"],
    ["several buildings stand beside a road", "an airport with two runways"],  # a repeated caption
]
CORPUS = [c for image in CAPTIONS for c in image] + [
    "muitos aviões estão estacionados perto do terminal",
    "un río atraviesa campos verdes",
    "vários edifícios ao lado de uma estrada",
]
BEAMS, MAX_NEW = 2, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def _train_sentencepiece(root: Path) -> Path:
    import sentencepiece as spm

    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 4), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(root / "spm"),
        vocab_size=70,
        hard_vocab_limit=False,
        character_coverage=1.0,
        unk_id=0,
        eos_id=1,
        bos_id=-1,
        pad_id=-1,  # Marian's <pad> comes last in vocab.json, after the pieces
        minloglevel=2,  # quiet: no training log on stderr
    )
    return root / "spm.model"


def _save_tiny_marian(spm_model: Path, out: Path, seed: int) -> Path:
    """A random 1-layer MarianMT and its tokenizer (source.spm, target.spm, vocab.json), saved by transformers."""
    import sentencepiece as spm
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    out.mkdir(parents=True)
    for name in ("source.spm", "target.spm"):
        (out / name).write_bytes(spm_model.read_bytes())
    processor = spm.SentencePieceProcessor(model_file=str(spm_model))
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    vocab["<pad>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = MarianTokenizer(str(out / "source.spm"), str(out / "target.spm"), str(out / "vocab.json"))
    config = MarianConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = MarianMTModel(config)
    with torch.no_grad():  # at the init's std 0.02 every source decodes alike; wider weights tell them apart
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.2)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def marian_template(tmp_path_factory) -> str:
    """`<dir>/tiny-marian-en-{lang}`: a different random model per target language (pt, es)."""
    root = tmp_path_factory.mktemp("marian")
    spm_model = _train_sentencepiece(root)
    for seed, lang in enumerate(("pt", "es")):
        _save_tiny_marian(spm_model, root / f"tiny-marian-en-{lang}", seed=seed)
    return str(root / "tiny-marian-en-{lang}")


@pytest.fixture
def karpathy_json(tmp_path) -> Path:
    images = [
        {
            "filename": f"scene_{i}.tif",
            "split": "train" if i else "test",
            "sentences": [{"raw": c, "tokens": c.split()} for c in captions],
        }
        for i, captions in enumerate(CAPTIONS)
    ]
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"images": images}), encoding="utf-8")
    return path


def _direct_translations(model_dir: str, texts: list[str]) -> dict[str, str]:
    """What the model gives for each caption on its own, called the plain transformers way."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    out = {}
    with torch.no_grad():
        for text in texts:
            ids = model.generate(
                **tokenizer([text], return_tensors="pt"), num_beams=BEAMS, max_new_tokens=MAX_NEW
            )
            out[text] = tokenizer.batch_decode(ids, skip_special_tokens=True)[0].strip()
    return out


def test_translate_command_appends_one_translation_per_caption_and_language(
    tmp_path, karpathy_json, marian_template
):
    out_path = tmp_path / "multi.json"
    argv = [
        "translate",
        str(karpathy_json),
        str(out_path),
        "--model",
        marian_template,
        "--languages",
        "pt,es",
    ]
    argv += ["--beams", str(BEAMS), "--max-new-tokens", str(MAX_NEW), "--batch-size", "2", "--device", "cpu"]
    assert cli_main(argv) == 0

    data = json.loads(out_path.read_text(encoding="utf-8"))
    original = json.loads(karpathy_json.read_text(encoding="utf-8"))
    assert data["lang"] == "en" and len(data["images"]) == len(CAPTIONS)
    sources = sorted(set(CORPUS[:7]))
    expected = {
        lang: _direct_translations(marian_template.format(lang=lang), sources) for lang in ("pt", "es")
    }
    for entry, before, captions in zip(data["images"], original["images"], CAPTIONS):
        assert entry["filename"] == before["filename"] and entry["split"] == before["split"]
        n = len(captions)
        assert entry["sentences"][:n] == before["sentences"]  # the English captions stay first, untouched
        added = entry["sentences"][n:]
        assert [s["lang"] for s in added] == ["pt"] * n + ["es"] * n
        for lang, block in (("pt", added[:n]), ("es", added[n:])):
            assert [s["raw"] for s in block] == [expected[lang][c] for c in captions]
    # The two languages use their own models, and different captions get different translations.
    assert expected["pt"] != expected["es"]
    assert len(set(expected["pt"].values())) > 1

    # The domain's reader takes the file: one caption list per language.
    assert caption_languages(out_path) == {"en": 7, "es": 7, "pt": 7}
    portuguese = RSKarpathySplits(out_path, split="train", languages="pt")
    assert [r.captions for r in portuguese.records] == [
        [expected["pt"][c] for c in captions] for captions in CAPTIONS[1:]
    ]


def test_each_distinct_caption_is_translated_once_per_language():
    calls = []

    def fake(texts, lang):
        calls.append((lang, list(texts)))
        return [f"[{lang}] {t}" for t in texts]

    data = {
        "lang": "en",
        "images": [{"filename": f"{i}.png", "sentences": c} for i, c in enumerate(CAPTIONS)],
    }
    out = translate_karpathy(data, fake, ["fr", "de"])
    assert [lang for lang, _ in calls] == ["fr", "de"]
    assert all(len(texts) == len(set(texts)) == 6 for _, texts in calls)  # 7 captions, one repeated
    assert out["images"][2]["sentences"][-1] == {"raw": "[de] an airport with two runways", "lang": "de"}
    assert data["images"][0]["sentences"] == CAPTIONS[0]  # the input is not modified


def test_bad_inputs_are_refused_with_the_file_named(tmp_path, karpathy_json, marian_template):
    echo = lambda texts, lang: list(texts)  # noqa: E731
    data = json.loads(karpathy_json.read_text())
    with pytest.raises(ConfigError, match="differ from the source"):
        translate_karpathy(data, echo, ["en", "pt"])
    data["images"][0]["sentences"].append({"raw": "um avião", "lang": "pt"})
    with pytest.raises(DataError, match=r"already holds captions in \['pt'\]"):
        translate_karpathy(data, echo, ["pt"], where="rsicd.json")
    not_karpathy = tmp_path / "list.json"
    not_karpathy.write_text("[1, 2]")
    assert cli_main(
        ["translate", str(not_karpathy), str(tmp_path / "o.json"), "--model", "x", "--languages", "pt"]
    )
    with pytest.raises(DataError, match=r"list\.json"):
        translate_karpathy(json.loads(not_karpathy.read_text()), echo, ["pt"], where=str(not_karpathy))
    with pytest.raises(ConfigError, match="no-such-model-fr"):
        Seq2SeqTranslator(str(tmp_path / "no-such-model-{lang}"))(["a road"], "fr")
    missing = tmp_path / "nope.json"
    rc = cli_main(
        ["translate", str(missing), str(tmp_path / "o.json"), "--model", marian_template, "--languages", "pt"]
    )
    assert rc == 2 and not (tmp_path / "o.json").exists()
