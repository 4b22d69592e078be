"""Scene-text data: ICDAR-style detection ground truth, ocr-toyworld, DB targets and ODM glyph labels.

>>> from vlzoo.ocr.data import read_detection_records, render_glyph_map
>>> records = read_detection_records("data/ocr-toyworld/ocr-toyworld.json", "train")
>>> glyphs, skipped = render_glyph_map([(i.polygon, i.text) for i in records[0].instances], (480, 640))

Importing this module registers, with the core:
- the data kind `icdar-detection` (an index JSON or an `images/` + `gt/` folder; see `detection`),
- the generated dataset `ocr-toyworld` (`data: ocr-toyworld` in a recipe).
"""

from vlzoo.core.data import register_data_kind, register_generated_dataset
from vlzoo.ocr.data.crops import (  # recognition: word crops, LMDBs, labels (issue 15)
    OCR_WORDS,
    OCR_WORDS_FILE,
    WordCrops,
    build_str_lmdb,
    build_word_crops,
    cut_icdar_crops,
    rectify_quad,
    write_ocr_words,
)
from vlzoo.ocr.data.detection import (
    DETECTION_DATA_OPTIONS,
    DBTargetConfig,
    DetectionAugment,
    DetectionCollator,
    DetectionDataset,
    build_detection_source,
    db_targets,
    resize_for_eval,
)
from vlzoo.ocr.data.glyphs import GLYPH_FONT_SIZE, polygon_quad, render_glyph_map
from vlzoo.ocr.data.icdar import (
    DONT_CARE,
    DetectionRecord,
    TextInstance,
    format_gt_line,
    iter_words,
    parse_gt_line,
    read_detection_records,
    read_gt_file,
    read_index,
    write_gt_file,
)
from vlzoo.ocr.data.labels import CHARSET_36, CHARSET_94, CharTokenizer, load_charset, normalize_label
from vlzoo.ocr.data.lmdb import LmdbDataset, create_lmdb
from vlzoo.ocr.data.toyworld import OCR_TOYWORLD_FILE, generate_scene, sample_background, write_ocr_toyworld

OCR_TOYWORLD = "ocr-toyworld"
ICDAR_DETECTION = "icdar-detection"

# no has_splits: a detector has no retrieval validation, so val/test data are only read when given
register_data_kind(ICDAR_DETECTION, build_detection_source, options=DETECTION_DATA_OPTIONS)
register_generated_dataset(OCR_TOYWORLD, write_ocr_toyworld, OCR_TOYWORLD_FILE, kind=ICDAR_DETECTION)
# Recognition: `path<TAB>label` files and STR LMDB folders; no splits in one file, so a recipe names its
# test data (the ZooModule's validation is retrieval, which a recognizer does not do).
RECOGNITION_DATA_OPTIONS = ("image_root", "charset", "max_length")
register_data_kind("word-crops", build_word_crops, options=RECOGNITION_DATA_OPTIONS)
register_data_kind("str-lmdb", build_str_lmdb, options=RECOGNITION_DATA_OPTIONS)
register_generated_dataset(OCR_WORDS, write_ocr_words, OCR_WORDS_FILE, kind="word-crops")

__all__ = [
    "CHARSET_36",
    "CHARSET_94",
    "DONT_CARE",
    "GLYPH_FONT_SIZE",
    "ICDAR_DETECTION",
    "OCR_TOYWORLD",
    "OCR_TOYWORLD_FILE",
    "OCR_WORDS",
    "OCR_WORDS_FILE",
    "RECOGNITION_DATA_OPTIONS",
    "CharTokenizer",
    "DBTargetConfig",
    "DetectionAugment",
    "DetectionCollator",
    "DetectionDataset",
    "DetectionRecord",
    "LmdbDataset",
    "TextInstance",
    "WordCrops",
    "build_detection_source",
    "create_lmdb",
    "cut_icdar_crops",
    "db_targets",
    "format_gt_line",
    "generate_scene",
    "iter_words",
    "load_charset",
    "normalize_label",
    "parse_gt_line",
    "polygon_quad",
    "read_detection_records",
    "read_gt_file",
    "read_index",
    "rectify_quad",
    "render_glyph_map",
    "resize_for_eval",
    "sample_background",
    "write_gt_file",
    "write_ocr_toyworld",
    "write_ocr_words",
]
