"""Experiments that reproduce the paper's points with the library: the 100-armed bandit and the toy-LM dilemma."""
