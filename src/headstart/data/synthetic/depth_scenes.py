"""Procedural indoor scenes with exact metric depth, for learning monocular depth offline.

A pinhole camera sits in a box-shaped room (floor, ceiling, back and side walls) holding a
few boxes and spheres that rest on the floor. Every pixel's ray is cast against all
surfaces (numpy, vectorised), so occlusion and perspective are exact; the image carries
the cues a depth network uses: a checkered floor whose tiles shrink with distance (texture
gradient), height in the image, Lambertian shading from a directional light, cast shadows
below objects, and a light distance haze.

Depth is planar (camera z, as in NYU / KITTI), in metres, and always inside
(0, max_depth): the back wall is the farthest surface and sits below max_depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Surface ids in SceneRender.surface; objects are OBJECT_ID + index.
FLOOR, CEILING, BACK_WALL, LEFT_WALL, RIGHT_WALL, OBJECT_ID = 0, 1, 2, 3, 4, 5
_EPS = 1e-4


@dataclass
class SceneRender:
    """image: [H, W, 3] uint8; depth: [H, W] float32 metres; surface: [H, W] int16 id of the visible surface."""

    image: np.ndarray
    depth: np.ndarray
    surface: np.ndarray


@dataclass
class _Room:
    camera_height: float
    ceiling: float  # y of the ceiling (camera at y = 0)
    back: float  # z of the back wall
    left: float  # x of the left wall (negative)
    right: float  # x of the right wall


def render_scene(seed: int, height: int, width: int, max_depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Render scene ``seed``: (image uint8 [H, W, 3], depth float32 [H, W] metres in (0, max_depth))."""
    out = render_scene_layers(seed, height, width, max_depth)
    return out.image, out.depth


def render_scene_layers(seed: int, height: int, width: int, max_depth: float) -> SceneRender:
    """Like :func:`render_scene`, also returning which surface each pixel sees."""
    if height < 1 or width < 1 or not max_depth > 0:
        raise ValueError(f"render_scene: need height, width >= 1 and max_depth > 0, got {height}, {width}, {max_depth}")
    rng = np.random.default_rng(seed)
    scale = max_depth / 10.0  # rooms are designed at max_depth = 10 m and scaled
    room = _Room(
        camera_height=scale * rng.uniform(1.0, 1.8),
        ceiling=scale * rng.uniform(0.8, 1.6),
        back=max_depth * rng.uniform(0.7, 0.92),
        left=-scale * rng.uniform(2.0, 4.0),
        right=scale * rng.uniform(2.0, 4.0),
    )
    dirs = _camera_rays(rng, height, width)
    depth, surface, normals = _intersect_room(dirs, room)
    spheres, boxes = _sample_objects(rng, room, scale)
    _intersect_objects(dirs, spheres, boxes, depth, surface, normals)
    points = dirs * depth[:, None]
    image = _shade(rng, points, normals, surface, depth, spheres, boxes, scale, max_depth)
    return SceneRender(
        image=image.reshape(height, width, 3),
        depth=depth.reshape(height, width).astype(np.float32),
        surface=surface.reshape(height, width).astype(np.int16),
    )


def _camera_rays(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """[H*W, 3] ray directions with z = 1, so the hit distance along a ray *is* planar depth.

    The principal point sits above the image centre: the camera looks slightly down
    without a rotation, which keeps depth == ray parameter.
    """
    focal = width / (2.0 * np.tan(np.deg2rad(rng.uniform(55.0, 75.0)) / 2.0))
    cx, cy = width * rng.uniform(0.45, 0.55), height * rng.uniform(0.25, 0.45)
    rows, cols = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    x, y = (cols.ravel() - cx) / focal, -(rows.ravel() - cy) / focal
    return np.stack([x, y, np.ones_like(x)], axis=1)


def _intersect_room(dirs: np.ndarray, room: _Room) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest room plane per ray: (depth [N], surface id [N], normal [N, 3])."""
    n = dirs.shape[0]
    # Each plane: (surface id, axis, coordinate, inward normal).
    planes = (
        (FLOOR, 1, -room.camera_height, (0.0, 1.0, 0.0)),
        (CEILING, 1, room.ceiling, (0.0, -1.0, 0.0)),
        (LEFT_WALL, 0, room.left, (1.0, 0.0, 0.0)),
        (RIGHT_WALL, 0, room.right, (-1.0, 0.0, 0.0)),
    )
    depth = np.full(n, room.back)
    surface = np.full(n, BACK_WALL, dtype=np.int64)
    normals = np.tile(np.array([0.0, 0.0, -1.0]), (n, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        for sid, axis, coord, normal in planes:
            t = coord / dirs[:, axis]
            hit = (t > 0) & (t < depth)
            depth[hit], surface[hit], normals[hit] = t[hit], sid, normal
    return depth, surface, normals


def _sample_objects(
    rng: np.random.Generator, room: _Room, scale: float
) -> tuple[list[tuple[np.ndarray, float]], list[tuple[np.ndarray, np.ndarray]]]:
    """2-5 objects on the floor, between 20% and 85% of the way to the back wall.

    Returns spheres [(centre [3], radius)] and boxes [(min corner [3], max corner [3])].
    """
    spheres, boxes = [], []
    floor = -room.camera_height
    for _ in range(int(rng.integers(2, 6))):
        size = scale * rng.uniform(0.3, 0.9)
        z = rng.uniform(0.2, 0.85) * room.back
        # Objects fan out with distance, as the view frustum does.
        x = rng.uniform(-0.6, 0.6) * min(z * 0.6, room.right - size, -room.left - size)
        if rng.random() < 0.5:
            spheres.append((np.array([x, floor + size, z]), size))
        else:
            tall = size * rng.uniform(0.8, 2.5)
            lo = np.array([x - size, floor, z - size])
            boxes.append((lo, lo + np.array([2 * size, min(tall, room.camera_height + room.ceiling), 2 * size])))
    return spheres, boxes


def _ray_spheres(
    origins: np.ndarray, dirs: np.ndarray, spheres: list[tuple[np.ndarray, float]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest sphere hit per ray: (t [N] (inf: none), sphere index [N] (-1: none), normal [N, 3])."""
    best = np.full(dirs.shape[0], np.inf)
    index = np.full(dirs.shape[0], -1)
    normals = np.zeros_like(dirs)
    a = np.einsum("ij,ij->i", dirs, dirs)
    for k, (centre, radius) in enumerate(spheres):
        oc = origins - centre
        b = np.einsum("ij,ij->i", oc, dirs)
        disc = b * b - a * (np.einsum("ij,ij->i", oc, oc) - radius * radius)
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        hit = (disc > 0) & (t > _EPS) & (t < best)
        best[hit], index[hit] = t[hit], k
        normals[hit] = (origins[hit] + t[hit, None] * dirs[hit] - centre) / radius
    return best, index, normals


def _ray_boxes(
    origins: np.ndarray, dirs: np.ndarray, boxes: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest axis-aligned box hit per ray (slab test): (t [N], box index [N], normal [N, 3])."""
    best = np.full(dirs.shape[0], np.inf)
    index = np.full(dirs.shape[0], -1)
    normals = np.zeros_like(dirs)
    rows = np.arange(dirs.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs
        for k, (lo, hi) in enumerate(boxes):
            t1, t2 = (lo - origins) * inv, (hi - origins) * inv
            near = np.fmin(t1, t2)
            t_near, t_far = np.nanmax(near, axis=1), np.nanmin(np.fmax(t1, t2), axis=1)
            hit = (t_near <= t_far) & (t_near > _EPS) & (t_near < best)
            best[hit], index[hit] = t_near[hit], k
            axis = np.nanargmax(np.where(np.isnan(near), -np.inf, near), axis=1)
            normal = np.zeros_like(dirs)
            normal[rows, axis] = -np.sign(dirs[rows, axis])
            normals[hit] = normal[hit]
    return best, index, normals


def _intersect_objects(
    dirs: np.ndarray,
    spheres: list[tuple[np.ndarray, float]],
    boxes: list[tuple[np.ndarray, np.ndarray]],
    depth: np.ndarray,
    surface: np.ndarray,
    normals: np.ndarray,
) -> None:
    """Let objects occlude the room: update depth, surface, normals in place where nearer."""
    origins = np.zeros_like(dirs)
    for offset, (t, index, normal) in (
        (0, _ray_spheres(origins, dirs, spheres)),
        (len(spheres), _ray_boxes(origins, dirs, boxes)),
    ):
        nearer = t < depth
        depth[nearer], normals[nearer] = t[nearer], normal[nearer]
        surface[nearer] = OBJECT_ID + offset + index[nearer]


def _albedo(rng: np.random.Generator, points: np.ndarray, surface: np.ndarray, scale: float) -> np.ndarray:
    """[N, 3] surface colour: checkered floor (world-fixed tiles), panelled walls, flat objects."""
    n_objects = 8
    palette = np.concatenate(
        [
            rng.uniform(0.35, 0.85, (1, 3)),  # floor
            rng.uniform(0.75, 0.95, (1, 3)),  # ceiling
            rng.uniform(0.4, 0.9, (3, 3)),  # back, left, right walls
            rng.uniform(0.05, 1.0, (n_objects, 3)),
        ]
    )
    colour = palette[np.minimum(surface, len(palette) - 1)]
    tile = 0.5 * scale
    checker = (np.floor(points[:, 0] / tile) + np.floor(points[:, 2] / tile)) % 2
    colour[surface == FLOOR] *= np.where(checker[surface == FLOOR] > 0, 1.0, 0.55)[:, None]
    # Wall panels: dark seams every metre along the wall.
    along = np.where(np.isin(surface, (LEFT_WALL, RIGHT_WALL)), points[:, 2], points[:, 0])
    seam = (np.abs((along / scale) % 1.0 - 0.5) > 0.47) & np.isin(surface, (BACK_WALL, LEFT_WALL, RIGHT_WALL))
    colour[seam] *= 0.6
    return colour


def _shade(
    rng: np.random.Generator,
    points: np.ndarray,
    normals: np.ndarray,
    surface: np.ndarray,
    depth: np.ndarray,
    spheres: list[tuple[np.ndarray, float]],
    boxes: list[tuple[np.ndarray, np.ndarray]],
    scale: float,
    max_depth: float,
) -> np.ndarray:
    """[N, 3] uint8: albedo x (ambient + Lambert with cast shadows), then haze and sensor noise."""
    albedo = _albedo(rng, points, surface, scale)
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(0.8, 1.5), rng.uniform(-0.8, -0.2)])
    light /= np.linalg.norm(light)
    lambert = np.clip(normals @ light, 0.0, None)
    origins = points + normals * (10 * _EPS * max(scale, 1.0))
    light_dirs = np.broadcast_to(light, points.shape)
    in_shadow = (_ray_spheres(origins, light_dirs, spheres)[0] < np.inf) | (
        _ray_boxes(origins, light_dirs, boxes)[0] < np.inf
    )
    shading = 0.35 + 0.65 * lambert * ~in_shadow
    colour = albedo * shading[:, None]
    haze = 0.35 * (depth / max_depth) ** 1.5
    colour = (1 - haze[:, None]) * colour + haze[:, None] * np.array([0.7, 0.75, 0.8])
    colour += rng.normal(0.0, 0.01, colour.shape)
    return (np.clip(colour, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
