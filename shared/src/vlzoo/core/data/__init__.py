"""Data: sources of image-text samples, webdataset shards, batching, transforms and the toyworld dataset.

>>> from vlzoo.core.data import KarpathySplits, ImageTextCollator, build_transform, write_toyworld
>>> json_path = write_toyworld("toyworld", n_train=1000)
>>> train = KarpathySplits(json_path, "train", captions="each")

Unreadable samples never raise: sources return skip markers, `ImageTextCollator` lists them in
`batch["skipped"]`, and `SkipCounter` turns too many of them into a `DataError` naming example files.
"""

from vlzoo.core.data.cache import DecodedImageCache
from vlzoo.core.data.collate import ImageTextCollator, SkipCounter, flatten_captions, images_of_captions
from vlzoo.core.data.karpathy import write_karpathy_json
from vlzoo.core.data.kinds import (
    DataKind,
    GeneratedDataset,
    build_source,
    check_data_options,
    check_generate_options,
    data_kinds,
    ensure_generated,
    generated_datasets,
    get_data_kind,
    get_generated_dataset,
    infer_data_kind,
    register_data_kind,
    register_generated_dataset,
)
from vlzoo.core.data.samplers import GroupedBatchSampler
from vlzoo.core.data.shards import ShardSource, expand_shards, read_shard, write_shards
from vlzoo.core.data.sources import (
    IMAGE_EXTENSIONS,
    SAMPLE_ERRORS,
    CaptionMode,
    CsvPairs,
    ImageDecoder,
    ImageFolderClasses,
    ImageTextSource,
    JsonlPairs,
    KarpathySplits,
    Record,
    Sample,
    decode_image,
    is_skipped,
    load_record,
    read_csv_rows,
    read_jsonl,
    read_karpathy,
    register_image_decoder,
    skip_marker,
)
from vlzoo.core.data.toyworld import (
    ToyWorld,
    bag_of_colours_baseline,
    toyworld_classes,
    write_toyworld,
    write_toyworld_classes,
)
from vlzoo.core.data.transforms import (
    AlbumentationsTransform,
    build_transform,
    image_transform,
    model_transform,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "SAMPLE_ERRORS",
    "AlbumentationsTransform",
    "CaptionMode",
    "CsvPairs",
    "DataKind",
    "DecodedImageCache",
    "GeneratedDataset",
    "GroupedBatchSampler",
    "ImageDecoder",
    "ImageFolderClasses",
    "ImageTextCollator",
    "ImageTextSource",
    "JsonlPairs",
    "KarpathySplits",
    "Record",
    "Sample",
    "ShardSource",
    "SkipCounter",
    "ToyWorld",
    "bag_of_colours_baseline",
    "build_source",
    "build_transform",
    "check_data_options",
    "check_generate_options",
    "data_kinds",
    "decode_image",
    "ensure_generated",
    "expand_shards",
    "flatten_captions",
    "generated_datasets",
    "get_data_kind",
    "get_generated_dataset",
    "image_transform",
    "images_of_captions",
    "infer_data_kind",
    "is_skipped",
    "load_record",
    "model_transform",
    "read_csv_rows",
    "read_jsonl",
    "read_karpathy",
    "read_shard",
    "register_data_kind",
    "register_generated_dataset",
    "register_image_decoder",
    "skip_marker",
    "toyworld_classes",
    "write_karpathy_json",
    "write_shards",
    "write_toyworld",
    "write_toyworld_classes",
]
