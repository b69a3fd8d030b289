"""Talks to a Slipway server with tritonclient's HTTP client, a real client of the Open
Inference Protocol (KServe v2), and prints what it got as one JSON object.

Usage: python oip_client.py URL MODEL_NAME ROWS_JSON
ROWS_JSON is a list of texts (a text model) or of feature rows (a feature model). Each request
is sent twice: with JSON tensors and with the binary tensor extension (tritonclient's default).
Exit codes: 0 printed; 1 the client raised where it should not have.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def main() -> int:
    url, name, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    client = httpclient.InferenceServerClient(url=url)
    out = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(name),
        "metadata": client.get_model_metadata(name),
        "results": {},
        "errors": {},
    }
    meta = out["metadata"]
    tensor = meta["inputs"][0]
    if tensor["datatype"] == "BYTES":
        data = np.array([[t.encode()] for t in rows], dtype=np.object_)
    else:
        data = np.array(rows, dtype=np.float32)
    label, probabilities = meta["outputs"][0]["name"], meta["outputs"][1]["name"]
    for binary in (False, True):
        infer_input = httpclient.InferInput(
            tensor["name"], list(data.shape), tensor["datatype"]
        )
        infer_input.set_data_from_numpy(data, binary_data=binary)
        result = client.infer(name, [infer_input], request_id="req-1")
        labels = result.as_numpy(label)
        out["results"]["binary" if binary else "json"] = {
            "labels": [
                x.decode() if isinstance(x, bytes) else str(x)
                for x in labels.reshape(-1).tolist()
            ],
            "probabilities": result.as_numpy(probabilities).tolist(),
            "id": result.get_response()["id"],
        }
    # A wrong input name: the client must raise with the server's message.
    wrong = httpclient.InferInput(
        "not_" + tensor["name"], list(data.shape), tensor["datatype"]
    )
    wrong.set_data_from_numpy(data, binary_data=False)
    try:
        client.infer(name, [wrong])
    except InferenceServerException as e:
        out["errors"]["wrong_input"] = {"status": e.status(), "message": e.message()}
    try:
        client.get_model_metadata("no_such_model")
    except InferenceServerException as e:
        out["errors"]["unknown_model"] = {"status": e.status(), "message": e.message()}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
