"""Write the demo scanner's pages and film into assets/demo/ (small, committed).

Run from the repository root: ``.venv/bin/python assets/make_demo_assets.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from drivers.demo_devices import ASSETS, PAGE_COUNT, render_film, render_page  # noqa: E402

ASSETS.mkdir(parents=True, exist_ok=True)
for number in range(1, PAGE_COUNT + 1):
    render_page(number).save(ASSETS / f"page-{number}.png", optimize=True)
Image.fromarray(render_film()).save(ASSETS / "film.png", optimize=True)
print(f"wrote {PAGE_COUNT} pages and a film to {ASSETS}")
