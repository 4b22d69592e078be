"""Evaluation: metrics on precomputed features, the runners that evaluate a model on files, their reports
and the registry of evaluation tasks behind `vlzoo eval <task>` and `vlzoo-<domain> eval <task>`.

>>> from vlzoo.core.eval import encode_images, encode_texts, retrieval_metrics, write_report
>>> images = encode_images(model, loader)                     # EncodedImages(features, labels, ids)
>>> texts = encode_texts(model, tokenizer, captions)
>>> metrics = retrieval_metrics(images.features, texts, text_to_image)
>>> write_report("runs/eval", metrics, image_features=images.features, text_features=texts,
...              text_to_image=text_to_image)
>>> from vlzoo.core.eval import evaluate_retrieval             # a runner: files in, metrics and report out
>>> evaluate_retrieval("clip-vit-tiny", data="toyworld", out="runs/retrieval")

Modules: `retrieval`, `zeroshot`, `probe` (metrics), `features` (encoding a set), `report` (tables,
JSON, plots), `runners` (the core's tasks and the glue domains share), `tasks` (the task registry),
`skips` (the skipped samples every task counts, reports and stops on above `--max-skip-rate`).
Names are imported on first use: the task registry is read whenever a command's parser is built, and the
report code pulls in matplotlib (seconds).
"""

from __future__ import annotations

import importlib

# Every name is imported on first use: `vlzoo --help` reads the task registry without torch, the report code
# pulls in matplotlib (seconds), and the task registry reaches the model registry, which must not be
# imported while the core itself is being imported.
_LAZY: dict[str, tuple[str, ...]] = {
    "features": (
        "EncodedImages",
        "EncodedRetrievalSet",
        "encode_images",
        "encode_pair_batch",
        "encode_retrieval_set",
        "encode_texts",
    ),
    "identity": ("IDENTITY_AP_PROTOCOLS", "identity_ranking", "identity_retrieval"),
    "probe": (
        "DEFAULT_WEIGHT_DECAYS",
        "LogisticRegression",
        "fit_logistic_regression",
        "linear_probe",
    ),
    "retrieval": (
        "DEFAULT_RECALL_KS",
        "PAIR_SCORE_CHANCE",
        "auto_chunk_size",
        "median_rank",
        "pair_scores",
        "recall_at_k",
        "retrieval_metrics",
        "retrieval_ranks",
    ),
    "skips": (
        "DEFAULT_MAX_SKIP_RATE",
        "SkipLedger",
        "active_skips",
        "evaluation_runner",
        "skip_scope",
        "with_skips",
    ),
    "zeroshot": (
        "OPENAI_IMAGENET_TEMPLATES",
        "SIMPLE_TEMPLATES",
        "classification_metrics",
        "zeroshot_classifier",
        "zeroshot_metrics",
    ),
    "report": (
        "plot_query_grid",
        "plot_recall_curves",
        "plot_similarity_heatmap",
        "print_skip_note",
        "print_table",
        "report_metrics",
        "save_figure",
        "to_jsonable",
        "write_json",
        "write_report",
    ),
    "runners": (
        "GalleryImages",
        "SkipCountingLoader",
        "eval_loader",
        "evaluate_linear_probe",
        "evaluate_retrieval",
        "evaluate_zeroshot",
        "load_eval_model",
        "resolve_eval_data",
    ),
    "tasks": (
        "EvalTask",
        "add_eval_arguments",
        "applicable_eval_tasks",
        "eval_options",
        "eval_tasks",
        "get_eval_task",
        "register_eval_task",
        "run_eval_tasks",
    ),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [*_HOME]


def __getattr__(name: str):
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'vlzoo.core.eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"vlzoo.core.eval.{module}"), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
