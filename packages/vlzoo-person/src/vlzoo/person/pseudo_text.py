"""UniPT's divide-conquer-combine pseudo-text generator: captions for unlabelled pedestrians from a CLIP.

- **divide**: the description is split into attribute groups (gender, hair, upper garment colour, ...), each
  with its candidate phrases, read from an attributes YAML;
- **conquer**: any vlzoo CLIP (a model with `encode_image` and `encode_text`) scores every group's
  candidates, each put into the group's prompt, against each image; the best candidate of a group is kept
  when its softmax probability within the group reaches the confidence `threshold`. A group may give a
  list of prompts, and a candidate a list of phrases: a candidate's text embedding is then the normalized
  mean of the embeddings of all its phrases in all the group's prompts (CLIP's prompt ensembling, Radford
  et al. 2021, §3.1.4), and its first phrase is the one written into the sentence;
- **combine**: a sentence template of clauses, each naming groups as `{group}`, is filled; a clause with a
  group that was not kept is left out.
The official release has neither the generator's code nor its prompt lists (UniPT's README: "to be
updated"); the YAML carries them, so the choice of attributes and prompts stays the user's.

attributes.yaml:

    prompt: "a photo of a person {}."        # default prompt of every group; {} = the candidate phrase
    threshold: 0.3                            # default confidence a group's best candidate needs
    scale: 100                                # logit scale of the within-group softmax (CLIP's 1/0.01)
    groups:
      gender: {candidates: {man: man, woman: woman}, prompt: "a photo of a {}."}
      upper_colour:                           # value: phrase (a list means value = phrase)
        candidates: [red, blue, green]
        prompt: ["a person in a {} shirt.", "a person in a {} jacket."]   # a list: an ensemble
      bag:                                    # value: phrases (an ensemble; the first is written)
        candidates: {none: [without a bag, has no bag], backpack: [carrying a backpack, carrying a red backpack]}
    template: ["a {gender}", "in a {upper_colour} {upper_type}", "carrying a {bag}"]

`vlzoo-person pseudo-text IMAGES --model NAME --attributes attributes.yaml --out captions.jsonl` writes one
JSON line per image, LUPerson-T style: `{"file_path", "captions": [sentence], "attributes": {group:
value}, "confidence": {group: probability}}` (groups below the threshold are absent), batched over images.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlzoo.core.errors import ConfigError

__all__ = [
    "AttributeGroup",
    "PseudoTextGenerator",
    "PseudoTextSpec",
    "add_arguments",
    "load_attribute_spec",
    "person_toyworld_spec",
    "run",
]

_SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class AttributeGroup:
    """One attribute group: candidate value → the phrase written for it, its prompts (each with one `{}`;
    several are an ensemble), and candidate value → the phrases scored for it (default: the written one;
    several are an ensemble too)."""

    name: str
    candidates: dict[str, str]
    prompts: list[str]
    threshold: float
    phrases: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        self.phrases = {v: list(self.phrases.get(v) or [p]) for v, p in self.candidates.items()}


@dataclass
class PseudoTextSpec:
    groups: list[AttributeGroup]
    template: list[str]
    scale: float = 100.0
    fallback: str = "a person"  # the sentence when no clause survives
    clause_groups: list[list[str]] = field(init=False)

    def __post_init__(self):
        names = {g.name for g in self.groups}
        self.clause_groups = [_SLOT.findall(clause) for clause in self.template]
        unknown = sorted({n for slots in self.clause_groups for n in slots} - names)
        if unknown:
            raise ConfigError(
                f"template names groups {unknown} that are not defined; the groups are {sorted(names)}"
            )


def load_attribute_spec(source: str | os.PathLike | Mapping[str, Any]) -> PseudoTextSpec:
    """Read an attributes YAML (or its parsed mapping); `ConfigError` naming the file and the key."""
    import yaml

    where = str(source) if not isinstance(source, Mapping) else "attributes"
    if isinstance(source, Mapping):
        raw: Any = source
    else:
        try:
            raw = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"{where}: file not found") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{where}: not valid YAML: {err}") from err
    if not isinstance(raw, Mapping) or not isinstance(raw.get("groups"), Mapping) or not raw["groups"]:
        raise ConfigError(f"{where}: needs a non-empty 'groups' mapping (group → candidates)")
    prompt = raw.get("prompt", "a photo of a person {}.")
    threshold = float(raw.get("threshold", 0.0))
    groups = []
    for name, entry in raw["groups"].items():
        entry = entry if isinstance(entry, Mapping) else {"candidates": entry}
        candidates = entry.get("candidates")
        if isinstance(candidates, Sequence) and not isinstance(candidates, str):
            candidates = {str(c): str(c) for c in candidates}
        if not isinstance(candidates, Mapping) or len(candidates) < 2:
            raise ConfigError(f"{where}: groups.{name}.candidates must hold at least two candidates")
        phrases = {
            str(k): [str(v)] if isinstance(v, str) or not isinstance(v, Sequence) else [str(p) for p in v]
            for k, v in candidates.items()
        }
        empty = [k for k, v in phrases.items() if not v]
        if empty:
            raise ConfigError(f"{where}: groups.{name}.candidates.{empty[0]} has an empty list of phrases")
        group_prompt = entry.get("prompt", prompt)
        prompts = [str(group_prompt)] if isinstance(group_prompt, str) else [str(p) for p in group_prompt]
        if not prompts or any("{}" not in p for p in prompts):
            raise ConfigError(f"{where}: groups.{name}.prompt {group_prompt!r} has no '{{}}' for the phrase")
        groups.append(
            AttributeGroup(
                str(name),
                {k: v[0] for k, v in phrases.items()},
                prompts,
                float(entry.get("threshold", threshold)),
                phrases,
            )
        )
    template = raw.get("template") or [f"{{{g.name}}}" for g in groups]
    if isinstance(template, str):
        template = [template]
    try:
        return PseudoTextSpec(groups, [str(t) for t in template], float(raw.get("scale", 100.0)),
                              str(raw.get("fallback", "a person")))  # fmt: skip
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def person_toyworld_spec(threshold: float = 0.0, phrase_ensembles: bool = False) -> PseudoTextSpec:
    """The attribute groups of person-toyworld (`PERSON_ATTRIBUTES`, the bag's colour left out), each scored
    with a prompt phrased as person-toyworld's part captions (`part_captions_for`) phrase that part alone,
    and a template in their word order.

    `phrase_ensembles`: a shape candidate (hair length, garment type, bag) or a hair colour is also scored
    in every phrasing the captions give it, e.g. the backpack as "carrying a red backpack", "carrying a
    blue backpack", ... and "none" as "without a bag" and "has no bag" (the captions never name a bag
    without its colour), its embedding the normalized mean over those phrases (CLIP's prompt ensembling);
    the colourless phrase, written into the sentence, is one of them. Off by default: on one trained
    checkpoint it changes the mean over groups by 0.02 points and leaves hair length and the bag at chance
    (50.9 and 31.9 against 51.8 and 30.0; benchmarks/person_pseudo_text.py), so the colourless prompt is
    not what holds them back."""
    from vlzoo.person.data import GARMENT_COLOURS, PERSON_ATTRIBUTES

    prompts = {
        "gender": "a {}.",
        "hair_length": "a person with {} hair.",
        "hair_colour": "a person with {} hair.",
        "upper_type": "a person in a {}.",
        "upper_colour": "a person in a {} top.",
        "lower_type": "a person in {}.",
        "lower_colour": "a person in {} bottoms.",
        "shoe_colour": "a person wearing {} shoes.",
        "bag": "a person {}.",
    }
    phrases: dict[str, Any] = {
        "bag": {"none": "without a bag", "backpack": "carrying a backpack", "handbag": "carrying a handbag"}
    }
    if phrase_ensembles:
        hair, garments = PERSON_ATTRIBUTES["hair_colour"], GARMENT_COLOURS
        phrases = {
            "hair_length": {v: [v, *(f"{v} {c}" for c in hair)] for v in PERSON_ATTRIBUTES["hair_length"]},
            # the captions name hair colour after its length ("long black hair") or alone
            "hair_colour": {c: [c, *(f"{v} {c}" for v in PERSON_ATTRIBUTES["hair_length"])] for c in hair},
            "upper_type": {v: [v, *(f"{c} {v}" for c in garments)] for v in PERSON_ATTRIBUTES["upper_type"]},
            # "in a red skirt" but "in red trousers": the lower-type prompt has no article
            "lower_type": {
                v: [v, *(f"{c} {v}" if v in ("trousers", "shorts") else f"a {c} {v}" for c in garments)]
                for v in PERSON_ATTRIBUTES["lower_type"]
            },
            "bag": {
                "none": ["without a bag", "has no bag"],
                **{
                    b: [f"carrying a {b}", *(f"carrying a {c} {b}" for c in garments)]
                    for b in ("backpack", "handbag")
                },
            },
        }
    groups = {
        name: {"candidates": phrases.get(name, list(PERSON_ATTRIBUTES[name])), "prompt": prompt}
        for name, prompt in prompts.items()
    }
    template = [
        "a {gender}",
        "with {hair_length} {hair_colour} hair",
        "in a {upper_colour} {upper_type}",
        "and {lower_colour} {lower_type}",
        "wearing {shoe_colour} shoes",
        "{bag}",
    ]
    return load_attribute_spec({"groups": groups, "template": template, "threshold": threshold})


class PseudoTextGenerator:
    """Divide-conquer-combine captions from `model` (a CLIP: `encode_image`, `encode_text`) and its tokenizer.

    The candidates' text embeddings are computed once; `choose(image_features)` scores all groups with one
    matrix product and a softmax per group, `captions(...)` fills the template.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, spec: PseudoTextSpec):
        self.model, self.spec = model, spec
        normalize = torch.nn.functional.normalize
        candidates = [(g, phrases) for g in spec.groups for phrases in g.phrases.values()]
        prompts = [p.format(phrase) for g, phrases in candidates for phrase in phrases for p in g.prompts]
        device = next(model.parameters()).device
        # the row of each prompt's candidate: its phrases' × prompts' embeddings are summed there
        owner = torch.arange(len(candidates), device=device).repeat_interleave(
            torch.tensor([len(g.prompts) * len(phrases) for g, phrases in candidates], device=device)
        )
        with torch.inference_mode():
            each = normalize(model.encode_text(tokenizer(prompts).to(device)).float(), dim=-1)
            summed = torch.zeros(len(candidates), each.shape[1], device=device).index_add_(0, owner, each)
            self.text_features = normalize(summed, dim=-1)  # the mean's direction: the ensemble
        sizes = [len(g.candidates) for g in spec.groups]
        self.slices = list(zip(torch.tensor([0, *sizes]).cumsum(0)[:-1].tolist(), sizes))
        self.values = [list(g.candidates) for g in spec.groups]

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        device = self.text_features.device
        return torch.nn.functional.normalize(self.model.encode_image(images.to(device)).float(), dim=-1)

    def choose(self, image_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(choice [N, G], confidence [N, G])`: the index of each group's best candidate, -1 where its
        within-group probability is under the group's threshold, and that probability."""
        logits = self.spec.scale * image_features.float() @ self.text_features.T
        choices, confidences = [], []
        for (start, size), group in zip(self.slices, self.spec.groups):
            probability, best = logits[:, start : start + size].softmax(dim=1).max(dim=1)
            choices.append(best.masked_fill(probability < group.threshold, -1))
            confidences.append(probability)
        return torch.stack(choices, 1), torch.stack(confidences, 1)

    def captions(self, choices: torch.Tensor) -> list[str]:
        """Fill the template for each row of `choices` (clauses whose groups were all kept)."""
        names = [g.name for g in self.spec.groups]
        sentences = []
        for row in choices.tolist():
            phrases = {
                n: g.candidates[self.values[i][c]]
                for i, (n, g, c) in enumerate(zip(names, self.spec.groups, row))
                if c >= 0
            }
            clauses = [
                clause.format(**phrases)
                for clause, slots in zip(self.spec.template, self.spec.clause_groups)
                if all(s in phrases for s in slots)
            ]
            sentences.append(" ".join(clauses) if clauses else self.spec.fallback)
        return sentences

    def attributes(self, choices: torch.Tensor, confidences: torch.Tensor) -> list[tuple[dict, dict]]:
        """Per image, `({group: value}, {group: probability})` of the groups kept."""
        out = []
        for row, conf in zip(choices.tolist(), confidences.tolist()):
            kept = {
                g.name: (self.values[i][c], p)
                for i, (g, c, p) in enumerate(zip(self.spec.groups, row, conf))
                if c >= 0
            }
            out.append(({k: v for k, (v, _) in kept.items()}, {k: round(p, 4) for k, (_, p) in kept.items()}))
        return out

    def __call__(self, images: torch.Tensor) -> list[str]:
        return self.captions(self.choose(self.encode(images))[0])


# -------------------------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `pseudo-text` command's arguments (the CLI's `Command.configure`)."""
    parser.description = "Caption unlabelled pedestrian images with UniPT's divide-conquer-combine generator."
    parser.add_argument("images", help="folder of images (searched recursively)")
    parser.add_argument("--model", required=True, help="a registered CLIP-style model")
    parser.add_argument("--pretrained", default=None, help="its weights (tag or file)")
    parser.add_argument("--attributes", required=True, help="attributes YAML: groups, candidates, template")
    parser.add_argument("--out", required=True, help="captions JSONL to write")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=None, help="override every group's threshold")
    parser.set_defaults(func=run)


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, root: Path):
        from vlzoo.core.data import IMAGE_EXTENSIONS

        self.root = root
        self.files = sorted(
            p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        if not self.files:
            raise ConfigError(f"{root}: no image files found")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from vlzoo.core.data import Record, load_record

        path = self.files[index]
        # load_record decodes (or returns a skip marker); the caption slot is unused.
        return load_record(Record(path, ["-"], str(path.relative_to(self.root)), {}), "first")


def generate_captions(
    model: nn.Module, spec: PseudoTextSpec, images: str | os.PathLike, out: str | os.PathLike,
    batch_size: int = 64, workers: int = 0,
) -> int:  # fmt: skip
    """Caption every image under `images` into the JSONL `out`; returns the number written."""
    from vlzoo.core import get_tokenizer
    from vlzoo.core.eval import eval_loader

    generator = PseudoTextGenerator(model, get_tokenizer(model), spec)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(out, "w", encoding="utf-8") as f:
        for batch in eval_loader(model, _ImageFiles(Path(images)), batch_size, workers, captions=False):
            if not batch["id"]:
                continue
            choices, confidences = generator.choose(generator.encode(batch["image"]))
            for path, caption, (values, conf) in zip(
                batch["id"], generator.captions(choices), generator.attributes(choices, confidences)
            ):
                f.write(json.dumps({"file_path": path, "captions": [caption], "attributes": values,
                                    "confidence": conf}) + "\n")  # fmt: skip
                written += 1
    return written


def run(args: argparse.Namespace) -> int:
    from vlzoo.core.eval import load_eval_model

    spec = load_attribute_spec(args.attributes)
    if args.threshold is not None:
        for group in spec.groups:
            group.threshold = args.threshold
    net, _ = load_eval_model(args.model, args.pretrained)
    written = generate_captions(net, spec, args.images, args.out, args.batch_size, args.workers)
    print(f"wrote {written} captions to {args.out}")
    return 0
