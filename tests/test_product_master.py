"""The product master on the line: `udigate udid import`, then every scan checked against it and
verified records enriched with the insurance code."""

import subprocess
import sys
from datetime import date

import pytest

from gateway.config import ContentSection, JobSection, gtin_check_digit
from gateway.rules import check_content, product_findings
from gateway.udid import ProductMaster

from .udid_release import synthetic_device, write_full_release

GS = "\x1d"
TODAY = date(2026, 11, 23)
ANY_ORDER = JobSection(required_ais=())
ANYONE = ContentSection(issuers=("GS1", "MA"))


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    folder = tmp_path_factory.mktemp("udid")
    release = write_full_release(folder, 60)
    config = folder / "line.toml"
    config.write_text(f'[line]\ndata_dir = "{folder / "data"}"\n')
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "udid", "import", "--config", str(config), str(release)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "60 records, 60 added" in run.stdout
    products = ProductMaster(folder / "data" / "udigate.db")
    yield products
    products.close()


def findings(master, data, level="unit"):
    content = check_content(data, "]d2", ANY_ORDER, TODAY, ANYONE)
    product = master.lookup(content.di) if content.di else None
    return sorted(f.code for f in product_findings(content, product, level, TODAY))


def test_a_registered_code_with_the_declared_pi_passes(master):
    device = synthetic_device(6)  # GS1; declares lot, serial, production date and expiry
    assert (device.pi_lot, device.pi_serial, device.pi_production_date, device.pi_expiry) == (True,) * 4
    data = f"01{device.unit_di}11261101172811011010A{GS}21S1"
    assert findings(master, data) == []
    product = master.lookup(device.unit_di)
    assert product.name == device.name and product.ybbm == device.ybbm and product.package_level == "unit"


def test_unknown_withdrawn_mismatched_and_wrong_level(master):
    device = synthetic_device(6)
    assert findings(master, f"01{device.unit_di}17281101") == ["udid_pi_mismatch"]  # lot, serial, made missing
    unknown = "0699999999999" + str(gtin_check_digit("0699999999999"))
    assert findings(master, f"01{unknown}11261101172811011010A{GS}21S1") == ["udid_unknown_di"]
    withdrawn = synthetic_device(11)  # i % 50 == 11: withdrawn 700 days after publication
    assert withdrawn.withdrawn and withdrawn.coding_system == "GS1"
    codes = findings(master, f"01{withdrawn.unit_di}1728110110A{GS}21S1")
    assert "udid_withdrawn" in codes
    boxed = synthetic_device(2)  # has a box level
    box = boxed.packings[0]
    assert box.level == "盒"
    data = f"01{box.di}11261101172811011010A"
    assert "udid_wrong_level" in findings(master, data, level="unit")
    assert "udid_wrong_level" not in findings(master, data, level="盒")
