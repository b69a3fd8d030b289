"""The reference pipeline's validation, as teams run it today: pandas + onnxruntime.

Mirrors scripts/validate_model.py of the reference lesson (read the CSV with pandas, predict,
accuracy and per-class recall with numpy, 100 timed single-row predictions, a JSON report), but
on the ONNX model that ships, so both sides do the same work on the same bytes.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort
import pandas as pd


def main() -> None:
    model_path, data_path, out_path = sys.argv[1:4]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options)
    name = session.get_inputs()[0].name
    df = pd.read_csv(data_path)
    texts = df["text"].astype(str).tolist()
    labels = df["label"].astype(str).to_numpy()
    predicted = []
    for start in range(0, len(texts), 256):
        chunk = np.array(texts[start : start + 256], dtype=object).reshape(-1, 1)
        predicted.extend(session.run(None, {name: chunk})[0].tolist())
    predicted = np.array([str(p) for p in predicted])
    accuracy = float(np.mean(predicted == labels))
    recall = {
        str(label): float(np.mean(predicted[labels == label] == label)) for label in np.unique(labels)
    }
    for text in texts[:5]:
        session.run(None, {name: np.array([[text]], dtype=object)})
    latencies = []
    for i in range(200):
        text = texts[(i * 7919) % len(texts)]
        start = time.perf_counter()
        session.run(None, {name: np.array([[text]], dtype=object)})
        latencies.append((time.perf_counter() - start) * 1000)
    report = {
        "accuracy": accuracy,
        "per_class_recall": recall,
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p99_ms": float(np.percentile(latencies, 99)),
    }
    with open(out_path, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
