"""icl-distill: cross-lingual in-context-learning distillation benchmark."""

__version__ = "0.1.0"
