"""The inference protocols, one router each, every one a set of codecs on :mod:`service.pipeline`:
``/predict`` (JSON, ``.npy``, images), TF Serving REST (``/v1``) and KServe v2 / Triton HTTP (``/v2``)."""
