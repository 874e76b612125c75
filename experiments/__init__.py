"""Runnable experiments that reproduce the lecture's claims on this code (see docs/rnn-training.md).

Each module runs as `python -m experiments.<name>` and writes a PNG figure and a JSON of its numbers.
"""
