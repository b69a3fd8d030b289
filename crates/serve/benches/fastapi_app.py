"""The FastAPI baseline for the /predict bench: slipway-serve's JSON shapes over the same model.

A conventional Python model server: one uvicorn worker, one ONNX Runtime session with one
intra-op thread (as each of slipway-serve's sessions has), request bodies validated by pydantic.
The handler is `async` and calls the session inline: for a model this fast, that beats FastAPI's
thread-pool hop, so the baseline is Python at its quickest rather than a strawman.

Run: SLIPWAY_MODEL=model.onnx uvicorn fastapi_app:app --app-dir crates/serve/benches
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict

MAX_TEXTS = 1024

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["SLIPWAY_MODEL"], options, providers=["CPUExecutionProvider"])
metadata = session.get_modelmeta().custom_metadata_map
classes = json.loads(metadata["classes"]) if "classes" in metadata else None
input_name = session.get_inputs()[0].name

app = FastAPI()


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    texts: list[str] | None = None


def predict(texts: list[str]) -> list[dict]:
    labels, probabilities = session.run(["label", "probabilities"], {input_name: np.array(texts, dtype=object).reshape(-1, 1)})
    names = classes or [str(i) for i in range(probabilities.shape[1])]
    return [
        {"label": str(label), "probabilities": dict(zip(names, map(float, row), strict=True))}
        for label, row in zip(labels, probabilities, strict=True)
    ]


@app.get("/readyz")
def readyz() -> dict:
    return {"ready": True}


@app.post("/predict")
async def post_predict(body: Body) -> dict:
    if body.text is not None and body.texts is None:
        return predict([body.text])[0]
    if body.texts is not None and body.text is None:
        if not body.texts:
            raise HTTPException(400, "`texts` is empty; send at least one text")
        if len(body.texts) > MAX_TEXTS:
            raise HTTPException(413, f"{len(body.texts)} texts in one request; the limit is {MAX_TEXTS}")
        return {"predictions": predict(body.texts)}
    raise HTTPException(400, 'expected a JSON object {"text": "..."} or {"texts": ["...", ...]}')
