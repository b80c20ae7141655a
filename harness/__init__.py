"""harness: replay chatbot and agent traces against a real inference server and measure them."""

__version__ = "0.1.0"
