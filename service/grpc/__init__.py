"""The KServe v2 / Triton gRPC endpoint (``inference.GRPCInferenceService``): see :mod:`service.grpc.server`.

``kserve_v2_pb2.py`` and ``kserve_v2_pb2_grpc.py`` are generated from ``protos/kserve_v2.proto`` by
``make protos``; they need only ``grpcio`` and ``protobuf`` at run time. The same server serves TF Serving's
gRPC API (``tensorflow.serving.PredictionService`` / ``ModelService``): :mod:`service.grpc.tfserving_api`,
with the messages of :mod:`service.grpc.tfserving` (from ``protos/tfserving/``, a private descriptor pool).
"""
from .server import GrpcServer, grpc_status, start_grpc_server

__all__ = ["start_grpc_server", "GrpcServer", "grpc_status"]
