"""scoregen_keras: score-based generative modelling on Keras 3 (TensorFlow, JAX or PyTorch).

Importing the package is cheap: submodules (``sde``, ``losses``, ``networks``, ``backend``, ...)
are imported explicitly by the caller, and only ``scoregen_keras.backend`` touches the backend
framework directly.
"""

__version__ = "0.1.0"
