"""The explorer: a run's encoder and decoder running in one self-contained web page (`aelab explore`)."""

from .export import Exported, Unsupported, export_model, run_ops
from .page import build_page_data, render_page, write_explorer

__all__ = ["Exported", "Unsupported", "build_page_data", "export_model", "render_page", "run_ops", "write_explorer"]
