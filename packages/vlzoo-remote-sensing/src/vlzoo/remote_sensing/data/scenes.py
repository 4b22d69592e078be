"""Scene-classification folders (UCM, AID, RESISC45, EuroSAT) and remote-sensing prompt templates.

The four benchmarks share the `root/<class>/<image>` layout of the core's `ImageFolderClasses` (UCM:
point at `UCMerced_LandUse/Images`; EuroSAT MS: 13-band GeoTIFFs, read by this package's decoder). Their
folder names are not prompt-ready: EuroSAT and AID write `AnnualCrop`, `BaseballField`, RESISC45
`ground_track_field`, RSICD/RSITMD files `denseresidential`. `SceneFolder` turns them into words.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from vlzoo.core.data import IMAGE_EXTENSIONS, ImageFolderClasses, Sample
from vlzoo.remote_sensing.data.captions import finish_geo_sample
from vlzoo.remote_sensing.data.geotiff import Bands

__all__ = ["RS_TEMPLATES", "SceneFolder", "scene_class_name"]

# Prompts for zero-shot scene classification, each "{}" replaced by a class name. Written for vlzoo in the
# spirit of CLIP's prompt ensembles: the viewpoints (satellite, aerial, top-down) remote-sensing captions use.
RS_TEMPLATES: tuple[str, ...] = (
    "a satellite image of {}.",
    "an aerial photograph of {}.",
    "an aerial image of {}.",
    "a satellite photo of {}.",
    "a remote sensing image of {}.",
    "a top-down view of {}.",
    "an overhead image of {}.",
)

# Class folder names written as one word in RSICD, RSITMD, AID and UCM, and how to say them.
_COMPOUNDS: dict[str, str] = {
    "bareland": "bare land",
    "baseballdiamond": "baseball diamond",
    "baseballfield": "baseball field",
    "boattrack": "boat track",
    "denseresidential": "dense residential area",
    "golfcourse": "golf course",
    "mediumresidential": "medium residential area",
    "mobilehomepark": "mobile home park",
    "parkinglot": "parking lot",
    "railwaystation": "railway station",
    "sparseresidential": "sparse residential area",
    "storagetanks": "storage tanks",
    "tenniscourt": "tennis court",
    "sealake": "sea or lake",
}
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def scene_class_name(folder: str) -> str:
    """A class folder name as words: "AnnualCrop" → "annual crop", "ground_track_field" → "ground track
    field", "denseresidential" → "dense residential area"."""
    words = _CAMEL.sub(" ", folder).replace("_", " ").replace("-", " ").lower().split()
    joined = "".join(words)
    return _COMPOUNDS.get(joined, " ".join(words))


class SceneFolder(ImageFolderClasses):
    """`root/<class>/<image>` scenes with prompt-ready `class_names` (see `scene_class_name`); samples are
    the core's `{"image", "label", "class_name", "id", "path"}`, plus `"geo"` for GeoTIFFs. `bands` keeps
    some bands (EuroSAT MS's 13 → `("B04", "B03", "B02")`); a file without one is a counted skip."""

    def __init__(
        self, root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS, bands: Bands = None
    ):
        super().__init__(root, extensions)
        self.class_names = [scene_class_name(c) for c in self.classes]
        self.bands = bands

    def __getitem__(self, index: int) -> Sample:
        return finish_geo_sample(super().__getitem__(index), self.bands)
