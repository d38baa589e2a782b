"""Serving of exported vidgen models over TF Serving's gRPC / REST API.

Imports `vidgen` and `export`; neither imports this package.

    client.py     PredictionClient (gRPC) and RestPredictionClient, against TF Serving's API
    server.py     Server: the gRPC services of the local server, ReloadConfig included
    http_server.py  the HTTP front end: REST API and the Prometheus page
    core.py       ServingCore: request checks and model calls shared by both front ends
    model_config.py  TF Serving's ModelServerConfig: parsing, checks, version policies
    model_registry.py  ModelRegistry: the configured models, labels, config reloads
    manager.py    ModelManager: one model's versions, loaded + warmed before they serve
    monitoring.py  Metrics: TF Serving's Prometheus metrics; the MonitoringConfig proto
    servable.py   Servable: one loaded version, its signatures and checks
    tensors.py    TensorProto parsing and input checks before TensorFlow sees a tensor
    rest.py       REST paths and JSON tensors
    batching.py   Batcher: server-side batching
    errors.py     ServingError and TF Serving's status -> HTTP mapping
    cli.py        `vidgen-serve start` and `vidgen-serve predict`
    deploy/       model, monitoring and batching configs and compose file for the real TF Serving
"""
