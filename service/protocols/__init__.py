"""Wire protocols beside ``/predict``: TF Serving REST (``/v1``) and KServe v2 / Triton HTTP (``/v2``)."""
