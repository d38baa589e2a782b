"""Serving of exported vidgen models over TF Serving's gRPC / REST API.

Imports `vidgen` and `export`; neither imports this package.

    client.py     PredictionClient (gRPC) and RestPredictionClient, against TF Serving's API
    server.py     Server: the gRPC services and the REST front end of the local server
    core.py       ServingCore: request checks and model calls shared by both front ends
    manager.py    ModelManager: version polling, load + warm-up before swap
    servable.py   Servable: one loaded version, its signatures and checks
    tensors.py    TensorProto parsing and input checks before TensorFlow sees a tensor
    rest.py       REST paths and JSON tensors
    batching.py   Batcher: server-side batching
    errors.py     ServingError and TF Serving's status -> HTTP mapping
    cli.py        `vidgen-serve start` and `vidgen-serve predict`
    deploy/       model config, batching parameters and compose file for the real TF Serving
"""
