"""Give faces stable ids across video frames by matching boxes from frame to frame.

Greedy matching on overlap (IoU) first, then on centre distance for fast-moving faces whose
boxes no longer overlap; a track survives ``max_missed`` frames without a match so that one
missed detection does not give the same face a new id.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferkit.face import Box


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when disjoint)."""
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def centre_distance(a: Box, b: Box) -> float:
    """Distance of the centres in units of the larger box's side (scale-free)."""
    dx = (a.x + a.w / 2) - (b.x + b.w / 2)
    dy = (a.y + a.h / 2) - (b.y + b.h / 2)
    return (dx * dx + dy * dy) ** 0.5 / max(a.w, a.h, b.w, b.h, 1)


@dataclass
class _Track:
    id: int
    box: Box
    missed: int = 0


class IouTracker:
    """Assigns each frame's boxes the ids of the tracks they continue, or new ids."""

    def __init__(self, min_iou: float = 0.2, max_centre_distance: float = 0.75, max_missed: int = 15) -> None:
        self.min_iou = min_iou
        self.max_centre_distance = max_centre_distance
        self.max_missed = max_missed
        self._tracks: list[_Track] = []
        self._next_id = 1

    def update(self, boxes: list[Box]) -> list[int]:
        """Ids for ``boxes`` (same order); call once per analysed frame, even with no boxes."""
        ids: list[int | None] = [None] * len(boxes)
        free = set(range(len(self._tracks)))
        for score_pairs in (self._iou_pairs(boxes), self._distance_pairs(boxes)):
            for _, t, b in score_pairs:
                if t in free and ids[b] is None:
                    free.discard(t)
                    track = self._tracks[t]
                    track.box, track.missed = boxes[b], 0
                    ids[b] = track.id
        for t in free:
            self._tracks[t].missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        for b, box in enumerate(boxes):
            if ids[b] is None:
                ids[b] = self._new_track(box)
        return [i for i in ids if i is not None]

    def _iou_pairs(self, boxes: list[Box]) -> list[tuple[float, int, int]]:
        pairs = [(-iou(track.box, box), t, b) for t, track in enumerate(self._tracks)
                 for b, box in enumerate(boxes)]
        return sorted(p for p in pairs if -p[0] >= self.min_iou)

    def _distance_pairs(self, boxes: list[Box]) -> list[tuple[float, int, int]]:
        pairs = [(centre_distance(track.box, box), t, b) for t, track in enumerate(self._tracks)
                 for b, box in enumerate(boxes)]
        return sorted(p for p in pairs if p[0] <= self.max_centre_distance)

    def _new_track(self, box: Box) -> int:
        track = _Track(self._next_id, box)
        self._next_id += 1
        self._tracks.append(track)
        return track.id
