"""The latent-space explorer: one self-contained HTML page per model, where the image under the
pointer is the model's decode there (docs/explorer.md). ``write_explorer`` builds it from a
model, test images, labels and class names; it knows nothing of run folders or command lines
(``python -m scratchvae.explore RUN`` is the command)."""
from .decoder_program import UnsupportedDecoder, decoder_program
from .page import (EXPLORER_NAME, MARKER, ExplorerError, ExplorerPage, check_replaceable, explorer_html,
                   page_data, page_decoder, posterior_means, view_extent, write_dataset_explorer, write_explorer)

__all__ = ["EXPLORER_NAME", "MARKER", "ExplorerError", "ExplorerPage", "UnsupportedDecoder",
           "check_replaceable", "decoder_program", "explorer_html", "page_data", "page_decoder",
           "posterior_means", "view_extent", "write_dataset_explorer", "write_explorer"]
