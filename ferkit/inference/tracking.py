"""Give faces stable ids across video frames by matching boxes from frame to frame.

Greedy matching on overlap (IoU) first, then on centre distance for fast-moving faces whose
boxes no longer overlap; a track survives ``max_missed`` frames without a match so that one
missed detection does not give the same face a new id.

Each track also keeps its velocity (pixels per frame, from its last two matches), so that a
video analysed with detection only every few frames can carry the boxes, landmarks included,
to the frames in between (:meth:`IouTracker.carried`).
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


def _centre(box: Box) -> tuple[float, float]:
    return box.x + box.w / 2, box.y + box.h / 2


def shifted(box: Box, dx: float, dy: float) -> Box:
    """``box`` moved by (dx, dy) pixels, its landmarks with it (the aligned crop follows them)."""
    marks = None if box.landmarks is None else tuple((x + dx, y + dy) for x, y in box.landmarks)
    return Box(round(box.x + dx), round(box.y + dy), box.w, box.h, marks, box.score)


@dataclass
class _Track:
    id: int
    box: Box
    missed: int = 0
    frame: int = 0  # the frame of the last match
    velocity: tuple[float, float] = (0.0, 0.0)  # of the box's centre, pixels per frame


class IouTracker:
    """Assigns each frame's boxes the ids of the tracks they continue, or new ids."""

    def __init__(self, min_iou: float = 0.2, max_centre_distance: float = 0.75, max_missed: int = 15) -> None:
        self.min_iou = min_iou
        self.max_centre_distance = max_centre_distance
        self.max_missed = max_missed
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._frame = -1

    def update(self, boxes: list[Box], frame: int | None = None) -> list[int]:
        """Ids for ``boxes`` (same order); call once per analysed frame, even with no boxes.
        ``frame``: the frame's index, which velocities are measured in (default: one more than
        the last update's)."""
        frame = self._frame + 1 if frame is None else frame
        self._frame = frame
        ids: list[int | None] = [None] * len(boxes)
        free = set(range(len(self._tracks)))
        for score_pairs in (self._iou_pairs(boxes), self._distance_pairs(boxes)):
            for _, t, b in score_pairs:
                if t in free and ids[b] is None:
                    free.discard(t)
                    track = self._tracks[t]
                    gap = frame - track.frame
                    if gap > 0:
                        (x0, y0), (x1, y1) = _centre(track.box), _centre(boxes[b])
                        track.velocity = ((x1 - x0) / gap, (y1 - y0) / gap)
                    track.box, track.missed, track.frame = boxes[b], 0, frame
                    ids[b] = track.id
        for t in free:
            self._tracks[t].missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        for b, box in enumerate(boxes):
            if ids[b] is None:
                ids[b] = self._new_track(box)
        return [i for i in ids if i is not None]

    def carried(self, frame: int) -> list[tuple[int, Box]]:
        """(id, box) of the tracks the last update matched, moved on to ``frame`` at their
        velocity: the guesses for a frame that is not run through the detector."""
        out = []
        for t in self._tracks:
            if t.missed == 0:
                steps = frame - t.frame
                out.append((t.id, shifted(t.box, t.velocity[0] * steps, t.velocity[1] * steps)))
        return out

    def _iou_pairs(self, boxes: list[Box]) -> list[tuple[float, int, int]]:
        pairs = [(-iou(track.box, box), t, b) for t, track in enumerate(self._tracks)
                 for b, box in enumerate(boxes)]
        return sorted(p for p in pairs if -p[0] >= self.min_iou)

    def _distance_pairs(self, boxes: list[Box]) -> list[tuple[float, int, int]]:
        pairs = [(centre_distance(track.box, box), t, b) for t, track in enumerate(self._tracks)
                 for b, box in enumerate(boxes)]
        return sorted(p for p in pairs if p[0] <= self.max_centre_distance)

    def _new_track(self, box: Box) -> int:
        track = _Track(self._next_id, box, frame=self._frame)
        self._next_id += 1
        self._tracks.append(track)
        return track.id
