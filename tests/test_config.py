import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.config import Config, ConfigError, dump_config, load_config, override, parse_config

from .conftest import REPO

UDIGATE = [sys.executable, "-m", "gateway.cli"]


def model_keys(model: type[BaseModel] = Config, prefix: str = "") -> set[str]:
    """Dotted paths of every option of the configuration model."""
    keys = set()
    for name, field in model.model_fields.items():
        nested = [
            a
            for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if nested:
            keys |= model_keys(nested[0], f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def file_keys(table: dict, prefix: str = "") -> set[str]:
    """Dotted paths in a TOML table; tables are sections except where the option itself is a
    table (such as grading.min_parameters)."""
    keys = set()
    for name, value in table.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):  # [[array.of.tables]]
            value = value[0]
        if isinstance(value, dict) and prefix + name not in model_keys():
            keys |= file_keys(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_shipped_configs_are_valid():
    for name in ("demo.toml", "line-example.toml"):
        load_config(REPO / "config" / name)


def test_line_example_documents_every_option(tmp_path):
    text = (REPO / "config" / "line-example.toml").read_text()
    # Options without a default are shown commented out; uncommented they must be valid too
    # (the files they name must exist: certificates, the password and users files, made here).
    uncommented = re.sub(r"^# (\[|[a-z_]+ = )", r"\1", text, flags=re.M)
    for path in re.findall(r'^(?:ca|cert|key|password|users)_file = "([^"]+)"', uncommented, flags=re.M):
        uncommented = uncommented.replace(f'"{path}"', f'"{tmp_path / Path(path).name}"')
        (tmp_path / Path(path).name).write_text("[[users]]\n" if path.endswith(".toml") else "x\n")
    uncommented = uncommented.replace('username = ""', 'username = "line1"', 1)  # password_file needs one
    raw = tomllib.loads(uncommented)
    parse_config(uncommented)
    assert file_keys(raw) == model_keys()


def test_demo_matches_defaults_except_what_it_sets():
    demo = load_config(REPO / "config" / "demo.toml")
    assert demo.source.simulator.rate_ppm == 300
    assert demo.plc.simulator.enabled and demo.mqtt.host == ""
    assert demo.vision == Config().vision


def test_problems_name_key_value_and_expected_form():
    with pytest.raises(ConfigError) as raised:
        parse_config(
            """
            [line]
            site = "line one"
            [job]
            gtin = "06901234567893"
            [source.simulator]
            rate_ppm = -5
            [mqtt]
            port = "x"
            bogus = 1
            """
        )
    problems = "\n".join(raised.value.problems)
    assert "line.site = 'line one': expected a name of letters, digits" in problems
    assert (
        "job.gtin = '06901234567893': expected a GTIN-14 with a valid check digit (the last digit would be 2)"
        in problems
    )
    assert "source.simulator.rate_ppm = -5: expected greater than or equal to 0" in problems
    assert "mqtt.port = 'x': expected a valid integer" in problems
    assert "mqtt.bogus: unknown key; expected one of: client_id, counters_interval_s" in problems
    assert len(raised.value.problems) == 5


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "[source]\nkind = 'folder'\n",
            'source: expected a [source.folder] table with path = "..." when kind = "folder"',
        ),
        (
            "[source.simulator.defects]\nno_code = 0.7\nexpired = 0.6\n",
            "source.simulator.defects: expected shares that add up to at most 1 (they add up to 1.3)",
        ),
        ("[vision]\nroi = [1, 2]\n", "vision.roi = [1, 2]: expected [x, y, width, height]"),
        (
            "[mqtt]\ntopic_root = 'a/{plant}'\n",
            "mqtt.topic_root = 'a/{plant}': expected a topic that uses no fields but {enterprise} {site} {area} {line}",
        ),
        ("[job]\nrequired_ais = ['1']\n", "job.required_ais.0 = '1': expected a GS1 application identifier"),
        ("[job]\nlot = 'A B'\n", "job.lot = 'A B': expected 1 to 20 characters of GS1 CSET 82"),
        ("[line\n", "not valid TOML"),
        (
            "[grading]\nmin_parameters = { SX = 2.0 }\n",
            "grading.min_parameters: expected parameter names from AN, CC, CM, Decode, FPD, GN, MOD, MR,"
            " PG, RM, SC, UEC (not 'SX')",
        ),
        (
            "[grading]\nmethod = 'dpm'\nmin_parameters = { SC = 2.0 }\n",
            "grading: expected min_parameters of parameters that method 'dpm' grades: Decode, CC, CM, MR, FPD, AN,"
            " GN, UEC (not SC)",
        ),
        ("[grading]\nmethod = '2015'\n", "grading.method = '2015': expected '2011', '2024' or 'dpm'"),
        (
            "[grading]\nfpd_damage = [0.2, 0.1, 0.3, 0.4]\n",
            "grading.fpd_damage = [0.2, 0.1, 0.3, 0.4]: expected 4 limits for grades A, B, C, D, from 0 upwards",
        ),
        (
            "[vision]\ndecoder = 'zxing'\n[grading]\nenabled = true\n",
            'expected grading.enabled = true only with vision.decoder = "udigate"',
        ),
        (
            "[plc.modbus]\nmode = 'client'\n",
            'plc.modbus: expected host = the PLC\'s address (e.g. "192.168.0.10") when mode = "client", '
            "not '0.0.0.0'",
        ),
        ("[plc.modbus]\ntransport = 'rtu'\n", 'plc.modbus: expected a serial_port = "/dev/ttyUSB0" (or similar)'),
        ("[plc.modbus]\nparity = 'X'\n", "plc.modbus.parity = 'X': expected 'N', 'E' or 'O'"),
        ("[plc.modbus]\nbaudrate = 12345\n", "plc.modbus.baudrate = 12345: expected 1200, 2400, 4800, 9600, 19200"),
        ("[plc]\non_heartbeat_lost = 'panic'\n", "plc.on_heartbeat_lost = 'panic': expected 'alarm', 'reject_all'"),
        (
            "[source]\ntrigger = 'plc'\n[plc.modbus]\nenabled = false\n",
            'expected plc.modbus.enabled = true when source.trigger = "plc"',
        ),
        (
            "[plc.modbus]\ntransport = 'rtu'\nserial_port = '/dev/ttyUSB0'\n[plc.simulator]\nenabled = true\n",
            'expected plc.simulator.enabled = false with plc.modbus.transport = "rtu"',
        ),
        (
            "[plc.simulator]\npitch_mm = [60, 40]\n",
            "plc.simulator.pitch_mm = [60, 40]: expected [min, max] spacing in mm with 0 < min <= max",
        ),
    ],
)
def test_each_problem_is_reported_precisely(text, expected):
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    assert any(expected in p for p in raised.value.problems), raised.value.problems


def test_resolved_config_round_trips():
    config = load_config(REPO / "config" / "line-example.toml")
    assert parse_config(dump_config(config)) == config


def test_override_validates_like_a_file():
    config = override(Config(), **{"source.simulator.rate_ppm": 600})
    assert config.source.simulator.rate_ppm == 600
    with pytest.raises(ConfigError, match="source.simulator.rate_ppm"):
        override(Config(), **{"source.simulator.rate_ppm": -1})


def test_check_config_command(tmp_path):
    good = subprocess.run(
        [*UDIGATE, "check-config", str(REPO / "config" / "demo.toml")], capture_output=True, text=True
    )
    assert good.returncode == 0, good.stderr
    assert parse_config(good.stdout) == load_config(REPO / "config" / "demo.toml")

    broken = tmp_path / "broken.toml"
    broken.write_text("[plc.modbus]\nport = 70000\n[mqtt]\nqos = 3\n")
    bad = subprocess.run([*UDIGATE, "check-config", str(broken)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert "plc.modbus.port = 70000: expected less than or equal to 65535" in bad.stderr
    assert "mqtt.qos = 3: expected 1 or 2" in bad.stderr
    assert "Traceback" not in bad.stderr

    missing = subprocess.run([*UDIGATE, "check-config", str(tmp_path / "nope.toml")], capture_output=True, text=True)
    assert missing.returncode == 2 and "cannot read the file" in missing.stderr
