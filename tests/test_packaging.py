"""The built wheel behaves like the checkout: installed into a fresh virtual environment, run from elsewhere."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("avila_edge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("avila_edge/py.typed", "avila_edge/cli.py", "drivers/modbus/driver.py", "hil/demo-site.yaml"):
        assert required in names, required
    assert not any(n.startswith(("tests/", "bench/", "scripts/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "avila-edge = avila_edge.cli:main" in text
    assert "modbus = drivers.modbus:plugin" in text

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False, system_site_packages=False)
    python = env_dir / "bin" / "python"
    # the project comes only from the wheel, installed by pip (which writes the console script from the
    # wheel's own entry points); its dependencies come from this interpreter's site-packages (no network)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        timeout=120,
    )
    site = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"], check=True, capture_output=True, text=True
    ).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "zz-deps.pth").write_text("\n".join(deps) + "\n")
    console = env_dir / "bin" / "avila-edge"
    assert console.is_file(), "pip did not write the console script from the wheel's entry points"

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONNOUSERSITE": "1"}
    probe = (
        "import avila_edge; from avila_edge.driver.registry import load_plugins; "
        "plugins = load_plugins(); print(avila_edge.__file__); "
        "print(*sorted(plugins)); print(*sorted({p.create.__module__ for p in plugins.values()}))"
    )
    where = subprocess.run(
        [str(python), "-c", probe], cwd=outside, env=env, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert where[0].startswith(site), "the installed copy must not be the checkout"
    assert {"modbus", "mqtt"} <= set(where[1].split())
    for module in where[2].split():
        spec = subprocess.run(
            [str(python), "-c", f"import {module}; print({module}.__file__)"],
            cwd=outside, env=env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        assert spec.startswith(site), (module, spec)
    version = subprocess.run(
        [str(console), "--version"], cwd=outside, env=env, capture_output=True, text=True, check=False
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("avila-edge ")
    ok = subprocess.run(
        [str(console), "config", "check", str(ROOT / "configs" / "example-site.yaml")],
        cwd=outside, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    bad = outside / "bad.yaml"
    bad.write_text("site: {id: x}\ndevices:\n  - {id: d, driver: modbus, connection: {host: h, prot: 1}, points: []}\n")
    refused = subprocess.run(
        [str(console), "config", "check", str(bad)], cwd=outside, env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"{bad}:3: devices[0].connection.prot: unknown key")
