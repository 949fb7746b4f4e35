"""Dataset building, training and evaluation (workstation side; uses TensorFlow)."""
