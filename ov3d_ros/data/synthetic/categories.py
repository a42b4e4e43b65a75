"""Object categories of the synthetic world (NYU40 / ScanNet style), their materials and the room types, as data.

The class index of a category is its position in :data:`CATEGORIES` (and :data:`CLASS_NAMES`); the first twenty are
the ScanNet benchmark classes in benchmark order. :data:`IGNORE_INDEX` (255) labels the ceiling and anything else
that is unlabelled.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

RGB = tuple[int, int, int]
Range = tuple[float, float]

IGNORE_INDEX = 255
HEAD_MIN_WEIGHT = 0.3     # frequency weight from which a category is "head"
COMMON_MIN_WEIGHT = 0.1   # ... and from which it is "common"; below it is "tail"


class Placement(str, Enum):
    """Where the layout puts an instance."""

    STRUCTURE = "structure"                    # walls and floor, built with the room
    IN_WALL = "in-wall"                        # the door: an opening in a wall plus a leaf
    FLOOR_AGAINST_WALL = "floor-against-wall"  # back against a wall, facing into the room
    FLOOR_FREE = "floor-free"                  # anywhere on the free floor
    ON_SURFACE = "on-surface"                  # base on the top surface of a supporting object
    ON_BED = "on-bed"                          # on a bed's mattress or a sofa's seat
    WALL_MOUNTED = "wall-mounted"              # back on a wall at a category-specific height


class Shape(str, Enum):
    """Which mesh builder of :mod:`.layout` makes an instance (simple, recognisably different silhouettes)."""

    STRUCTURE = "structure"
    BOX = "box"                    # plain box
    DOORS = "doors"                # box body with door panels and handles (cabinet, wardrobe, refrigerator)
    DRAWERS = "drawers"            # box body with rows of drawer fronts (dresser, nightstand)
    TABLE = "table"                # top on four legs
    DESK = "desk"                  # top on two panel sides, with a drawer pedestal
    COUNTER = "counter"            # base with toe kick under an overhanging worktop
    CHAIR = "chair"                # seat, back and four legs
    OFFICE_CHAIR = "office-chair"  # seat, back, post and a star base
    STOOL = "stool"                # round seat on four legs
    SOFA = "sofa"                  # base, seat cushion, back and arms
    BED = "bed"                    # frame, mattress and headboard
    SHELF = "shelf"                # side panels with boards (open back)
    BOOKSHELF = "bookshelf"        # side panels with boards and a back panel
    TUB = "tub"                    # open box: bottom and four rims
    SINK = "sink"                  # open basin on a pedestal
    TOILET = "toilet"              # round bowl with a tank at the back
    STOVE = "stove"                # box with burners and an oven door
    RADIATOR = "radiator"          # vertical fins on short feet
    CURTAIN = "curtain"            # wavy hanging sheet
    DOOR = "door"                  # leaf with a casing and a handle
    WINDOW = "window"              # pane in a frame with a sill
    FRAME = "frame"                # flat panel in a frame (picture, mirror)
    BOARD = "board"                # flat panel with a rim and a tray (whiteboard)
    SCREEN = "screen"              # thin panel with a bezel (tv)
    MONITOR = "monitor"            # panel on a neck and a foot
    LAPTOP = "laptop"              # base with an opened lid
    LAMP = "lamp"                  # foot, post and shade
    ROUND = "round"                # solid of revolution from the category's profile
    MUG = "mug"                    # round body with a handle
    PLANT = "plant"                # pot with foliage blobs
    SOFT = "soft"                  # squashed ellipsoid (pillow)
    BAG = "bag"                    # soft body with a handle
    BACKPACK = "backpack"          # soft body with a front pocket
    DISC = "disc"                  # flat round face on a wall (clock)
    APPLIANCE = "appliance"        # box with a door pane and a control panel (microwave)
    PRINTER = "printer"            # box with a top slot and an output tray
    BOOK = "book"                  # cover with a pages block


@dataclass(frozen=True)
class Material:
    """Surface texture and LiDAR response of a material.

    The texture multiplies the base colour by ``1 + sum_k a_k sin(f_k . x + phi_k)`` in world coordinates, with
    random frequency vectors of norm in ``frequency`` (cycles per metre) and amplitudes summing to ``amplitude``;
    ``stripes`` puts the first component along one axis at a higher frequency (wood grain, fabric weave).
    ``reflectivity`` in [0, 1] scales LiDAR intensity.
    """

    name: str
    frequency: Range
    amplitude: float
    stripes: bool
    reflectivity: float


MATERIALS: dict[str, Material] = {m.name: m for m in (
    Material("paint", (0.3, 2.0), 0.05, False, 0.6),
    Material("wood", (2.0, 8.0), 0.16, True, 0.45),
    Material("fabric", (2.0, 6.0), 0.12, True, 0.3),
    Material("leather", (2.0, 6.0), 0.08, False, 0.25),
    Material("metal", (0.5, 3.0), 0.06, False, 0.8),
    Material("plastic", (0.5, 3.0), 0.05, False, 0.5),
    Material("ceramic", (0.5, 2.0), 0.04, False, 0.7),
    Material("glass", (0.3, 1.5), 0.08, False, 0.15),
    Material("paper", (3.0, 10.0), 0.15, True, 0.55),
    Material("foliage", (8.0, 25.0), 0.25, False, 0.35),
    Material("carpet", (2.0, 6.0), 0.15, True, 0.3),
    Material("stone", (1.0, 6.0), 0.1, False, 0.5),
)}


@dataclass(frozen=True)
class Category:
    """One object category.

    ``size`` holds (width, depth, height) ranges in metres: width along the object's local x, depth along local y
    (its front faces +y), height up. ``weight`` is a relative frequency (head / common / tail, see :attr:`split`).
    ``palette`` lists base colours and ``accents`` colours of secondary parts (frame, legs, pot ...; empty means a
    darker shade of the base colour). ``supports`` names the categories an on-surface / on-bed instance may stand
    on; ``mount_height`` is the range of the bottom edge of a wall-mounted instance above the floor; ``profile`` is
    the (radius / half-width, height fraction) outline of a :attr:`Shape.ROUND` solid, bottom to top.
    """

    name: str
    synonyms: tuple[str, ...]
    weight: float
    size: tuple[Range, Range, Range]
    placement: Placement
    shape: Shape
    palette: tuple[RGB, ...]
    materials: tuple[str, ...]
    confused_with: tuple[str, ...] = ()
    supports: tuple[str, ...] = ()
    mount_height: Range = (0.0, 0.0)
    profile: tuple[tuple[float, float], ...] = ()
    accents: tuple[RGB, ...] = ()

    @property
    def split(self) -> str:
        """The frequency split by weight: "head", "common" or "tail"."""
        if self.weight >= HEAD_MIN_WEIGHT:
            return "head"
        return "common" if self.weight >= COMMON_MIN_WEIGHT else "tail"

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name followed by the synonyms."""
        return (self.name, *self.synonyms)


@dataclass(frozen=True)
class RoomType:
    """A kind of room: side-length range, anchor furniture (name, min count, max count) placed first, then extras
    drawn by category weight, then small on-surface things drawn from ``small``."""

    name: str
    side: Range
    anchors: tuple[tuple[str, int, int], ...]
    extras: tuple[str, ...]
    small: tuple[str, ...]


WOOD: tuple[RGB, ...] = ((150, 111, 51), (181, 136, 99), (120, 81, 45), (205, 170, 125), (94, 64, 38), (222, 196, 160))
NEUTRAL: tuple[RGB, ...] = ((236, 236, 232), (200, 200, 196), (128, 128, 128), (60, 60, 62), (30, 30, 32))
WHITE: tuple[RGB, ...] = ((245, 245, 242), (232, 232, 226), (250, 248, 240))
FABRIC: tuple[RGB, ...] = ((120, 130, 150), (90, 110, 80), (160, 70, 60), (200, 190, 170), (70, 80, 110),
                           (140, 120, 100), (180, 150, 170), (60, 60, 60))
BRIGHT: tuple[RGB, ...] = ((200, 40, 40), (40, 110, 200), (240, 200, 40), (40, 160, 80), (230, 120, 30), (140, 60, 160),
                           (240, 240, 240), (30, 30, 30))
METAL: tuple[RGB, ...] = ((180, 182, 186), (120, 122, 126), (70, 72, 76), (210, 210, 205))
DARK: tuple[RGB, ...] = ((25, 25, 28), (40, 40, 45), (55, 55, 60))
WALL_PAINT: tuple[RGB, ...] = ((235, 232, 222), (220, 215, 200), (200, 210, 215), (225, 210, 190), (210, 220, 205),
                               (240, 240, 240))
FLOORING: tuple[RGB, ...] = ((160, 120, 80), (130, 95, 60), (190, 160, 120), (110, 110, 110), (170, 165, 155))
GREEN: tuple[RGB, ...] = ((50, 110, 45), (70, 130, 60), (40, 90, 50), (90, 140, 70))
TERRACOTTA: tuple[RGB, ...] = ((170, 85, 55), (150, 100, 70), (235, 235, 230), (60, 60, 60))

SEAT_SUPPORTS = ("bed", "sofa", "armchair")
TABLETOPS = ("table", "desk", "coffee table", "counter", "dresser", "nightstand", "cabinet", "shelf", "bookshelf")


P, S = Placement, Shape
CATEGORIES: tuple[Category, ...] = (
    # --- the 20 ScanNet benchmark classes, in benchmark order ---
    Category("wall", ("partition", "wall surface"), 1.0, ((3.0, 8.0), (0.1, 0.2), (2.4, 3.0)), P.STRUCTURE,
              S.STRUCTURE, WALL_PAINT, ("paint",), confused_with=("door", "whiteboard", "picture")),
    Category("floor", ("ground", "flooring"), 1.0, ((3.0, 8.0), (3.0, 8.0), (0.05, 0.05)), P.STRUCTURE,
              S.STRUCTURE, FLOORING, ("wood", "stone", "carpet"), confused_with=("rug",)),
    Category("cabinet", ("cupboard", "storage cabinet", "file cabinet"), 0.7, ((0.5, 1.2), (0.35, 0.6), (0.7, 1.3)),
              P.FLOOR_AGAINST_WALL, S.DOORS, WOOD + WHITE + NEUTRAL[1:3], ("wood", "plastic"),
              confused_with=("dresser", "nightstand", "wardrobe", "counter"), accents=METAL),
    Category("bed", ("bunk", "double bed", "mattress"), 0.4, ((1.0, 1.8), (1.95, 2.2), (0.8, 1.2)),
              P.FLOOR_AGAINST_WALL, S.BED, WHITE + FABRIC[:5], ("fabric",), confused_with=("sofa",), accents=WOOD),
    Category("chair", ("seat", "dining chair", "side chair"), 1.0, ((0.4, 0.52), (0.42, 0.52), (0.8, 1.0)),
              P.FLOOR_FREE, S.CHAIR, WOOD + NEUTRAL + FABRIC[:3], ("wood", "plastic", "fabric"),
              confused_with=("office chair", "armchair", "stool", "sofa")),
    Category("sofa", ("couch", "settee", "loveseat"), 0.4, ((1.5, 2.4), (0.8, 1.0), (0.72, 0.92)),
              P.FLOOR_AGAINST_WALL, S.SOFA, FABRIC, ("fabric", "leather"), confused_with=("armchair", "chair", "bed")),
    Category("table", ("dining table", "kitchen table", "work table"), 0.7, ((0.8, 1.8), (0.7, 1.0), (0.7, 0.78)),
              P.FLOOR_FREE, S.TABLE, WOOD + WHITE[:1] + DARK[:1], ("wood", "stone"),
              confused_with=("desk", "coffee table", "counter")),
    Category("door", ("doorway", "entrance", "entry door"), 0.6, ((0.8, 1.0), (0.04, 0.05), (2.0, 2.1)),
              P.IN_WALL, S.DOOR, WOOD + WHITE, ("wood", "paint"), confused_with=("wall", "wardrobe"), accents=WHITE),
    Category("window", ("windowpane", "glass window", "casement"), 0.55, ((0.6, 1.6), (0.06, 0.1), (0.8, 1.4)),
              P.WALL_MOUNTED, S.WINDOW, ((170, 195, 215), (150, 180, 200), (185, 205, 220)), ("glass",),
              confused_with=("picture", "mirror", "tv"), mount_height=(0.75, 1.05), accents=WHITE + METAL[:2]),
    Category("bookshelf", ("bookcase", "book shelf", "library shelf"), 0.3, ((0.6, 1.2), (0.28, 0.4), (1.2, 2.0)),
              P.FLOOR_AGAINST_WALL, S.BOOKSHELF, WOOD + WHITE[:1] + DARK[:1], ("wood",),
              confused_with=("shelf", "cabinet")),
    Category("picture", ("painting", "photo", "framed picture", "poster"), 0.5, ((0.3, 1.0), (0.02, 0.04),
              (0.3, 0.8)), P.WALL_MOUNTED, S.FRAME, BRIGHT + FABRIC, ("paper",),
              confused_with=("mirror", "whiteboard", "tv", "window"), mount_height=(1.1, 1.5), accents=WOOD + DARK),
    Category("counter", ("countertop", "kitchen counter", "worktop"), 0.25, ((1.2, 2.4), (0.6, 0.66), (0.88, 0.95)),
              P.FLOOR_AGAINST_WALL, S.COUNTER, ((220, 215, 205), (90, 90, 95), (180, 170, 150), (40, 40, 42)),
              ("stone",), confused_with=("table", "desk", "cabinet"), accents=WOOD + WHITE),
    Category("desk", ("writing desk", "work desk", "computer desk"), 0.45, ((1.0, 1.6), (0.6, 0.8), (0.72, 0.76)),
              P.FLOOR_AGAINST_WALL, S.DESK, WOOD + WHITE[:1] + NEUTRAL[2:4], ("wood", "plastic"),
              confused_with=("table", "counter")),
    Category("curtain", ("drape", "drapery", "window curtain"), 0.3, ((0.4, 0.8), (0.08, 0.14), (1.6, 2.2)),
              P.WALL_MOUNTED, S.CURTAIN, FABRIC + WHITE[:1], ("fabric",), confused_with=("shower curtain",),
              mount_height=(0.02, 0.1)),
    Category("refrigerator", ("fridge", "freezer", "icebox"), 0.15, ((0.6, 0.9), (0.65, 0.75), (1.5, 1.9)),
              P.FLOOR_AGAINST_WALL, S.DOORS, WHITE + METAL[:2], ("metal",), confused_with=("cabinet", "wardrobe"),
              accents=METAL),
    Category("shower curtain", ("shower drape", "bath curtain"), 0.05, ((0.5, 0.9), (0.06, 0.1), (1.6, 1.9)),
              P.WALL_MOUNTED, S.CURTAIN, WHITE + ((170, 200, 220), (200, 220, 200)), ("plastic",),
              confused_with=("curtain",), mount_height=(0.2, 0.3)),
    Category("toilet", ("lavatory", "commode", "water closet"), 0.15, ((0.36, 0.42), (0.62, 0.72), (0.7, 0.8)),
              P.FLOOR_AGAINST_WALL, S.TOILET, WHITE, ("ceramic",), confused_with=("sink", "trash can")),
    Category("sink", ("washbasin", "basin", "wash basin"), 0.2, ((0.45, 0.65), (0.4, 0.5), (0.8, 0.9)),
              P.FLOOR_AGAINST_WALL, S.SINK, WHITE, ("ceramic",), confused_with=("bathtub", "toilet", "counter")),
    Category("bathtub", ("bath", "tub", "bathing tub"), 0.08, ((1.5, 1.8), (0.7, 0.8), (0.5, 0.6)),
              P.FLOOR_AGAINST_WALL, S.TUB, WHITE, ("ceramic",), confused_with=("sink",)),
    Category("otherfurniture", ("piece of furniture", "furnishing", "ottoman"), 0.2,
              ((0.5, 1.0), (0.4, 0.6), (0.38, 0.48)), P.FLOOR_FREE, S.BOX, FABRIC + WOOD[:2], ("fabric", "leather"),
              confused_with=("box", "coffee table", "stool")),
    # --- more NYU40 / ScanNet200 classes: small, rare and fine-grained things ---
    Category("lamp", ("table lamp", "desk lamp", "light"), 0.35, ((0.2, 0.35), (0.2, 0.35), (0.3, 0.6)),
              P.ON_SURFACE, S.LAMP, WHITE + ((235, 220, 180), (200, 180, 150)), ("fabric",),
              confused_with=("vase", "bottle"), supports=("nightstand", "desk", "dresser", "table", "cabinet"),
              accents=METAL + WOOD[:2]),
    Category("pillow", ("cushion", "throw pillow", "bed pillow"), 0.4, ((0.4, 0.65), (0.3, 0.45), (0.1, 0.18)),
              P.ON_BED, S.SOFT, WHITE + FABRIC, ("fabric",), confused_with=("bag",), supports=SEAT_SUPPORTS),
    Category("box", ("cardboard box", "carton", "storage box"), 0.4, ((0.3, 0.6), (0.25, 0.5), (0.2, 0.5)),
              P.FLOOR_FREE, S.BOX, ((190, 150, 100), (170, 130, 85), (210, 180, 130), (240, 240, 235)), ("paper",),
              confused_with=("otherfurniture", "printer", "microwave")),
    Category("bag", ("handbag", "tote bag", "shopping bag"), 0.15, ((0.3, 0.5), (0.15, 0.3), (0.25, 0.45)),
              P.FLOOR_FREE, S.BAG, FABRIC + BRIGHT[:3], ("fabric", "leather"), confused_with=("backpack", "pillow"),
              accents=DARK + ((140, 100, 60),)),
    Category("book", ("novel", "textbook", "paperback"), 0.3, ((0.14, 0.24), (0.2, 0.3), (0.02, 0.05)),
              P.ON_SURFACE, S.BOOK, BRIGHT + FABRIC, ("paper",), confused_with=("box", "laptop"),
              supports=("bookshelf", "shelf", "desk", "table", "nightstand", "coffee table", "dresser"),
              accents=((245, 242, 230),)),
    Category("monitor", ("screen", "display", "computer monitor"), 0.3, ((0.45, 0.7), (0.15, 0.22), (0.35, 0.55)),
              P.ON_SURFACE, S.MONITOR, DARK, ("plastic",), confused_with=("tv", "laptop", "picture"),
              supports=("desk", "table"), accents=DARK + METAL[1:3]),
    Category("keyboard", ("computer keyboard", "keypad", "typing keyboard"), 0.2,
              ((0.35, 0.45), (0.12, 0.16), (0.02, 0.035)), P.ON_SURFACE, S.BOX, DARK + WHITE[:1], ("plastic",),
              confused_with=("laptop", "book"), supports=("desk", "table")),
    Category("plant", ("potted plant", "houseplant", "flower pot"), 0.2, ((0.3, 0.6), (0.3, 0.6), (0.4, 1.2)),
              P.FLOOR_FREE, S.PLANT, GREEN, ("foliage",), confused_with=("vase", "trash can"), accents=TERRACOTTA),
    Category("mug", ("cup", "coffee mug", "coffee cup"), 0.1, ((0.08, 0.1), (0.08, 0.1), (0.09, 0.12)),
              P.ON_SURFACE, S.MUG, BRIGHT + WHITE, ("ceramic",), confused_with=("bowl", "bottle", "vase"),
              supports=TABLETOPS[:6]),
    Category("bottle", ("water bottle", "flask", "drink bottle"), 0.15, ((0.06, 0.09), (0.06, 0.09), (0.2, 0.32)),
              P.ON_SURFACE, S.ROUND, ((40, 120, 60), (60, 90, 160), (230, 230, 230), (120, 60, 30)),
              ("glass", "plastic"), confused_with=("vase", "mug"), supports=TABLETOPS,
              profile=((1.0, 0.0), (1.0, 0.62), (0.45, 0.78), (0.35, 0.84), (0.35, 1.0))),
    Category("towel", ("bath towel", "hand towel", "washcloth"), 0.1, ((0.3, 0.6), (0.02, 0.04), (0.4, 0.7)),
              P.WALL_MOUNTED, S.BOX, WHITE + FABRIC[:4], ("fabric",), confused_with=("curtain", "pillow"),
              mount_height=(0.8, 1.2)),
    Category("dresser", ("chest of drawers", "bureau", "drawer chest"), 0.15, ((0.8, 1.6), (0.45, 0.55),
              (0.75, 1.1)), P.FLOOR_AGAINST_WALL, S.DRAWERS, WOOD + WHITE[:2], ("wood",),
              confused_with=("cabinet", "nightstand"), accents=METAL),
    Category("nightstand", ("bedside table", "night table", "end table"), 0.2, ((0.4, 0.55), (0.35, 0.45),
              (0.45, 0.65)), P.FLOOR_AGAINST_WALL, S.DRAWERS, WOOD + WHITE[:2], ("wood",),
              confused_with=("cabinet", "dresser", "table"), accents=METAL),
    Category("tv", ("television", "tv screen", "flat screen"), 0.15, ((0.9, 1.4), (0.05, 0.08), (0.55, 0.85)),
              P.WALL_MOUNTED, S.SCREEN, DARK, ("plastic", "glass"), confused_with=("monitor", "picture", "window"),
              mount_height=(0.9, 1.3), accents=DARK),
    Category("whiteboard", ("dry-erase board", "marker board", "white board"), 0.08,
              ((1.2, 2.0), (0.02, 0.04), (0.9, 1.2)), P.WALL_MOUNTED, S.BOARD, ((250, 250, 250), (240, 242, 245)),
              ("plastic",), confused_with=("picture", "wall", "mirror"), mount_height=(0.8, 1.0), accents=METAL),
    Category("trash can", ("garbage bin", "wastebasket", "dustbin"), 0.3, ((0.25, 0.38), (0.25, 0.38), (0.3, 0.6)),
              P.FLOOR_FREE, S.ROUND, METAL + DARK + ((40, 90, 160),), ("metal", "plastic"),
              confused_with=("plant", "box", "vase"), profile=((0.82, 0.0), (1.0, 0.96), (1.0, 1.0))),
    Category("shelf", ("shelves", "shelving unit", "rack"), 0.25, ((0.6, 1.4), (0.25, 0.4), (0.6, 1.2)),
              P.FLOOR_AGAINST_WALL, S.SHELF, WOOD + METAL[:1] + WHITE[:1], ("wood", "metal"),
              confused_with=("bookshelf", "cabinet")),
    Category("mirror", ("looking glass", "wall mirror", "vanity mirror"), 0.08, ((0.4, 0.9), (0.02, 0.04),
              (0.6, 1.1)), P.WALL_MOUNTED, S.FRAME, ((205, 215, 222), (190, 200, 210)), ("glass",),
              confused_with=("picture", "window"), mount_height=(0.95, 1.3), accents=METAL + WOOD[:2]),
    Category("laptop", ("notebook computer", "notebook", "laptop computer"), 0.08,
              ((0.3, 0.38), (0.22, 0.26), (0.2, 0.25)), P.ON_SURFACE, S.LAPTOP, METAL + DARK[:1], ("metal",),
              confused_with=("monitor", "keyboard", "book"), supports=("desk", "table", "coffee table"),
              accents=DARK),
    Category("backpack", ("rucksack", "knapsack", "school bag"), 0.08, ((0.28, 0.36), (0.18, 0.25), (0.4, 0.5)),
              P.FLOOR_FREE, S.BACKPACK, BRIGHT + FABRIC[:4], ("fabric",), confused_with=("bag", "pillow")),
    Category("clock", ("wall clock", "timepiece"), 0.04, ((0.25, 0.4), (0.03, 0.05), (0.25, 0.4)),
              P.WALL_MOUNTED, S.DISC, WHITE + DARK[:1] + WOOD[:1], ("plastic",), confused_with=("picture", "mirror"),
              mount_height=(1.7, 2.0), accents=DARK),
    Category("rug", ("carpet", "mat", "area rug"), 0.08, ((1.2, 2.4), (0.8, 1.6), (0.01, 0.015)), P.FLOOR_FREE,
              S.BOX, FABRIC + ((150, 40, 40), (40, 60, 120)), ("carpet",), confused_with=("floor", "towel")),
    Category("radiator", ("heater", "heating radiator", "space heater"), 0.1, ((0.6, 1.2), (0.08, 0.12),
              (0.5, 0.7)), P.FLOOR_AGAINST_WALL, S.RADIATOR, WHITE, ("metal",), confused_with=("cabinet", "shelf")),
    Category("stool", ("bar stool", "footstool", "step stool"), 0.06, ((0.3, 0.4), (0.3, 0.4), (0.45, 0.75)),
              P.FLOOR_FREE, S.STOOL, WOOD + METAL[:2], ("wood", "metal"), confused_with=("chair", "otherfurniture")),
    Category("coffee table", ("cocktail table", "low table", "tea table"), 0.15, ((0.8, 1.2), (0.5, 0.7),
              (0.35, 0.48)), P.FLOOR_FREE, S.TABLE, WOOD + DARK[:1] + WHITE[:1], ("wood", "glass"),
              confused_with=("table", "otherfurniture", "nightstand")),
    Category("armchair", ("easy chair", "lounge chair", "recliner"), 0.12, ((0.75, 0.95), (0.75, 0.9),
              (0.75, 0.95)), P.FLOOR_FREE, S.SOFA, FABRIC, ("fabric", "leather"), confused_with=("sofa", "chair")),
    Category("office chair", ("desk chair", "swivel chair", "computer chair"), 0.25, ((0.55, 0.65), (0.55, 0.65),
              (0.9, 1.15)), P.FLOOR_FREE, S.OFFICE_CHAIR, DARK + FABRIC[:2], ("fabric", "plastic"),
              confused_with=("chair", "armchair"), accents=METAL[1:] + DARK),
    Category("microwave", ("microwave oven", "oven", "microwave cooker"), 0.06, ((0.45, 0.55), (0.35, 0.4),
              (0.26, 0.32)), P.ON_SURFACE, S.APPLIANCE, WHITE + METAL + DARK[:1], ("metal",),
              confused_with=("printer", "box", "tv"), supports=("counter", "cabinet", "table"), accents=DARK),
    Category("stove", ("cooker", "range", "cooktop"), 0.05, ((0.6, 0.76), (0.6, 0.65), (0.88, 0.92)),
              P.FLOOR_AGAINST_WALL, S.STOVE, WHITE + METAL[:2], ("metal",), confused_with=("counter", "cabinet"),
              accents=DARK),
    Category("printer", ("copier", "laser printer", "inkjet printer"), 0.05, ((0.4, 0.5), (0.3, 0.4),
              (0.15, 0.25)), P.ON_SURFACE, S.PRINTER, WHITE + NEUTRAL[1:4], ("plastic",),
              confused_with=("microwave", "box"), supports=("desk", "table", "cabinet", "shelf"), accents=DARK),
    Category("vase", ("flower vase", "urn", "jar"), 0.04, ((0.1, 0.18), (0.1, 0.18), (0.2, 0.35)), P.ON_SURFACE,
              S.ROUND, BRIGHT[:6] + WHITE[:1] + ((90, 140, 160),), ("ceramic", "glass"),
              confused_with=("bottle", "mug", "plant"), supports=TABLETOPS,
              profile=((0.6, 0.0), (1.0, 0.35), (0.75, 0.7), (0.45, 0.85), (0.6, 1.0))),
    Category("bowl", ("dish", "basin bowl", "salad bowl"), 0.04, ((0.14, 0.22), (0.14, 0.22), (0.06, 0.09)),
              P.ON_SURFACE, S.ROUND, BRIGHT[:6] + WHITE[:2], ("ceramic",), confused_with=("mug", "sink"),
              supports=TABLETOPS[:6], profile=((0.5, 0.0), (0.8, 0.35), (1.0, 1.0))),
    Category("wardrobe", ("closet", "armoire", "clothes cabinet"), 0.06, ((0.9, 1.6), (0.55, 0.65), (1.8, 2.2)),
              P.FLOOR_AGAINST_WALL, S.DOORS, WOOD + WHITE[:2], ("wood",),
              confused_with=("cabinet", "refrigerator", "door"), accents=METAL),
)
del P, S

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)
SCANNET20: tuple[str, ...] = CLASS_NAMES[:20]
_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}


def label_entries() -> list[str]:
    """Every category as a vocabulary entry, 'name: synonym, synonym' (`language.vocabulary` parses them)."""
    return [f"{c.name}: {', '.join(c.synonyms)}" for c in CATEGORIES]


def class_index(name: str) -> int:
    """The class index (label value) of a canonical category name; raises KeyError for unknown names."""
    return _INDEX[name]


def category(name: str) -> Category:
    """The :class:`Category` of a canonical name."""
    return CATEGORIES[_INDEX[name]]


ROOM_TYPES: dict[str, RoomType] = {r.name: r for r in (
    RoomType("bedroom", (3.0, 5.5),
             anchors=(("bed", 1, 1), ("dresser", 0, 1), ("wardrobe", 0, 1), ("desk", 0, 1), ("picture", 1, 3)),
             extras=("chair", "cabinet", "shelf", "bookshelf", "armchair", "plant", "backpack", "bag", "box",
                     "mirror", "clock", "trash can", "tv", "rug", "radiator", "otherfurniture"),
             small=("lamp", "book", "laptop", "mug", "bottle", "vase", "bowl")),
    RoomType("office", (4.0, 8.0),
             anchors=(("desk", 1, 3), ("bookshelf", 0, 2), ("cabinet", 1, 2), ("whiteboard", 0, 1),
                      ("trash can", 1, 2)),
             extras=("chair", "table", "shelf", "plant", "box", "backpack", "bag", "picture", "clock", "radiator",
                     "otherfurniture", "sofa", "rug"),
             small=("book", "mug", "bottle", "lamp", "laptop", "printer", "keyboard", "monitor", "bowl", "vase")),
    RoomType("living room", (4.0, 8.0),
             anchors=(("sofa", 1, 1), ("armchair", 0, 2), ("picture", 1, 3), ("tv", 0, 1), ("table", 0, 1)),
             extras=("bookshelf", "shelf", "cabinet", "rug", "plant", "lamp", "clock", "otherfurniture", "chair",
                     "trash can", "radiator", "box", "bag", "mirror", "dresser"),
             small=("book", "vase", "bowl", "mug", "bottle", "lamp", "laptop")),
    RoomType("kitchen", (3.0, 6.0),
             anchors=(("counter", 1, 3), ("refrigerator", 1, 1), ("stove", 0, 1), ("cabinet", 1, 3),
                      ("table", 1, 1)),
             extras=("stool", "trash can", "plant", "clock", "picture", "shelf", "sink", "radiator", "box", "chair",
                     "bag"),
             small=("microwave", "bottle", "bowl", "mug", "vase", "book")),
    RoomType("bathroom", (3.0, 4.5),
             anchors=(("toilet", 1, 1), ("sink", 1, 2), ("bathtub", 0, 1), ("towel", 1, 2), ("shelf", 1, 1),
                      ("trash can", 1, 1)),
             extras=("cabinet", "rug", "plant", "radiator", "mirror", "picture", "box", "clock", "counter"),
             small=("bottle", "vase", "bowl", "mug", "book")),
)}
