"""CNN Explorer engine: every computation of the dashboard, usable from a notebook or a script.

This package never imports Streamlit.
"""

import os

# Keras 3 picks its backend from the environment; the engine is written for TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
