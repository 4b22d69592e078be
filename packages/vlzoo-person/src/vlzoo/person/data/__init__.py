"""Person data: TBPS annotations (CUHK-PEDES, ICFG-PEDES, RSTPReid, SYNTH-PEDES, LUPerson-T), pedestrian
transforms and the generated `person-toyworld`.

>>> from vlzoo.person.data import write_person_toyworld, PERSON_ATTRIBUTES
>>> json_path = write_person_toyworld("data/person-toyworld", n_train=160, images_per_id=4, seed=0)

Importing this module registers, with the core, the data kinds `cuhk-pedes`, `icfg-pedes`, `rstpreid`,
`synth-pedes` and `luperson-t` (`data_kind: auto` knows the released file names) and the generated dataset
`person-toyworld` (`data: person-toyworld` in a recipe, read as `cuhk-pedes`).
"""

from vlzoo.core.data import register_data_kind, register_generated_dataset
from vlzoo.person.data.face_toyworld import FACE_ATTRIBUTES, FACE_TOYWORLD_FILE, write_face_toyworld
from vlzoo.person.data.faces import (
    CELEBA_ATTRIBUTES,
    CelebASource,
    FaceCaptionTable,
    build_celeba,
    build_face_captions,
    read_celeba_attributes,
    read_celeba_partition,
)
from vlzoo.person.data.tbps import (
    TBPS_FORMATS,
    TbpsAnnotations,
    TbpsFormat,
    build_tbps,
    read_tbps_entries,
    split_of,
)
from vlzoo.person.data.toyworld import (
    COLOUR_WORDS,
    GARMENT_COLOURS,
    PERSON_ATTRIBUTES,
    PERSON_TOYWORLD_FILE,
    attribute_words,
    caption_colours,
    captions_for,
    colours_only_rank1,
    draw_identities,
    part_captions_for,
    render_person,
    shape_caption_for,
    swapped_part_captions_for,
    write_person_toyworld,
)
from vlzoo.person.data.transforms import FitPad, pedestrian_transform

PERSON_TOYWORLD = "person-toyworld"

for _fmt in TBPS_FORMATS.values():
    register_data_kind(
        _fmt.name,
        build_tbps(_fmt.name),
        suffixes=_fmt.files,
        has_splits=_fmt.has_split,
        options=("image_root",),
    )
register_generated_dataset(PERSON_TOYWORLD, write_person_toyworld, PERSON_TOYWORLD_FILE, kind="cuhk-pedes")
# Faces: FaceCaption-style tables (parquet by suffix; JSONL with data_kind: facecaption), CelebA folders.
FACE_TOYWORLD = "face-toyworld"
register_data_kind(
    "facecaption", build_face_captions, suffixes=(".parquet",), has_splits=True,
    options=("image_root", "img_key", "caption_key"),
)  # fmt: skip
register_data_kind(
    "celeba", build_celeba, suffixes=("list_attr_celeba.txt",), has_splits=True, options=("attributes",)
)
register_generated_dataset(FACE_TOYWORLD, write_face_toyworld, FACE_TOYWORLD_FILE, kind="facecaption")

__all__ = [
    "CELEBA_ATTRIBUTES",
    "COLOUR_WORDS",
    "FACE_ATTRIBUTES",
    "FACE_TOYWORLD",
    "FACE_TOYWORLD_FILE",
    "GARMENT_COLOURS",
    "PERSON_ATTRIBUTES",
    "PERSON_TOYWORLD",
    "PERSON_TOYWORLD_FILE",
    "TBPS_FORMATS",
    "CelebASource",
    "FaceCaptionTable",
    "FitPad",
    "TbpsAnnotations",
    "TbpsFormat",
    "attribute_words",
    "build_tbps",
    "caption_colours",
    "captions_for",
    "colours_only_rank1",
    "draw_identities",
    "part_captions_for",
    "pedestrian_transform",
    "read_celeba_attributes",
    "read_celeba_partition",
    "read_tbps_entries",
    "render_person",
    "shape_caption_for",
    "split_of",
    "swapped_part_captions_for",
    "write_face_toyworld",
    "write_person_toyworld",
]
