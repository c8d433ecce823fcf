"""The ONNX opsets export writes. A module of its own so the CLI can name them without torch."""

DEFAULT_OPSET = 17  # the highest every supported JetPack TensorRT parses (docs/GPU.md)
# The TorchScript exporter supports opsets up to 20 in torch 2.x; beyond that it only warns.
MAX_OPSET = 20
