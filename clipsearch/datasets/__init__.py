"""Dataset readers (RSICD/UCM/Sydney Karpathy JSON, ImageCLEF 2017, generic JSONL/CSV) and the
scene generator (``scenes``): the demo dataset, the tests' small sample set (``sample``, a
configuration of the same generator) and composite scenes for ``/locate`` (``composites``)."""
