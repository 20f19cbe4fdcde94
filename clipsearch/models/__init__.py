"""The CLIP model library: loading, runtimes, preprocessing, safe image decoding, the CLIP
tokenizer, tiny test models and patch grids. Shared by the encoder service, the gateway, the
feeder, evaluation, fine-tuning and steering."""
