"""Evaluation of dual encoders on precomputed features: retrieval, zero-shot, linear probe, reports.

>>> from vlzoo.core.eval import encode_images, encode_texts, retrieval_metrics, write_report
>>> images = encode_images(model, loader)                     # EncodedImages(features, labels, ids)
>>> texts = encode_texts(model, tokenizer, captions)
>>> metrics = retrieval_metrics(images.features, texts, text_to_image)
>>> write_report("runs/eval", metrics, image_features=images.features, text_features=texts,
...              text_to_image=text_to_image)
"""

from vlzoo.core.eval.features import EncodedImages, encode_images, encode_texts, retrieval_features
from vlzoo.core.eval.linear_probe import (
    DEFAULT_WEIGHT_DECAYS,
    LogisticRegression,
    fit_logistic_regression,
    linear_probe,
)
from vlzoo.core.eval.report import (
    plot_query_grid,
    plot_recall_curves,
    plot_similarity_heatmap,
    print_table,
    to_jsonable,
    write_json,
    write_report,
)
from vlzoo.core.eval.retrieval import (
    DEFAULT_RECALL_KS,
    auto_chunk_size,
    median_rank,
    recall_at_k,
    retrieval_metrics,
    retrieval_ranks,
)
from vlzoo.core.eval.zeroshot import (
    OPENAI_IMAGENET_TEMPLATES,
    SIMPLE_TEMPLATES,
    classification_metrics,
    zeroshot_classifier,
    zeroshot_metrics,
)

__all__ = [
    "DEFAULT_RECALL_KS",
    "DEFAULT_WEIGHT_DECAYS",
    "OPENAI_IMAGENET_TEMPLATES",
    "SIMPLE_TEMPLATES",
    "EncodedImages",
    "LogisticRegression",
    "auto_chunk_size",
    "classification_metrics",
    "encode_images",
    "encode_texts",
    "fit_logistic_regression",
    "linear_probe",
    "median_rank",
    "plot_query_grid",
    "plot_recall_curves",
    "plot_similarity_heatmap",
    "print_table",
    "recall_at_k",
    "retrieval_features",
    "retrieval_metrics",
    "retrieval_ranks",
    "to_jsonable",
    "write_json",
    "write_report",
    "zeroshot_classifier",
    "zeroshot_metrics",
]
