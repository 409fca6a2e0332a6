"""One module per user step; each exposes its operator classes. `classes` is what register() registers."""
from . import detect, export, fit, load, prosthesis, reconstruct, residuals, sequence

classes = (*load.classes, *detect.classes, *residuals.classes, *fit.classes, *reconstruct.classes,
           *prosthesis.classes, *export.classes, *sequence.classes)
