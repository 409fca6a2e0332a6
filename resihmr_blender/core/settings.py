"""One settings object for a run, as glTF-Blender-IO keeps one `export_settings`: the command line, the demo,
the batch executors and the sidebar each build one and hand it to `pipeline.run`; nothing else decides how a
person is fitted, which camera is used or when a residual limb is accepted."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .fit import FitConfig
from .rafo import RafoConfig
from .silhouette import SilhouetteConfig


class SettingsError(ValueError):
    """A setting that cannot work; the message names the setting and its value."""


@dataclass
class Settings:
    fit: FitConfig = field(default_factory=FitConfig)
    rafo: RafoConfig = field(default_factory=RafoConfig)
    focal_length_px: float | None = None  # overrides the keypoints file's focal length
    image_size: tuple[int, int] | None = None  # (width, height): overrides the file's (e.g. the loaded photo's)
    pose_meshes: bool = True  # pose the final meshes into the camera frame (overlay and mask need them)
    # the photo's person mask, when one is given (core/silhouette.py): on unless switched off
    silhouette: SilhouetteConfig = field(default_factory=SilhouetteConfig)

    def __post_init__(self) -> None:
        if self.focal_length_px is not None and not (math.isfinite(self.focal_length_px)
                                                     and self.focal_length_px > 0):
            raise SettingsError(f"focal length must be a positive finite number of pixels, "
                                f"got {self.focal_length_px!r}")
        if self.image_size is not None:
            w, h = self.image_size
            if int(w) != w or int(h) != h or w <= 0 or h <= 0:
                raise SettingsError(f"image size must be two positive integers, got {self.image_size!r}")
            self.image_size = (int(w), int(h))
        threshold = self.rafo.accept_threshold_px
        if not (math.isfinite(threshold) and threshold >= 0):
            raise SettingsError(f"acceptance threshold must be a finite number of pixels >= 0, got {threshold!r}")
        lo, hi = self.rafo.lambda_min, self.rafo.lambda_max
        if not (0.0 <= lo <= hi <= 1.0):
            raise SettingsError(f"λ range must satisfy 0 <= λmin <= λmax <= 1, got [{lo}, {hi}]")

    @classmethod
    def from_values(cls, *, threshold_px: float = 15.0, lambda_min: float = 0.0, lambda_max: float = 1.0,
                    num_threads: int = 0, focal_length_px: float | None = None,
                    image_size: tuple[int, int] | None = None, pose_meshes: bool = True,
                    use_silhouette: bool = True, tilt_prior: bool = True) -> Settings:
        """The knobs users see (command-line flags, add-on preferences) -> settings. `tilt_prior` False: RAFO's eq. 4
        exactly as the paper writes it (no tilt prior, no λ hypotheses; rafo.py)."""
        rafo = RafoConfig(accept_threshold_px=threshold_px, lambda_min=lambda_min, lambda_max=lambda_max)
        if not tilt_prior:
            rafo.tilt_prior_sd = 0.0
        return cls(fit=FitConfig(num_threads=num_threads), rafo=rafo,
                   focal_length_px=focal_length_px, image_size=image_size, pose_meshes=pose_meshes,
                   silhouette=SilhouetteConfig(enabled=use_silhouette))
