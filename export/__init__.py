"""Export of trained vidgen models (SavedModel for TF Serving, TFLite for LiteRT).

Imports `vidgen`; `vidgen` never imports this package.
"""
