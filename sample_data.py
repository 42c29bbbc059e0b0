"""A seeded synthetic sample of raw Amazon metadata, so every notebook runs offline.

Records have the raw data's exact schema (the hub's raw_meta_<Category> fields) and its
untidiness: missing and malformed prices, short descriptions, part numbers, boilerplate
details. Prices are not random labels: they follow the text (category, product type, brand
tier, size, pack quantity, material) times log-normal noise, with a long right tail, so a
model has something real to learn.

>>> records = generate("Appliances", n=3, seed=42)
>>> sorted(records[0])[:4]
['average_rating', 'bought_together', 'categories', 'description']
"""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

from files import digest, written

CATEGORIES = [
    "Automotive", "Electronics", "Office_Products", "Tools_and_Home_Improvement",
    "Cell_Phones_and_Accessories", "Toys_and_Games", "Appliances", "Musical_Instruments",
]

# Per category: the store's main category name and (product type, typical price in $).
PRODUCTS: dict[str, tuple[str, list[tuple[str, float]]]] = {
    "Automotive": ("Automotive", [
        ("Wiper Blade Set", 18), ("Brake Pad Kit", 45), ("LED Headlight Bulbs", 35),
        ("Floor Mats", 60), ("Car Battery Charger", 70), ("Alternator", 160),
        ("Front Bumper Cover", 210), ("Catalytic Converter", 320), ("Tonneau Cover", 480),
        ("Alloy Wheel", 260), ("Oil Filter", 8), ("Valve Cover Gasket", 14)]),
    "Electronics": ("All Electronics", [
        ("HDMI Cable", 9), ("Wireless Mouse", 22), ("Bluetooth Speaker", 55),
        ("Noise Cancelling Headphones", 180), ("Portable SSD", 110), ("Webcam", 65),
        ("Smart TV", 520), ("Soundbar", 240), ("Action Camera", 290), ("USB Hub", 25),
        ("Projector", 420), ("Surge Protector", 28)]),
    "Office_Products": ("Office Products", [
        ("Gel Pens", 9), ("Sticky Notes", 7), ("Desk Organizer", 24), ("Label Maker", 40),
        ("Paper Shredder", 95), ("Office Chair", 210), ("Standing Desk", 380),
        ("Laser Printer", 260), ("Filing Cabinet", 170), ("Whiteboard", 55),
        ("Stapler", 14), ("Laminator", 45)]),
    "Tools_and_Home_Improvement": ("Tools & Home Improvement", [
        ("Screwdriver Set", 25), ("Cordless Drill", 110), ("Circular Saw", 140),
        ("Door Knob", 28), ("Ceiling Fan", 190), ("Tool Chest", 420), ("Air Compressor", 260),
        ("Faucet", 120), ("Smart Thermostat", 160), ("Work Light", 35), ("Tape Measure", 12),
        ("Pressure Washer", 330)]),
    "Cell_Phones_and_Accessories": ("Cell Phones & Accessories", [
        ("Phone Case", 12), ("Screen Protector", 8), ("Charging Cable", 10),
        ("Wireless Charger", 28), ("Power Bank", 35), ("Car Phone Mount", 20),
        ("Smartwatch", 190), ("Unlocked Smartphone", 420), ("Bluetooth Earbuds", 60),
        ("Rugged Tablet", 310), ("Phone Gimbal", 95), ("Ring Light", 30)]),
    "Toys_and_Games": ("Toys & Games", [
        ("Puzzle", 16), ("Board Game", 32), ("Action Figure", 22), ("Building Blocks Set", 55),
        ("Remote Control Car", 70), ("Dollhouse", 130), ("Ride-On Car", 260),
        ("Trampoline", 340), ("Plush Toy", 15), ("Chess Set", 45), ("Drone", 150),
        ("Play Kitchen", 120)]),
    "Appliances": ("Appliances", [
        ("Refrigerator Water Filter", 28), ("Dryer Vent Hose", 15), ("Dishwasher Rack Wheels", 11),
        ("Oven Heating Element", 38), ("Microwave Oven", 160), ("Ice Maker", 190),
        ("Dehumidifier", 230), ("Range Hood", 290), ("Chest Freezer", 340),
        ("Compact Dryer", 480), ("Washing Machine", 690), ("French Door Refrigerator", 950)]),
    "Musical_Instruments": ("Musical Instruments", [
        ("Guitar Strings", 9), ("Guitar Picks", 6), ("Instrument Cable", 18),
        ("Microphone Stand", 30), ("Guitar Pedal", 110), ("Studio Headphones", 120),
        ("Condenser Microphone", 150), ("Audio Interface", 180), ("Acoustic Guitar", 290),
        ("Digital Piano", 520), ("Electric Guitar", 640), ("Drum Kit", 780)]),
}

BRANDS = {  # tier: (price factor, brand names)
    "budget": (0.6, ["Valumax", "Ezyhome", "Basicor", "Simplo", "Tidyway"]),
    "mid": (1.0, ["Northline", "Crestwood", "Aldenpro", "Marlow", "Quintek"]),
    "premium": (1.7, ["Vanterra", "Sterling & Crane", "Helix Elite", "Obsidian Labs"]),
}
MATERIALS = {"Plastic": 0.8, "Aluminum": 1.1, "Stainless Steel": 1.3, "Wood": 1.15,
             "Brass": 1.4, "Carbon Fiber": 1.7}
SIZES = {"Compact": 0.75, "Standard": 1.0, "Large": 1.35, "XL": 1.7}
PACKS = [1, 1, 1, 1, 2, 3, 4, 6, 10]
COLORS = ["Black", "White", "Silver", "Red", "Blue", "Gray", "Oil Rubbed Bronze"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]

SENTENCES = [
    "This {product} from {brand} is built from {material} for years of dependable use.",
    "Designed for everyday use, the {size} {product} fits most homes, shops and offices.",
    "Every {product} is tested before it leaves the factory, so it works right out of the box.",
    "The {material} body resists rust, dents and scratches, and wipes clean in seconds.",
    "{brand} has made {category} products for over {years} years, trusted by professionals.",
    "Installation takes minutes with the included hardware and step by step instructions.",
    "A {size} design saves space while delivering the performance you expect.",
    "Backed by a {warranty}-year limited warranty and friendly customer support.",
    "Compared with generic alternatives, it runs quieter, lasts longer and looks better.",
    "Each pack contains {pack} {product} units, ready to use.",
]
FEATURES = [
    "PREMIUM {material_upper}: sturdy construction that holds up to daily wear",
    "{size_upper} SIZE: measures {dims} inches, weighs {weight} pounds",
    "EASY TO INSTALL: no special tools required, fits standard fittings",
    "WHAT YOU GET: {pack} x {product}, user manual, {warranty}-year warranty",
    "COMPATIBLE with most major brands; check the model number before ordering",
    "SAFETY FIRST: meets or exceeds industry standards and certifications",
    "GREAT GIFT for family, friends and coworkers",
]


def true_price(rng: random.Random, base: float, tier: str, size: str, material: str,
               pack: int) -> float:
    """The price a record's text implies, times log-normal noise (sigma 0.3)."""
    value = base * BRANDS[tier][0] * SIZES[size] * MATERIALS[material] * pack ** 0.6
    return round(value * math.exp(rng.gauss(0, 0.3)), 2)


def price_field(rng: random.Random, price: float) -> str | None:
    """The raw price string, missing or malformed about as often as in the real data."""
    roll = rng.random()
    if roll < 0.40:
        return rng.choice([None, "None", "None", ""])
    if roll < 0.42:
        return rng.choice([f"from {price:.2f}", f"{price:.2f} - {price * 1.3:.2f}",
                           "Currently unavailable", f"${price:.2f}+"])
    if roll < 0.50:
        return f"${price:,.2f}"
    return f"{price:.2f}"


def _part_number(rng: random.Random) -> str:
    letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTWXZ") for _ in range(2))
    return f"{letters}{rng.randint(10, 99)}X{rng.randint(1000, 99999)}"


def record(rng: random.Random, category: str) -> dict:
    """One raw metadata record of `category`, in the hub's raw_meta schema."""
    main_category, products = PRODUCTS[category]
    # Cheap products are far more common than dear ones, as on Amazon.
    product, base = rng.choices(products, weights=[b ** -0.8 for _, b in products])[0]
    tier = rng.choices(list(BRANDS), weights=[4, 4, 2])[0]
    brand = rng.choice(BRANDS[tier][1])
    material, size = rng.choice(list(MATERIALS)), rng.choice(list(SIZES))
    pack = rng.choice(PACKS) if base < 60 else 1
    price = true_price(rng, base, tier, size, material, pack)
    weight = round(0.25 * base ** 0.8 * SIZES[size] * pack * rng.uniform(0.8, 1.25), 1)
    fill = dict(product=product.lower(), brand=brand, material=material.lower(),
                size=size.lower(), category=main_category.lower(), pack=pack,
                years=rng.randint(5, 80), warranty=rng.choice([1, 2, 3, 5]),
                material_upper=material.upper(), size_upper=size.upper(), weight=weight,
                dims=" x ".join(str(rng.randint(2, 40)) for _ in range(3)))
    # A quarter of records are too short to price: one line of text and no features.
    n_sentences = rng.randint(1, 2) if rng.random() < 0.25 else rng.randint(4, 10)
    sentences = [s.format(**fill) for s in rng.sample(SENTENCES, n_sentences)]
    paragraphs = [" ".join(sentences[i:i + 3]) for i in range(0, len(sentences), 3)]
    features = ([f.format(**fill) for f in rng.sample(FEATURES, rng.randint(0, 6))]
                if n_sentences > 2 else [])
    title = f"{brand} {size} {material} {product}"
    if pack > 1:
        title += f" ({pack}-Pack)"
    title += rng.choice(["", f", {rng.choice(COLORS)}", f" {_part_number(rng)}"])
    rank = int(2_000_000 * rng.betavariate(0.7, 2.5)) + 1
    details = {
        "Brand": brand, "Material": material, "Color": rng.choice(COLORS),
        "Item Weight": f"{weight} pounds", "Product Dimensions": f"{fill['dims']} inches",
        "Manufacturer": brand, "Item model number": _part_number(rng),
        "Number of Items": str(pack),
        "Best Sellers Rank": {main_category: rank, product: max(1, rank // 40)},
        "Is Discontinued By Manufacturer": "No",
        "Batteries Required?": rng.choice(["No", "Yes"]),
        "Date First Available": f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, "
                                f"{rng.randint(2008, 2023)}",
    }
    return {
        "main_category": main_category, "title": title,
        "average_rating": round(rng.uniform(2.5, 5.0), 1),
        "rating_number": int(rng.paretovariate(1.2) * 3), "features": features,
        "description": paragraphs, "price": price_field(rng, price),
        "images": {"hi_res": [], "large": [], "thumb": [], "variant": []},
        "videos": {"title": [], "url": [], "user_id": []}, "store": brand,
        "categories": [main_category, product],
        "details": json.dumps(details if rng.random() > 0.1 else {}),
        "parent_asin": f"B0{rng.randint(0, 16**8 - 1):08X}", "bought_together": None,
    }


def generate(category: str, n: int = 3000, seed: int = 42) -> list[dict]:
    """`n` raw records of `category`; the same category, n and seed give the same records."""
    if category not in PRODUCTS:
        raise ValueError(f"unknown category {category!r}; the sample has {CATEGORIES}")
    rng = random.Random(f"{seed}-{category}")
    return [record(rng, category) for _ in range(n)]


def version() -> str:
    """A digest of this generator's code: a sample cached under it is never stale."""
    return digest(__file__)


def write(category: str, path: Path, n: int = 3000, seed: int = 42) -> Path:
    """Write the sample of `category` as gzipped JSON lines (atomically) and return `path`."""
    records = generate(category, n, seed)
    with written(path) as partial, open(partial, "wb") as raw, \
            gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as f:
        for rec in records:
            f.write((json.dumps(rec) + "\n").encode())
    return path
