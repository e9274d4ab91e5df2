"""Training conditions: SFT (Fine-Tuned) and top-K logit distillation (Distilled, Control)."""
