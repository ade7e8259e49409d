"""The segmentation classes, importable without TensorFlow (config validation needs them).

Oxford-IIIT Pet trimaps store 1 = pet, 2 = background, 3 = border; class ids
are ``trimap - 1``. components.schema re-exports these with the record format.
"""

CLASS_NAMES: tuple[str, ...] = ("pet", "background", "border")
NUM_CLASSES: int = len(CLASS_NAMES)
# Raw trimap values in the source dataset, in class-id order.
TRIMAP_VALUES: tuple[int, ...] = (1, 2, 3)
TRIMAP_OFFSET: int = 1
