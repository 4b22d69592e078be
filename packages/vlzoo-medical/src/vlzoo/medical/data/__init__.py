"""Medical data: NIfTI and DICOM through MONAI, nibabel and pydicom, report files, med-toyworld.

>>> from vlzoo.medical.data import load_volume, volume_transform, write_med_toyworld, VolumeReports
>>> volume = load_volume("ct.nii.gz", spacing=(5.0, 1.0, 1.0), window="lung")    # Volume, [D, H, W]
>>> files = write_med_toyworld("data/med-toyworld", n_train=800)
>>> pairs = VolumeReports(files.volume_reports, split="train")                  # samples with a Volume
>>> volume_transform(slices=16, size=64)(pairs[0]["image"])["image"].shape      # [16, 3, 64, 64]

Importing this module registers with vlzoo's core:
- image decoders: `.dcm` / `.dicom` → PIL RGB (`load_image`), `.nii` / `.nii.gz` → `Volume` (`read_volume`);
- data kinds: `roco`, `mimic-cxr`, `medconcept`, `volume-reports`;
- generated datasets: `med-toyworld` (2D slices, Karpathy JSON), `med-toyworld-3d` (volume-reports) and
  `med-toyworld-concepts` (medconcept), all written at once by `write_med_toyworld`.
"""

from __future__ import annotations

from vlzoo.core.data import register_data_kind, register_generated_dataset, register_image_decoder
from vlzoo.medical.data.images import DICOM_IMAGE_SUFFIXES, decode_dicom, load_image, read_dicom_pixels
from vlzoo.medical.data.reports import (
    NO_TEXT,
    MedConceptPairs,
    MimicReports,
    ReportPairs,
    RocoPairs,
    VolumeReports,
    build_medconcept,
    build_mimic,
    build_roco,
    build_volume_reports,
    parse_concepts,
    report_sections,
)
from vlzoo.medical.data.toyworld import (
    CLASSES,
    CONCEPT_IDS,
    Case,
    MedToyWorldFiles,
    canonical_report,
    make_case,
    write_med_toyworld,
)
from vlzoo.medical.data.volumes import (
    CLIP_MEAN,
    CLIP_STD,
    WINDOW_PRESETS,
    Volume,
    VolumeTransform,
    apply_window,
    decode_volume,
    load_volume,
    radiological_view,
    read_dicom_series,
    read_nifti,
    read_volume,
    volume_to_meta,
    volume_transform,
    window_preset,
)

MED_TOYWORLD_FILES = {
    "med-toyworld": ("med-toyworld-2d.json", "karpathy"),
    "med-toyworld-3d": ("med-toyworld-3d.jsonl", "volume-reports"),
    "med-toyworld-concepts": ("med-toyworld-concepts.jsonl", "medconcept"),
}


for _suffix in DICOM_IMAGE_SUFFIXES:
    register_image_decoder(_suffix, decode_dicom)
for _suffix in (".nii", ".nii.gz"):
    register_image_decoder(_suffix, decode_volume)

register_data_kind("roco", build_roco, options=("image_root",))
register_data_kind("mimic-cxr", build_mimic, has_splits=True, options=("section",))
register_data_kind("medconcept", build_medconcept, has_splits=True)
register_data_kind("volume-reports", build_volume_reports, has_splits=True)
for _name, (_filename, _kind) in MED_TOYWORLD_FILES.items():
    register_generated_dataset(_name, write_med_toyworld, _filename, kind=_kind)

__all__ = [
    "CLASSES",
    "CLIP_MEAN",
    "CLIP_STD",
    "CONCEPT_IDS",
    "MED_TOYWORLD_FILES",
    "NO_TEXT",
    "WINDOW_PRESETS",
    "Case",
    "MedConceptPairs",
    "MedToyWorldFiles",
    "MimicReports",
    "ReportPairs",
    "RocoPairs",
    "Volume",
    "VolumeReports",
    "VolumeTransform",
    "apply_window",
    "canonical_report",
    "load_image",
    "load_volume",
    "make_case",
    "parse_concepts",
    "radiological_view",
    "read_dicom_pixels",
    "read_dicom_series",
    "read_nifti",
    "read_volume",
    "report_sections",
    "volume_to_meta",
    "volume_transform",
    "window_preset",
    "write_med_toyworld",
]
