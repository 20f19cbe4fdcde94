"""Dataset readers (RSICD/UCM/Sydney Karpathy JSON, ImageCLEF 2017, generic JSONL/CSV) and the
generated demo and sample image sets."""
