"""Sentence embeddings for the kNN strategy: one interface, a default offline model."""

from ._encoder import Encoder, MiniLMOnnxEncoder, Vectors, load_encoder

__all__ = ["Encoder", "MiniLMOnnxEncoder", "Vectors", "load_encoder"]
