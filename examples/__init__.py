"""tensorpack-style training scripts that run on tpserve's ``layers`` (see ``examples/README.md``).

Each module is a script (``python -m examples.mnist_convnet --fake``) and, when imported, only
defines its ``Model`` (a ``layers.ModelDesc``) and data functions, so the server can import the
class by name (``"architecture": "examples.mnist_convnet:Model"``) without training anything.
"""
__all__ = []
