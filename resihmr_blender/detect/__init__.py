"""Optional photo detector (the `[detect]` extra: MediaPipe, OpenCV). Kept outside `core/`, which stays
numpy/torch only; nothing here is imported until a user asks for detection."""
from .mediapipe_pose import DetectError, Detection, Suggestion, detect, limb_loss_hints, read_image, to_body25

__all__ = ["DetectError", "Detection", "Suggestion", "detect", "limb_loss_hints", "read_image", "to_body25"]
