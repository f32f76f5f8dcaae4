"""Converters from other projects' checkpoints to avlm models."""
