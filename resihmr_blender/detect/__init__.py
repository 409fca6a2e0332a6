"""Optional photo detector (the `[detect]` extra: MediaPipe, OpenCV). Kept outside `core/`, which stays
numpy/torch only; nothing here is imported until a user asks for detection."""
from .hints import LimbJudgement, Suggestion, judge_limbs, limb_loss_hints
from .mediapipe_pose import DetectError, Detection, detect, rank, read_image, to_body25

__all__ = ["DetectError", "Detection", "LimbJudgement", "Suggestion", "detect", "judge_limbs", "limb_loss_hints",
           "rank", "read_image", "to_body25"]
