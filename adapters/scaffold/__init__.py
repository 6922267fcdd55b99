"""``exchange adapters new NAME``: scaffold an adapter package (docs/adapters.md, "Tutorial").

Creates ``DIR/NAME/`` with a pyproject declaring the ``exchange.adapters`` entry point,
a package holding the adapter class (reading a CSV file with line numbers) and a
mapping module of plain functions, a sample input file and tests that pass as
generated. Templates are in ``adapters/scaffold/templates`` (``string.Template``).
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).parent / "templates"
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

#: template file -> path in the new project ($package is replaced)
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "package_init.py.tmpl": "$package/__init__.py",
    "adapter.py.tmpl": "$package/adapter.py",
    "mapping.py.tmpl": "$package/mapping.py",
    "sample.csv.tmpl": "sample/people.csv",
    "test_mapping.py.tmpl": "tests/test_${package}_mapping.py",
}


def names(name: str) -> dict[str, str]:
    if not NAME_RE.match(name):
        raise ValueError(f"adapter name {name!r}: use lower-case letters, digits and single dashes, e.g. care-home")
    package = "exchange_adapter_" + name.replace("-", "_")
    classname = "".join(part.capitalize() for part in name.split("-")) + "Adapter"
    return {"name": name, "package": package, "classname": classname, "project": f"exchange-adapter-{name}"}


def create(name: str, directory: Path) -> Path:
    """Write the new adapter project; returns its folder. Refuses to overwrite."""
    values = names(name)
    root = Path(directory) / values["project"]
    if root.exists():
        raise FileExistsError(f"{root} already exists")
    for template, target in LAYOUT.items():
        path = root / Template(target).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = Template((TEMPLATES / template).read_text(encoding="utf-8")).substitute(values)
        path.write_text(text, encoding="utf-8")
    return root
