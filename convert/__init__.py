"""Keras → TFLite conversion with the model contract and a parity check."""
