"""The model itself: build and fit the scikit-learn pipeline, export it to ONNX, score it.

Kept apart from train.py because scikit-learn and skl2onnx take about four seconds to import:
train.py checks its inputs first and imports this module only once they are good, so bad
input fails at once.

Every export goes through ``to_onnx_bytes``, which makes the bytes deterministic: skl2onnx
names the graph with a fresh uuid on every run unless given a name, and lists the opset
imports in set order, which follows PYTHONHASHSEED. Fitting runs with native thread pools
held to one thread, so the floating-point result does not depend on the core count (and on
two cores it is faster than the default, which oversubscribes them).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
from onnx.helper import make_opsetid
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import StringTensorType
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from train import Params

# ai.onnx opset of the exported graph. Pinned rather than left to skl2onnx's "latest", so a
# skl2onnx upgrade cannot silently raise the ONNX Runtime version the model needs.
TARGET_OPSET = 21
# The TF-IDF step in ONNX is dense (rows x vocabulary): score in chunks of this many rows.
ONNX_BATCH_ROWS = 256
TEXT_GRAPH_NAME = "slipway_text_classifier"
# No ZipMap, so the outputs are a label tensor and a probabilities tensor. The C.UTF-8 locale
# because skl2onnx's default, en_US.UTF-8, is missing on Slipway's machines and the model
# then fails to load.
TEXT_ONNX_OPTIONS = {
    TfidfVectorizer: {"locale": "C.UTF-8"},
    LogisticRegression: {"zipmap": False},
}


def build_pipeline(params: Params) -> Pipeline:
    tfidf = TfidfVectorizer(
        max_features=params.max_features,
        ngram_range=(1, params.ngram_max),
        min_df=params.min_df,
        dtype=np.float32,
    )
    # lbfgs draws no random numbers, but the seed is set so a change of solver stays
    # deterministic; nothing here uses NumPy's global random state.
    clf = LogisticRegression(C=params.C, max_iter=params.max_iter, random_state=params.seed)
    return Pipeline([("tfidf", tfidf), ("clf", clf)])


def fit(estimator, features, labels) -> float:
    """Fit on one thread and return the accuracy on the training data."""
    with threadpool_limits(limits=1):
        estimator.fit(features, labels)
        return float(estimator.score(features, labels))


def to_onnx_bytes(estimator, initial_types: list, options: dict, graph_name: str) -> bytes:
    """Export with skl2onnx, with everything that varies between runs fixed or cleared."""
    onx = convert_sklearn(
        estimator,
        name=graph_name,
        initial_types=initial_types,
        options=options,
        target_opset=TARGET_OPSET,
    )
    onx.doc_string = ""
    onx.graph.doc_string = ""
    for node in onx.graph.node:
        node.doc_string = ""
    imports = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    onx.opset_import.extend(make_opsetid(domain, version) for domain, version in imports)
    # The class of each probability column, for servers that report probabilities by label.
    classes = onx.metadata_props.add()
    classes.key = "classes"
    classes.value = json.dumps([str(c) for c in estimator.classes_])
    return onx.SerializeToString(deterministic=True)


def train_text_model(
    params: Params, texts: list[str], labels: list[str]
) -> tuple[bytes, list[str], float]:
    """Train and export; return the ONNX bytes, the class names and the train accuracy."""
    pipeline = build_pipeline(params)
    train_accuracy = fit(pipeline, texts, labels)
    initial_types = [("text", StringTensorType([None, 1]))]
    onnx_bytes = to_onnx_bytes(pipeline, initial_types, TEXT_ONNX_OPTIONS, TEXT_GRAPH_NAME)
    return onnx_bytes, [str(c) for c in pipeline.classes_], train_accuracy


def onnx_session(model_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # One thread: a reduction split across threads could round differently and flip a
    # borderline prediction, making metrics.json depend on the machine.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def onnx_text_accuracy(model_bytes: bytes, texts: list[str], labels: list[str]) -> float:
    """Accuracy of the exported model as ONNX Runtime runs it, the way Slipway serves it."""
    session = onnx_session(model_bytes)
    correct = 0
    for start in range(0, len(texts), ONNX_BATCH_ROWS):
        end = start + ONNX_BATCH_ROWS
        batch = np.array(texts[start:end], dtype=object).reshape(-1, 1)
        (predicted,) = session.run(["label"], {"text": batch})
        correct += sum(p == w for p, w in zip(predicted, labels[start:end], strict=True))
    return correct / len(texts)
