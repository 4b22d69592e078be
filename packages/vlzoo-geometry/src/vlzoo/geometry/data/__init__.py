"""Geometry data: GeoQA / UniGeo JSON exports, Geometry3K, PGPS9K, GeoX's formal annotations, geo-toyworld.

>>> from vlzoo.geometry.data import write_geo_toyworld, GeoProblemSet, read_geoqa_json
>>> path = write_geo_toyworld("data/geo-toyworld")            # PNG diagrams + GeoQA-style JSON
>>> test = GeoProblemSet(read_geoqa_json(path, "test"), path)  # sample dicts (see `toyworld`'s docstring)

Every reader yields the same sample dict, documented in `vlzoo.geometry.data.toyworld`: image, id, path,
question, choices, choice_values, answer, program, numbers, formal, problem_type, text, needs_diagram.

Importing this module registers, with the core:
- the data kinds `geoqa` (GeoQA / GeoQA+ / UniGeo JSON exports), `geo-toyworld` (every split in one
  file), `geometry3k`, `pgps9k` and `geo-formal` (GeoX's unified formal annotations); their
  `data_options`: `image_root`, `text_field` ("formal" | "question" | "program": what `text` holds, for
  the collator), `verify_programs` (refuse problems whose annotated program reaches no / another choice),
  `problem_types` (geoqa: UniGeo's sub-type file, exported to JSON); each kind takes those its reader
  honours;
- the generated dataset `geo-toyworld` (`data: geo-toyworld` in a recipe).
"""

from vlzoo.core.data import register_data_kind, register_generated_dataset
from vlzoo.geometry.data.formal import build_geo_formal, formal_clauses, pre_caption, read_formal_annotations
from vlzoo.geometry.data.geometry3k import (
    build_geometry3k,
    build_pgps9k,
    latex_number,
    read_geometry3k,
    read_pgps9k,
)
from vlzoo.geometry.data.geoqa import (
    TEXT_FIELDS,
    GeoEntry,
    GeoProblemSet,
    build_geo_toyworld,
    build_geoqa,
    parse_geoqa_record,
    read_geoqa_json,
)
from vlzoo.geometry.data.toyworld import (
    FAMILIES,
    GEO_TOYWORLD_FILE,
    Diagram,
    GeoProblem,
    format_value,
    generate_problem,
    render_diagram,
    write_geo_toyworld,
)

GEO_TOYWORLD = "geo-toyworld"
GEO_DATA_OPTIONS = ("image_root", "text_field", "verify_programs", "problem_types")

# each kind takes only the options its reader honours (another is refused before data is read)
register_data_kind("geoqa", build_geoqa, options=GEO_DATA_OPTIONS)
register_data_kind(GEO_TOYWORLD, build_geo_toyworld, has_splits=True, options=GEO_DATA_OPTIONS[:3])
register_data_kind("geometry3k", build_geometry3k, has_splits=True, options=("text_field",))
register_data_kind("pgps9k", build_pgps9k, options=("image_root", "text_field"))
register_data_kind("geo-formal", build_geo_formal, options=("image_root",))
register_generated_dataset(GEO_TOYWORLD, write_geo_toyworld, GEO_TOYWORLD_FILE, kind=GEO_TOYWORLD)

__all__ = [
    "FAMILIES",
    "GEO_DATA_OPTIONS",
    "GEO_TOYWORLD",
    "GEO_TOYWORLD_FILE",
    "TEXT_FIELDS",
    "Diagram",
    "GeoEntry",
    "GeoProblem",
    "GeoProblemSet",
    "build_geo_formal",
    "build_geo_toyworld",
    "build_geometry3k",
    "build_geoqa",
    "build_pgps9k",
    "formal_clauses",
    "format_value",
    "generate_problem",
    "latex_number",
    "parse_geoqa_record",
    "pre_caption",
    "read_formal_annotations",
    "read_geometry3k",
    "read_geoqa_json",
    "read_pgps9k",
    "render_diagram",
    "write_geo_toyworld",
]
