"""scoregen reference: pure NumPy/SciPy score-based generative modelling, the test oracle."""
