"""vlzoo.medical: RadCLIP, ConceptCLIP and PTUnifier, NIfTI/DICOM volumes and report data.

>>> from vlzoo.medical import load_volume, load_image
>>> ct = load_volume("chest.nii.gz", spacing=(5.0, 1.0, 1.0), window="lung")  # or a DICOM series folder
>>> ct.array.shape, ct.spacing              # [D, H, W] float32 in [0, 1], slices inferior → superior (RAS)
>>> xray = load_image("cxr.dcm")            # PIL RGB after the DICOM display chain (MONOCHROME1 inverted)

Volumes, windows and the axis convention: `vlzoo.medical.data.volumes`; report formats:
`vlzoo.medical.data.reports`; the generated `med-toyworld`: `vlzoo.medical.data.toyworld`; evaluation:
`vlzoo.medical.evaluation` (`vlzoo-medical eval`).
"""

from vlzoo.medical import models  # noqa: F401  (registers the models and data kinds)
from vlzoo.medical.data import (
    CONCEPT_IDS,
    WINDOW_PRESETS,
    MedConceptPairs,
    MimicReports,
    RocoPairs,
    Volume,
    VolumeReports,
    apply_window,
    load_image,
    load_volume,
    read_dicom_pixels,
    read_volume,
    volume_transform,
    write_med_toyworld,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # The evaluation module pulls in matplotlib and the core's report code (seconds): imported when asked
    # for, not whenever the registry discovers this package.
    if name == "MEDICAL_TEMPLATES":
        from vlzoo.medical.evaluation import MEDICAL_TEMPLATES

        return MEDICAL_TEMPLATES
    raise AttributeError(f"module 'vlzoo.medical' has no attribute {name!r}")


__all__ = [
    "CONCEPT_IDS",
    "MEDICAL_TEMPLATES",
    "WINDOW_PRESETS",
    "MedConceptPairs",
    "MimicReports",
    "RocoPairs",
    "Volume",
    "VolumeReports",
    "apply_window",
    "load_image",
    "load_volume",
    "read_dicom_pixels",
    "read_volume",
    "volume_transform",
    "write_med_toyworld",
]
