"""mnn-harness: does your MNN model give the same answers on the ARM board as on x86?"""

__version__ = "0.1.0"
